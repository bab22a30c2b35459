"""The job runner: a second concurrent run exits at once with the lock code; every run is recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import FIXTURES, REPO, run_cli
from pymongo import MongoClient

from cronlake.core.runner import EXIT_LOCKED


def test_concurrent_run_of_the_same_job_exits_with_lock_code(cronlake_env: dict[str, str]) -> None:
    first = subprocess.Popen(
        [sys.executable, "-m", "cronlake.ops.run", "retail_daily"], cwd=REPO,
        env={**os.environ, **cronlake_env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert first.stdout is not None
    assert json.loads(first.stdout.readline())["step"] == "start"  # the first run holds the lock now

    started = time.monotonic()
    second = run_cli([sys.executable, "-m", "cronlake.ops.run", "retail_daily"], cronlake_env, timeout=60)
    assert second.returncode == EXIT_LOCKED
    assert time.monotonic() - started < 30, "the second run must not wait for the lock"
    assert "another run is in progress" in second.stderr
    assert f"pid {first.pid}" in second.stderr

    first.stdout.read()
    assert first.wait(timeout=120) == 0
    runs = MongoClient(cronlake_env["CRONLAKE_MONGO_URI"])[cronlake_env["CRONLAKE_MONGO_OPS_DB"]].job_runs
    assert sorted(r["status"] for r in runs.find({"job": "retail_daily"})) == ["skipped", "succeeded"]


def test_run_record_has_what_an_operator_needs(cronlake_env: dict[str, str]) -> None:
    retail = FIXTURES / "retail" / "retail_part1.csv"
    result = run_cli([sys.executable, "-m", "cronlake.ops.run", "land_file", "--source", "retail", str(retail)],
                     cronlake_env)
    assert result.returncode == 0, result.stderr
    steps = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["step"] for s in steps] == ["start", "land.file", "end"]
    assert len({s["run"] for s in steps}) == 1

    runs = MongoClient(cronlake_env["CRONLAKE_MONGO_URI"])[cronlake_env["CRONLAKE_MONGO_OPS_DB"]].job_runs
    record = runs.find_one({"_id": steps[0]["run"]})
    assert record["job"] == "land_file" and record["status"] == "succeeded"
    assert record["args"] == ["--source", "retail", str(retail)]
    assert record["rows_in"] == retail.read_text().count("\n")
    assert record["ended_at"] >= record["started_at"] and record["host"] and record["error"] is None

    failed = run_cli([sys.executable, "-m", "cronlake.ops.run", "land_file", "--source", "retail", "/nope.csv"],
                     cronlake_env)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "land_file: failed: no such file: /nope.csv"
    record = runs.find_one({"status": "failed"})
    assert record["error"] == "no such file: /nope.csv" and record["ended_at"] is not None


def test_help_and_unknown_job() -> None:
    listing = run_cli([sys.executable, "-m", "cronlake.ops.run", "--help"], {})
    assert listing.returncode == 0 and "retail_daily" in listing.stdout
    unknown = run_cli([sys.executable, "-m", "cronlake.ops.run", "no_such_job"], {})
    assert unknown.returncode == 2 and "unknown job 'no_such_job'" in unknown.stderr
    job_help = run_cli([sys.executable, "-m", "cronlake.ops.run", "retail_daily", "--help"], {})
    assert job_help.returncode == 0 and "--day" in job_help.stdout


def test_sigterm_ends_the_run_and_records_it_terminated(cronlake_env: dict[str, str]) -> None:
    job = subprocess.Popen(
        [sys.executable, "-m", "cronlake.ops.run", "retail_daily"], cwd=REPO,
        env={**os.environ, **cronlake_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert job.stdout is not None and job.stderr is not None
    assert json.loads(job.stdout.readline())["step"] == "start"
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 1
    assert job.stderr.read().strip().endswith("retail_daily: failed: terminated (SIGTERM)")
    runs = MongoClient(cronlake_env["CRONLAKE_MONGO_URI"])[cronlake_env["CRONLAKE_MONGO_OPS_DB"]].job_runs
    record = runs.find_one({"job": "retail_daily"})
    assert record["status"] == "failed" and record["error"] == "terminated (SIGTERM)" and record["ended_at"]
