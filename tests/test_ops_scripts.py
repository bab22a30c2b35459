"""The operators' scripts on the embedded stack: status, census, replay, backfill (interrupted and resumed),
submit through spark-submit, reset; plus --help, shellcheck and the one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FIXTURES, REPO, run_cli
from retail_expected import daily_totals

from cronlake.contracts.velib import STATION
from cronlake.core.lake import open_lake
from cronlake.core.mongo import data_db, ops_db
from cronlake.core.settings import load
from cronlake.ops import census, run

SCRIPTS = ("up", "down", "status", "submit", "backfill", "replay", "reset")


def script(name: str) -> str:
    return str(REPO / "scripts" / name)


def lake_path(env: dict[str, str]) -> Path:
    return Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://"))


def put(root: Path, relative: str, data: bytes, modified: datetime | None = None) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if modified is not None:
        os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_needs_nothing_and_describes_the_script(name):
    result = subprocess.run([script(name), "--help"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.startswith(f"usage: scripts/{name}")


def test_scripts_are_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    result = subprocess.run(["shellcheck", "-x", *(f"scripts/{n}" for n in (*SCRIPTS, "lib.sh"))], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_missing_virtualenv_and_docker_give_one_clear_line(tmp_path):
    copy = tmp_path / "checkout" / "scripts"
    shutil.copytree(REPO / "scripts", copy)
    result = subprocess.run([str(copy / "status")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"error: no virtualenv at {tmp_path / 'checkout' / '.venv'}: run scripts/setup first\n"
    assert shutil.which("docker", path="/usr/bin:/bin") is None
    result = subprocess.run([script("up"), "--compose"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and result.stderr.startswith("error: docker not found")


def test_census_counts_each_zone_and_source(cronlake_env):
    root = lake_path(cronlake_env)
    old = datetime(2024, 4, 17, 8, 0, tzinfo=UTC)
    put(root, "landing/velib/a.csv", b"x" * 10, old)
    put(root, "landing/velib/b.csv", b"x" * 20)
    put(root, "quarantine/retail/bad.csv", b"y" * 7)
    put(root, "quarantine/retail/bad.csv.reason.json", b"{}")
    put(root, "quarantine/retail/good.csv.rejects.jsonl", b"{}\n")
    put(root, "archive/retail/old.csv", b"z" * 5)
    put(root, "landing/velib/.hidden.tmp", b"ignored")
    assert run.main(["lake_census"]) == 0

    settings = load()
    documents = {d["_id"]: d for d in ops_db(settings).lake_census.find()}
    assert set(documents) == {"landing/velib", "quarantine/retail", "archive/retail"}
    assert (documents["landing/velib"]["files"], documents["landing/velib"]["bytes"]) == (2, 30)
    assert documents["landing/velib"]["oldest_modified"] == old
    assert (documents["quarantine/retail"]["files"], documents["quarantine/retail"]["reject_files"]) == (1, 1)
    assert documents["archive/retail"]["bytes"] == 5

    for leftover in (root / "landing" / "velib").iterdir():
        leftover.unlink()
    assert run.main(["lake_census"]) == 0
    assert ops_db(settings).lake_census.find_one({"_id": "landing/velib"})["files"] == 0
    assert census.census(open_lake(settings), zones=("landing",)) == {}


def test_status_names_services_last_runs_and_backlog(cronlake_env):
    root = lake_path(cronlake_env)
    put(root, "landing/velib/a.csv", b"x" * 10)
    put(root, "quarantine/retail/bad.csv", b"y" * 7)
    assert run.main(["lake_census"]) == 0

    result = run_cli([script("status")], cronlake_env, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for service in ("kafka", "mongodb", "lake"):
        assert any(line.split()[:2] == [service, "ok"] for line in lines), result.stdout
    census_line = next(line for line in lines if line.split()[:1] == ["lake_census"])
    assert census_line.split()[1] == "succeeded" and census_line.split()[2].endswith("s")
    assert any(line.split()[:2] == ["velib_daily", "never"] for line in lines)
    backlog = next(line for line in lines if line.split()[:1] == ["landing/velib"])
    assert backlog.split()[1:3] == ["1", "files"]
    assert any(line.split()[:2] == ["quarantine/retail", "1"] for line in lines)
    assert "velib_stream: NOT running" in result.stdout

    down = run_cli([script("status")], {**cronlake_env, "CRONLAKE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}, timeout=60)
    assert down.returncode == 1
    assert any(line.split()[:2] == ["kafka", "DOWN:"] for line in down.stdout.splitlines())
    assert "error: a service does not answer" in down.stderr


def velib_file(*observed_at: str) -> bytes:
    """A landing CSV of velib records (contract header) observed (and reported) at these times."""
    header = ",".join(STATION.csv_header())
    rows = [",".join("12001" if f == "station_code" else t if f in ("reported_at", "observed_at") else "1"
                     for f in STATION.csv_header())
            for t in observed_at]
    return ("\n".join([header, *rows]) + "\n").encode()


def test_replay_moves_back_the_files_holding_data_of_the_days(cronlake_env):
    """Files are chosen by their data's days (observed_at in Paris time), whatever day they were written."""
    root = lake_path(cronlake_env)
    paris = ZoneInfo("Europe/Paris")
    written = datetime(2024, 5, 1, 12, 0, tzinfo=paris)  # all landed long after the data: never a criterion
    chosen = {"archive/velib/a.csv": velib_file("2024-04-16T22:30:00Z"),  # 00:30 on the 17th in Paris
              "archive/velib/b.csv": velib_file("2024-04-15T10:00:00Z", "2024-04-18T21:50:00Z")}  # one row inside
    others = {"archive/velib/c.csv": velib_file("2024-04-16T21:50:00Z"),  # 23:50 on the 16th in Paris
              "archive/velib/d.csv": velib_file("2024-04-18T22:10:00Z"),  # 00:10 on the 19th in Paris
              "archive/retail/e.csv": b"InvoiceNo,InvoiceDate\n536365,4/17/24 12:00\n"}
    for relative, data in {**chosen, **others}.items():
        put(root, relative, data, written)

    result = run_cli([script("replay"), "--source", "velib", "--from", "2024-04-17", "--to", "2024-04-18"],
                     cronlake_env, timeout=60)
    assert result.returncode == 0, result.stderr
    for relative, data in chosen.items():
        landed = root / relative.replace("archive/", "landing/", 1)
        assert landed.read_bytes() == data and not (root / relative).exists()
    assert all((root / relative).exists() for relative in others)
    record = ops_db(load()).job_runs.find_one({"job": "replay"})
    assert record["status"] == "succeeded" and record["extra"]["files_replayed"] == len(chosen)
    assert record["args"] == ["--source", "velib", "--from", "2024-04-17", "--to", "2024-04-18"]

    nothing = run_cli([script("replay"), "--source", "velib", "--from", "2024-04-20", "--to", "2024-04-21"],
                      cronlake_env, timeout=60)
    assert nothing.returncode != 0
    message = "no archived file of velib holds data (observed_at) of 2024-04-20..2024-04-21"
    assert message in nothing.stderr + nothing.stdout
    assert all((root / relative).exists() for relative in others)


