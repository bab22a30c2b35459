"""The claim → process → commit → archive protocol on the real retail smoke job.

A clean run is checked against totals computed independently from the input files; runs killed with
SIGKILL at each step of the protocol, then rerun, must end in exactly that same state: same rows, no
duplicate, no lost file, every input in archive/ exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, REPO
from contracts_check import declared_indexes, server_indexes
from pymongo import MongoClient
from retail_expected import daily_totals, parse_rows

from cronlake.contracts import retail
from cronlake.core import settings
from cronlake.core.protocol import Claim, reject
from cronlake.core.runner import RunContext
from process.retail import daily as retail_daily

GOOD_FILES = ["retail_part1.csv", "retail_part2.csv", "retail_part3.csv"]


def lake_root(env: dict[str, str]) -> Path:
    return Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://"))


def land(env: dict[str, str], names: list[str]) -> None:
    landing = lake_root(env) / "landing" / "retail"
    landing.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / "retail" / name, landing / name)


def files_in(env: dict[str, str], zone: str) -> list[str]:
    folder = lake_root(env) / zone / "retail"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def parquet_rows(env: dict[str, str]) -> list[tuple]:
    dataset = lake_root(env) / "processed" / retail.TRANSACTIONS.name
    table = pq.read_table(dataset, partitioning="hive")
    columns = ["invoice_no", "stock_code", "quantity", "invoice_time", "unit_price", "customer_id", "country"]
    return sorted(tuple(str(row[c]) for c in columns) for row in table.select(columns).to_pylist())


def mongo_totals(env: dict[str, str]) -> dict[tuple[str, str], dict]:
    collection = MongoClient(env["CRONLAKE_MONGO_URI"])[env["CRONLAKE_MONGO_DB"]][retail.DAILY.name]
    return {(d["day"], d["country"]): {k: d[k] for k in ("invoices", "lines", "revenue", "cancelled_lines")}
            for d in collection.find()}


def job_runs(env: dict[str, str]) -> list[dict]:
    return list(MongoClient(env["CRONLAKE_MONGO_URI"])[env["CRONLAKE_MONGO_OPS_DB"]].job_runs.find())


def expected_rows() -> int:
    return sum(len(parse_rows(FIXTURES / "retail" / name)[0]) for name in GOOD_FILES)


def assert_clean_end_state(env: dict[str, str]) -> None:
    rows = parquet_rows(env)
    assert len(rows) == expected_rows()
    assert duplicate_free(rows)
    assert mongo_totals(env) == daily_totals([FIXTURES / "retail" / n for n in GOOD_FILES])
    assert files_in(env, "archive") == sorted(GOOD_FILES), "every input archived exactly once"
    assert files_in(env, "landing") == []
    staging = lake_root(env) / "processed" / retail.TRANSACTIONS.name / "_staging"
    assert not staging.exists() or not any(staging.iterdir()), "no staging left behind"


def duplicate_free(rows: list[tuple]) -> bool:
    """Rows of the dataset equal the rows of a single clean pass over the inputs (multiset equality)."""
    reference = sorted(
        (r["InvoiceNo"], r["StockCode"], str(r["qty"]), None, None, r["CustomerID"] or "None", r["Country"])
        for name in GOOD_FILES for r in parse_rows(FIXTURES / "retail" / name)[0]
    )
    keys = sorted((r[0], r[1], r[2], None, None, r[5], r[6]) for r in rows)
    return keys == reference


def test_clean_run_matches_independent_totals_and_is_idempotent(cronlake_env: dict[str, str], spark: object) -> None:
    land(cronlake_env, GOOD_FILES)
    assert retail_daily.JOB.main([]) == 0
    assert_clean_end_state(cronlake_env)
    before = (parquet_rows(cronlake_env), mongo_totals(cronlake_env))

    land(cronlake_env, GOOD_FILES[:1])  # the same file lands again: archived under a run-tagged name
    assert retail_daily.JOB.main([]) == 0
    assert retail_daily.JOB.main(["--day", "2010-12-01"]) == 0  # nothing landed: recomputes that day only
    runs = sorted(job_runs(cronlake_env), key=lambda r: r["started_at"])
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    assert runs[0]["files_archived"] == 3 and runs[0]["rows_in"] == expected_rows()
    assert runs[1]["files_archived"] == 1 and runs[1]["rows_out"] == 0, "a file landed twice adds no row"
    archived = files_in(cronlake_env, "archive")
    assert len(archived) == 4 and sum(name.endswith(GOOD_FILES[0]) for name in archived) == 2
    assert (parquet_rows(cronlake_env), mongo_totals(cronlake_env)) == before
    data = MongoClient(cronlake_env["CRONLAKE_MONGO_URI"])[cronlake_env["CRONLAKE_MONGO_DB"]]
    assert declared_indexes(retail.DAILY) <= server_indexes(data, retail.DAILY)


def test_bad_file_quarantined_with_reason_and_bad_rows_counted(cronlake_env: dict[str, str], spark: object) -> None:
    land(cronlake_env, ["retail_damaged.csv", "not_retail.csv", "retail_part1.csv"])
    assert retail_daily.JOB.main([]) == 0

    assert files_in(cronlake_env, "archive") == ["retail_damaged.csv", "retail_part1.csv"]
    quarantine = lake_root(cronlake_env) / "quarantine" / "retail"
    reason = json.loads((quarantine / "not_retail.csv.reason.json").read_text())
    assert "unexpected header" in reason["reason"] and reason["file"] == "landing/retail/not_retail.csv"
    assert (quarantine / "not_retail.csv").read_text().startswith(
        (FIXTURES / "retail" / "not_retail.csv").read_text()[:50])
    kept, rejected = parse_rows(FIXTURES / "retail" / "retail_damaged.csv")
    rejects = (quarantine / "retail_damaged.csv.retail_daily.rejects.jsonl").read_text().splitlines()
    assert len(rejects) == rejected == 3
    run = job_runs(cronlake_env)[0]
    assert run["status"] == "succeeded"
    assert (run["files_quarantined"], run["records_quarantined"], run["files_archived"]) == (1, rejected, 2)
    assert len(parquet_rows(cronlake_env)) == len(kept) + len(parse_rows(FIXTURES / "retail" / "retail_part1.csv")[0])


KILL_POINTS = {
    "after_claim": "claim",
    "during_output": "output.file",
    "after_commit": "commit",
    "during_archive": "archive.file",
}


def test_rejects_of_one_input_add_up_and_leave_the_consumers_file_alone(tmp_path: Path) -> None:
    """Two steps of one run reject records of the same input (as retail_social does for bad lines, then bad
    dates): the job's `<name>.<job>.rejects.jsonl` holds both, and the landing consumer's `<name>.rejects.jsonl`
    for that file is left as it was."""
    env = {"CRONLAKE_LAKE_ROOT": (tmp_path / "lake").as_uri(), "CRONLAKE_STATE_DIR": str(tmp_path / "state")}
    context = RunContext(job="velib_daily", run_id="velib_daily-test", settings=settings.load(env), needs=("lake",))
    consumer_file = "quarantine/velib/p0-o10.jsonl.rejects.jsonl"
    context.lake.put_text(consumer_file, '{"reason": "not JSON"}\n')
    claim = Claim(context, context.lake, "velib", ("velib_status",), ["landing/velib/p0-o10.jsonl"])
    first = [reject("negative count", {"bikes": -1}, file="p0-o10.jsonl")]
    second = [reject("reported_at is not a time", {"reported_at": "x"}, file="p0-o10.jsonl"),
              reject("unparseable row", "a;b", file="p0-o10.jsonl")]
    claim.reject_records("landing/velib/p0-o10.jsonl", first)
    claim.reject_records("landing/velib/p0-o10.jsonl", second)

    kept = context.lake.read_text("quarantine/velib/p0-o10.jsonl.velib_daily.rejects.jsonl").splitlines()
    assert [json.loads(line)["reason"] for line in kept] == [r["reason"] for r in first + second]
    assert context.lake.read_text(consumer_file) == '{"reason": "not JSON"}\n'
    assert context.counters["records_quarantined"] == 3


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_each_step_then_rerun_equals_clean_run(
    point: str, cronlake_env: dict[str, str], spark: object
) -> None:
    land(cronlake_env, GOOD_FILES)
    process = subprocess.Popen(
        [sys.executable, "-m", "cronlake.ops.run", "retail_daily"], cwd=REPO,
        env={**os.environ, **cronlake_env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )
    seen = []
    assert process.stdout is not None
    for line in process.stdout:
        step = json.loads(line).get("step")
        seen.append(step)
        if step == KILL_POINTS[point]:
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"job ended before the kill point; steps seen: {seen}"
    if point in ("after_claim", "during_output"):
        assert files_in(cronlake_env, "archive") == [], "nothing may be archived before commit"

    assert retail_daily.JOB.main([]) == 0

    assert_clean_end_state(cronlake_env)
    statuses = sorted(r["status"] for r in job_runs(cronlake_env))
    assert statuses == ["died", "succeeded"], "the killed run is recorded as died by the next run"
