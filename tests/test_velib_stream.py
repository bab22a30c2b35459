"""The live-averages streaming job: Kafka → cronlake_kafka source → foreachBatch → MongoDB, restart without double
counting; and the watchdog that keeps it running.

Records are the real stations of a slice of the 2024-05-28 API export, observed every 7 minutes from 23:20 to
01:33 Paris time (two local days, more than an hour); counts vary by step so that averages differ from the last
values, and, as in the real feed, a station's reported_at advances every second observation only (the other
re-serves it with changed counts). Expected averages are computed here in plain Python from the produced records,
with the job's documented definitions: "now" = newest observed_at, "today" = its Paris day, "last hour" = the 60
one-minute buckets of observed_at ending with now's minute; a snapshot identity (station, reported_at, counts,
flags) counts once, as first observed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FIXTURES, run_cli
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cronlake.contracts.velib import snapshot_identity
from ingest.velib.records import normalise_api_record

SLICE = FIXTURES / "stream" / "api_v21_export_2024-05-28_slice.json"
PARIS = ZoneInfo("Europe/Paris")
START = datetime(2024, 5, 28, 21, 20, tzinfo=UTC)  # 23:20 in Paris
STEP = timedelta(minutes=7)


def stations() -> list[dict]:
    return [normalise_api_record(raw) for raw in json.loads(SLICE.read_text(encoding="utf-8"))]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshots(steps: range) -> list[dict]:
    """Station records observed at START + k*STEP (+ a few seconds per station), counts varying with k; odd steps
    re-serve the reported_at of the step before with the new counts."""
    records = []
    for k in steps:
        for index, base in enumerate(stations()):
            capacity = base["capacity"]
            mechanical = (base["mechanical"] + 2 * k) % (capacity + 1)
            ebike = (base["ebike"] + k + index) % (capacity - mechanical + 1)
            observed = START + k * STEP + timedelta(seconds=index)
            reported = observed - (k % 2) * STEP - timedelta(minutes=1)
            records.append({**base, "mechanical": mechanical, "ebike": ebike, "bikes": mechanical + ebike,
                            "docks_free": capacity - mechanical - ebike,
                            "reported_at": iso(reported), "observed_at": iso(observed)})
    return records


def create_topic(env: dict[str, str], partitions: int = 2) -> None:
    admin = KafkaAdminClient(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(env["CRONLAKE_VELIB_TOPIC"], partitions, 1)])
    admin.close()


def produce(env: dict[str, str], values: list[bytes], keys: list[bytes | None] | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"], acks="all")
    for value, key in zip(values, keys or [None] * len(values), strict=True):
        producer.send(env["CRONLAKE_VELIB_TOPIC"], key=key, value=value)
    producer.flush()
    producer.close()


def produce_records(env: dict[str, str], records: list[dict]) -> None:
    produce(env, [json.dumps(r).encode() for r in records], [r["station_code"].encode() for r in records])


def averages(samples: list[dict]) -> dict:
    n = len(samples)
    return {"samples": n, **{f"avg_{m}": (sum(s[m] for s in samples) / n if n else None)
                             for m in ("mechanical", "ebike", "docks_free")}}


def expected(records: list[dict]) -> tuple[dict, dict, str, datetime]:
    """Per station and per zone: {"today": averages, "last_hour": averages}; plus the day and window start."""
    unique = first_copies(records)
    at = {id(r): datetime.fromisoformat(r["observed_at"].replace("Z", "+00:00")) for r in unique}
    now = max(at.values())
    day = now.astimezone(PARIS).date().isoformat()
    since = now.replace(second=0) - timedelta(minutes=59)
    today = [r for r in unique if at[id(r)].astimezone(PARIS).date().isoformat() == day]
    hour = [r for r in unique if at[id(r)].replace(second=0) >= since]
    result = {}
    for key in ("station_code", "zone"):
        groups = sorted({r[key] for r in unique})
        result[key] = {g: {"today": averages([r for r in today if r[key] == g]),
                           "last_hour": averages([r for r in hour if r[key] == g])} for g in groups}
    return result["station_code"], result["zone"], day, since


def first_copies(records: list[dict]) -> list[dict]:
    """One record per snapshot identity: the copy observed first."""
    first_seen: dict[tuple, dict] = {}
    for record in sorted(records, key=lambda r: r["observed_at"]):
        first_seen.setdefault(snapshot_identity(record), record)
    return list(first_seen.values())


def assert_documents_match(db, records: list[dict]) -> None:
    by_station, by_zone, day, since = expected(records)
    unique = first_copies(records)
    station_docs = {d["_id"]: d for d in db.velib_live_station.find()}
    zone_docs = {d["_id"]: d for d in db.velib_live_zone.find()}
    assert set(station_docs) == set(by_station)
    assert set(zone_docs) == set(by_zone)
    for docs, wanted in ((station_docs, by_station), (zone_docs, by_zone)):
        for key, want in wanted.items():
            doc = docs[key]
            assert doc["today"]["day"] == day
            assert doc["last_hour"]["since"] == since
            for window in ("today", "last_hour"):
                assert doc[window]["samples"] == want[window]["samples"], (key, window)
                for name, value in want[window].items():
                    assert doc[window][name] == pytest.approx(value), (key, window, name)
    latest = {}
    for record in sorted(unique, key=lambda r: r["observed_at"]):
        latest[record["station_code"]] = record
    for code, record in latest.items():
        doc = station_docs[code]
        assert (doc["latest"]["mechanical"], doc["latest"]["ebike"], doc["latest"]["docks_free"]) == (
            record["mechanical"], record["ebike"], record["docks_free"])
        for name in ("reported_at", "observed_at"):
            assert doc["latest"][name] == datetime.fromisoformat(record[name].replace("Z", "+00:00"))
        assert (doc["zone"], doc["capacity"], doc["name"]) == (record["zone"], record["capacity"], record["name"])
    for zone, doc in zone_docs.items():
        assert doc["stations"] == sum(1 for r in latest.values() if r["zone"] == zone)


def run_stream(*extra: str) -> int:
    from process.velib import stream as velib_stream

    return velib_stream.JOB.main(["--trigger-seconds", "0.5", "--until-idle", "2", *extra])


def test_live_averages_and_restart_without_double_counting(cronlake_env, spark):
    from cronlake.core import settings as settings_module
    from cronlake.core.mongo import data_db, ops_db

    settings = settings_module.load()
    create_topic(cronlake_env)
    first = snapshots(range(0, 14))
    produce_records(cronlake_env, first)
    produce(cronlake_env, [b"not json", json.dumps({"station_code": "1"}).encode()])

    assert run_stream("--max-offsets-per-trigger", "200") == 0
    db = data_db(settings)
    assert_documents_match(db, first)
    run = ops_db(settings).job_runs.find_one({"job": "velib_stream", "status": "succeeded"})
    assert run["records_quarantined"] == 2
    assert run["extra"]["batches"] >= len(first) // 200
    heartbeat = ops_db(settings).heartbeats.find_one({"_id": "velib_stream"})
    assert heartbeat["pid"] == os.getpid() and heartbeat["batch_id"] >= 2

    # More data, plus snapshots sent again (a producer retry) and step 18's snapshots re-served unchanged after
    # step 19 (the feed stepping back to an older copy): the restarted query resumes from its checkpoint and
    # counts neither.
    second = snapshots(range(14, 20))
    step_18 = second[-2 * len(stations()):-len(stations())]
    reserved = [{**r, "observed_at": iso(START + 20 * STEP)} for r in step_18]
    produce_records(cronlake_env, second + first[-40:] + reserved)
    assert run_stream() == 0
    assert_documents_match(db, first + second + reserved)
    runs = list(ops_db(settings).job_runs.find({"job": "velib_stream"}).sort("started_at", 1))
    assert runs[-1]["rows_in"] == len(second) + 40 + len(reserved), "the restart re-read only what it had not committed"
    assert runs[-1]["rows_out"] == len(second)


def test_replayed_batch_changes_nothing(cronlake_env, spark):
    """A crash after MongoDB writes but before Spark commits the batch: the batch runs again, nothing counts twice."""
    from cronlake.core import settings as settings_module
    from cronlake.core.lake import open_lake
    from cronlake.core.mongo import data_db

    settings = settings_module.load()
    create_topic(cronlake_env)
    records = snapshots(range(0, 12))
    produce_records(cronlake_env, records)
    assert run_stream() == 0
    lake = open_lake(settings)
    commits = sorted(f.path for f in lake.list("checkpoints/velib_stream/commits"))
    assert commits, "the query committed its batches in the lake checkpoint"
    last = commits[-1].rsplit("/", 1)[-1]
    lake.delete(commits[-1])  # Spark now believes the last batch never completed
    lake.delete(f"checkpoints/velib_stream/commits/.{last}.crc")
    assert run_stream() == 0
    assert lake.exists(commits[-1]), "the last batch was run again"
    assert_documents_match(data_db(settings), records)


def test_watchdog_starts_the_stream_once(cronlake_env):
    from cronlake.core.runner import JobLock

    state = Path(cronlake_env["CRONLAKE_STATE_DIR"])
    watchdog = [sys.executable, "-m", "cronlake.ops.run", "watchdog", "--job", "velib_stream",
                "--", "--trigger-seconds", "1"]
    result = run_cli(watchdog, cronlake_env)
    assert result.returncode == 0, result.stderr
    started = [json.loads(line) for line in result.stdout.splitlines() if '"watchdog.started"' in line]
    assert len(started) == 1 and started[0]["args"] == ["--trigger-seconds", "1"]
    pid = started[0]["pid"]
    lock = JobLock(state, "velib_stream")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and lock.holder() != str(pid):
            time.sleep(0.2)
        assert lock.holder() == str(pid), "the started stream holds its job lock"
        again = run_cli(watchdog, cronlake_env)
        assert again.returncode == 0, again.stderr
        assert '"watchdog.running"' in again.stdout and '"watchdog.started"' not in again.stdout
        assert (state / "log" / "velib_stream.log").exists()
    finally:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not lock.acquire():
        time.sleep(0.2)
    lock.release()
    from cronlake.core import settings as settings_module
    from cronlake.core.mongo import ops_db

    runs = ops_db(settings_module.load()).job_runs
    assert [(r["status"], r["error"]) for r in runs.find({"job": "velib_stream"})] == [
        ("failed", "terminated (SIGTERM)")], "the stop is recorded, not left running"


def test_watchdog_restarts_a_hung_stream_whose_heartbeat_is_stale(cronlake_env):
    """A process holds the stream's lock but its heartbeat is an hour old: the watchdog kills it and starts the
    stream; with a fresh heartbeat the same holder is left alone."""
    import subprocess

    from cronlake.core import settings as settings_module
    from cronlake.core.mongo import ops_db
    from cronlake.core.runner import JobLock

    state = Path(cronlake_env["CRONLAKE_STATE_DIR"])
    hold = ("import sys, time; from pathlib import Path; from cronlake.core.runner import JobLock; "
            "lock = JobLock(Path(sys.argv[1]), 'velib_stream'); assert lock.acquire(); time.sleep(600)")
    hung = subprocess.Popen([sys.executable, "-c", hold, str(state)], env={**os.environ, **cronlake_env},
                            start_new_session=True)
    lock = JobLock(state, "velib_stream")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and lock.holder() != str(hung.pid):
        time.sleep(0.1)
    an_hour_ago = time.time() - 3600
    os.utime(lock.path, (an_hour_ago, an_hour_ago))  # it took the lock long ago
    beats = ops_db(settings_module.load()).heartbeats
    watchdog = [sys.executable, "-m", "cronlake.ops.run", "watchdog", "--job", "velib_stream", "--stale-after", "60",
                "--kill-wait", "5", "--", "--trigger-seconds", "1"]
    started_pid = None
    try:
        beat = {"alive_at": datetime.now(UTC) - timedelta(seconds=5)}
        beats.update_one({"_id": "velib_stream"}, {"$set": beat}, upsert=True)
        fresh = run_cli(watchdog, cronlake_env)
        assert '"watchdog.running"' in fresh.stdout and hung.poll() is None, fresh.stdout

        beats.update_one({"_id": "velib_stream"}, {"$set": {"alive_at": datetime.now(UTC) - timedelta(hours=1),
                                                            "last_batch_at": datetime.now(UTC) - timedelta(hours=2)}})
        result = run_cli(watchdog, cronlake_env)
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        hung_line = next(line for line in lines if line.get("step") == "watchdog.hung")
        assert hung_line["pid"] == str(hung.pid) and hung_line["silent_s"] >= 3600
        assert hung.wait(timeout=10) == -signal.SIGTERM
        started = next(line for line in lines if line.get("step") == "watchdog.started")
        started_pid = started["pid"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and lock.holder() != str(started_pid):
            time.sleep(0.2)
        assert lock.holder() == str(started_pid), "the restarted stream holds the lock"
    finally:
        if hung.poll() is None:
            hung.kill()
        if started_pid:
            os.killpg(started_pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not lock.acquire():
        time.sleep(0.2)
    lock.release()


def test_max_offsets_per_trigger_is_shared_by_backlog():
    from cronlake.core.kafka_source import split_limit

    start, available = {"0": 0, "1": 10, "2": 7}, {"0": 100, "1": 20, "2": 7}
    ends = split_limit(start, available, 55)
    read = {p: ends[p] - start[p] for p in available}
    assert sum(read.values()) == 55
    assert all(0 <= read[p] <= available[p] - start[p] for p in available)
    assert read["0"] > read["1"] > 0 and read["2"] == 0
    assert split_limit(start, available, 1000) == available