def backfilled_days(env: dict[str, str]) -> list[tuple[str, str]]:
    runs = ops_db(load()).job_runs.find({"job": "retail_daily"}).sort("started_at", 1)
    return [(r["args"][r["args"].index("--day") + 1], r["status"]) for r in runs]


def test_backfill_interrupted_then_resumed_without_redoing_finished_days(cronlake_env):
    env = {**cronlake_env, "CRONLAKE_SPARK_MASTER": "local[1]"}
    command = [script("backfill"), "retail_daily", "--from", "2010-12-01", "--to", "2010-12-02"]
    progress_folder = Path(env["CRONLAKE_STATE_DIR"]) / "backfill"
    first = subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # the first day done: seconds on a quiet machine, minutes under load
    while time.monotonic() < deadline and first.poll() is None and not list(progress_folder.glob("*.json")):
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)  # the way `kill` or a stopping container ends it
    _, errors = first.communicate(timeout=60)
    assert first.returncode == 130, errors
    assert "interrupted" in errors
    progress = json.loads(next(progress_folder.glob("*.json")).read_text())
    assert progress["done"] == ["2010-12-01"]

    second = run_cli(command, env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "resuming, 1 of 2 days already done" in second.stderr
    assert "[##############################] 2/2" in second.stderr
    days = backfilled_days(env)
    assert [day for day, status in days if status == "succeeded"] == ["2010-12-01", "2010-12-02"]
    assert days[0] == ("2010-12-01", "succeeded")
    assert ("2010-12-02", "failed") in days or len(days) == 2  # the run cut by the kill, if it had started

    again = run_cli(command, env, timeout=60)
    assert again.returncode == 0 and "already done" in again.stderr
    assert len(backfilled_days(env)) == len(days)


def test_backfill_refuses_a_job_without_day(cronlake_env):
    result = run_cli([script("backfill"), "lake_census", "--from", "2024-01-01", "--to", "2024-01-02"],
                     cronlake_env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: job lake_census does not accept '--day 2024-01-01'")


def test_submit_runs_a_spark_job_through_spark_submit(cronlake_env):
    env = {**cronlake_env, "CRONLAKE_SPARK_MASTER": "local[2]"}
    fixture = FIXTURES / "retail" / "retail_part1.csv"
    put(lake_path(env), "landing/retail/retail_part1.csv", fixture.read_bytes())
    result = run_cli([script("submit"), "retail_daily"], env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.startswith("submit: ") and "spark-submit --master local[2]" in result.stderr
    assert "--py-files" in result.stderr and (Path(env["CRONLAKE_STATE_DIR"]) / "dist" / "cronlake-code.zip").exists()
    settings = load()
    assert ops_db(settings).job_runs.find_one({"job": "retail_daily"})["status"] == "succeeded"
    stored = {(d["day"], d["country"]): d["lines"] for d in data_db(settings).retail_daily.find()}
    assert stored == {key: totals["lines"] for key, totals in daily_totals([fixture]).items()}


def test_reset_empties_lake_state_and_databases(cronlake_env):
    root = lake_path(cronlake_env)
    state = Path(cronlake_env["CRONLAKE_STATE_DIR"])
    put(root, "landing/velib/a.csv", b"x")
    put(root, "processed/d/part-0.parquet", b"x")
    for kept in ("run/kafka.pid", "log/kafka.log"):
        put(state, kept, b"1")
    for removed in ("locks/velib_land.lock", "spool/velib/0001.json", "backfill/x.json"):
        put(state, removed, b"1")
    assert run.main(["lake_census"]) == 0
    settings = load()
    data_db(settings).anything.insert_one({"_id": 1})
    mongo = data_db(settings).client

    refused = run_cli([script("reset")], cronlake_env, timeout=60, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    hdfs = run_cli([script("reset"), "--yes"], {**cronlake_env, "CRONLAKE_LAKE_ROOT": "hdfs://namenode:8020/lake",
                                                  "CRONLAKE_WEBHDFS_URL": "http://namenode:9870"}, timeout=60)
    assert hdfs.returncode == 2 and "--yes-really" in hdfs.stderr
    assert (root / "landing/velib/a.csv").exists() and settings.mongo_db in mongo.list_database_names()

    result = run_cli([script("reset"), "--yes"], cronlake_env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert list(root.iterdir()) == []
    assert sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file()) == \
        ["log/kafka.log", "run/kafka.pid"]
    names = mongo.list_database_names()
    assert settings.mongo_db not in names and settings.mongo_ops_db not in names


def test_submit_runs_a_plain_python_job_without_spark(cronlake_env):
    result = run_cli([script("submit"), "lake_census"], cronlake_env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0].endswith("-m cronlake.ops.run lake_census")
    assert ops_db(load()).job_runs.find_one({"job": "lake_census"})["status"] == "succeeded"
    unknown = run_cli([script("submit"), "no_such_job"], cronlake_env, timeout=60)
    assert unknown.returncode == 2 and "invalid choice: 'no_such_job'" in unknown.stderr


def test_reset_deletes_the_kafka_topics_and_groups_the_jobs_own(cronlake_env):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from ingest.velib.landing import GROUP

    bootstrap, topic = cronlake_env["CRONLAKE_KAFKA_BOOTSTRAP"], cronlake_env["CRONLAKE_VELIB_TOPIC"]
    other = f"{topic}.not-ours"
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for name in (topic, other):
        producer.send(name, b"old record").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
    consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    assert GROUP in {group["group_id"] for group in admin.list_groups()}
    try:
        result = run_cli([script("reset"), "--yes"], cronlake_env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"kafka: deleted topics {topic}" in result.stdout
        assert f"kafka: deleted consumer groups {GROUP}" in result.stdout
        topics = admin.list_topics()
        assert topic not in topics and other in topics, "only the topics the jobs declare are deleted"
        assert GROUP not in {group["group_id"] for group in admin.list_groups()}, "its committed offsets are gone"
    finally:
        admin.delete_topics([other])
        admin.close()
