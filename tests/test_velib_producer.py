"""The `velib_produce` job end to end (a new process per run, real broker and MongoDB, a local HTTP API):
a failed fetch sends nothing, each (station, reported_at) reaches the topic once across runs and restarts,
rows that do not map are quarantined with their reason, and a broker outage spools records that the next
run sends first, without loss or duplicates."""

from __future__ import annotations

import csv
import gzip
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import free_port, run_cli
from test_velib_ingest import GBFS, HISTORY, VelibApiStub, load_export, reference

from cronlake.core import settings as settings_module
from cronlake.core.mongo import ops_db

PRODUCE = [sys.executable, "-m", "cronlake.ops.run", "velib_produce"]
REPLAY = ["--source", "replay", "--replay-file", str(HISTORY)]


def consume_all(env: dict[str, str]) -> list[tuple[str, dict[str, Any], int, int]]:
    """Every message of the test's topic up to its end offsets, read by a fresh consumer: (key, value, partition,
    offset)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = env["CRONLAKE_VELIB_TOPIC"]
    consumer = KafkaConsumer(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"], enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends, messages = consumer.end_offsets(partitions), []
        deadline = time.monotonic() + 120  # a guard against a hang, not a speed check
        while any(consumer.position(p) < ends[p] for p in partitions):
            assert time.monotonic() < deadline, f"positions stuck before the end offsets {ends}"
            messages.extend(m for batch in consumer.poll(timeout_ms=500).values() for m in batch)
        return [(m.key.decode(), json.loads(m.value), m.partition, m.offset) for m in messages]
    finally:
        consumer.close()


def last_run() -> dict[str, Any]:
    runs = ops_db(settings_module.load()).job_runs
    return runs.find_one({"job": "velib_produce"}, sort=[("started_at", -1)])


def history_snapshots() -> list[list[dict[str, str]]]:
    with gzip.open(HISTORY, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    times = sorted({r["snapshot_commit_time_utc"] for r in rows})
    return [[r for r in rows if r["snapshot_commit_time_utc"] == t] for t in times]


def expected_pairs(rows: list[dict[str, str]]) -> tuple[set[tuple[str, str]], int]:
    """(station code, UTC time) of the rows that map to a known station (all have coordinates, so a zone), and how
    many rows do not."""
    gbfs, _ = reference()
    pairs, unmapped = set(), 0
    for row in rows:
        code = gbfs.get(row["Identifiant station"], {}).get("stationCode")
        if code is None:
            unmapped += 1
            continue
        local = datetime.strptime(row["Actualisation de la donnée"], "%Y-%m-%d %H:%M:%S")
        pairs.add((code, (local - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")))  # May: UTC+2
    return pairs, unmapped


def assert_each_snapshot_once(messages: list[tuple[str, dict[str, Any], int, int]],
                              candidates: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Each candidate snapshot was sent once, unless it is older than one sent for its station (stale); a
    station's snapshots reach the topic in time order. Returns the sent set."""
    pairs = pairs_of(messages)
    assert len(pairs) == len(set(pairs))
    sent = set(pairs)
    assert sent <= candidates
    newest: dict[str, str] = {}
    for station, reported_at in sent:
        newest[station] = max(reported_at, newest.get(station, ""))
    assert all(reported_at < newest[station] for station, reported_at in candidates - sent)
    by_station: dict[str, list[tuple[int, str]]] = {}
    for _, value, _, offset in messages:
        by_station.setdefault(value["station_code"], []).append((offset, value["reported_at"]))
    assert all([t for _, t in sorted(v)] == sorted(t for _, t in v) for v in by_station.values())
    return sent


def pairs_of(messages: list[tuple[str, dict[str, Any], int, int]]) -> list[tuple[str, str]]:
    assert all(key == value["station_code"] for key, value, _, _ in messages)
    return [(value["station_code"], value["reported_at"]) for _, value, _, _ in messages]


def test_a_failed_fetch_fails_the_run_and_sends_nothing(cronlake_env: dict[str, str]) -> None:
    with VelibApiStub(load_export()) as api:
        api.fault_rule = lambda path, query: ("bad_json",) if query.get("offset") == "100" else None
        env = {**cronlake_env, "CRONLAKE_VELIB_API_URL": api.base_url}
        result = run_cli([*PRODUCE, "--nrows", "250", "--http-attempts", "2", "--http-backoff", "0.05"], env)
    assert result.returncode == 1, result.stderr
    assert "invalid JSON" in result.stderr
    run = last_run()
    assert run["status"] == "failed" and "invalid JSON" in run["error"]
    assert (run["rows_in"], run["rows_out"]) == (0, 0)
    assert [q["offset"] for q in api.page_requests()] == ["0", "100", "100"]
    assert consume_all(cronlake_env) == []


def test_api_snapshots_are_sent_once_across_runs_and_restarts(cronlake_env: dict[str, str]) -> None:
    export = load_export()
    with VelibApiStub(export) as api:
        env = {**cronlake_env, "CRONLAKE_VELIB_API_URL": api.base_url}
        first = run_cli(PRODUCE, env)
        assert first.returncode == 0, first.stderr
        assert (last_run()["rows_in"], last_run()["rows_out"]) == (len(export), len(export))
        again = run_cli(PRODUCE, env)  # a new process: only the state file remembers what was sent
        assert again.returncode == 0, again.stderr
        assert last_run()["rows_out"] == 0 and last_run()["extra"]["skipped_duplicates"] == len(export)
        # 40 stations report a newer snapshot; the others repeat theirs
        assert all(raw["duedate"] < "2024-05-28T20:30" for raw in export[:40])
        updated = [{**raw, "duedate": "2024-05-28T20:30:00+00:00", "numbikesavailable": raw["numbikesavailable"] + 1}
                   for raw in export[:40]]
        api.records = updated + export[40:]
        third = run_cli(PRODUCE, env)
        assert third.returncode == 0, third.stderr
        assert last_run()["rows_out"] == 40
    pairs = pairs_of(consume_all(cronlake_env))
    expected = {(r["stationcode"], r["duedate"].replace("+00:00", "Z")) for r in export + updated}
    assert len(pairs) == len(set(pairs)) == len(expected)
    assert set(pairs) == expected
    assert [path for path, _ in api.requests] == ["/exports/json"] * 3


def test_history_replay_advances_dedups_and_quarantines(cronlake_env: dict[str, str]) -> None:
    snapshots = history_snapshots()
    gbfs, _ = reference()
    stale_skips = 0
    for number, rows in enumerate(snapshots, start=1):
        result = run_cli([*PRODUCE, *REPLAY], cronlake_env)
        assert result.returncode == 0, result.stderr
        run = last_run()
        _, unmapped = expected_pairs(rows)
        assert (run["rows_in"], run["records_quarantined"]) == (len(rows), unmapped), number
        rejects = Path(cronlake_env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "quarantine" / "velib_api"
        lines = [json.loads(line) for line in (rejects / f"{run['_id']}.rejects.jsonl").read_text().splitlines()]
        assert sorted(r["record"]["Identifiant station"] for r in lines) == sorted(
            r["Identifiant station"] for r in rows if expected_pairs([r])[1])
        for reject in lines:
            assert reject["record"]["Identifiant station"] not in gbfs
            assert "unknown station id" in reject["reason"]
        extra = run["extra"]
        stale_skips += extra["skipped_stale"]
        assert run["rows_out"] + extra["skipped_duplicates"] + extra["skipped_stale"] + unmapped == len(rows)
    all_pairs, _ = expected_pairs([r for rows in snapshots for r in rows])
    sent = assert_each_snapshot_once(consume_all(cronlake_env), all_pairs)
    assert len(sent) < sum(len(rows) for rows in snapshots)  # repeated snapshots were really skipped
    assert stale_skips >= len(all_pairs - sent)  # every snapshot not sent was counted as stale
    exhausted = run_cli([*PRODUCE, *REPLAY], cronlake_env)
    assert exhausted.returncode == 0 and last_run()["rows_in"] == 0


def test_broker_down_spools_then_the_next_run_sends_the_spool_first(cronlake_env: dict[str, str]) -> None:
    first_rows, second_rows = history_snapshots()[:2]
    down = {**cronlake_env, "CRONLAKE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    failed = run_cli([*PRODUCE, *REPLAY, "--gbfs", str(GBFS), "--kafka-timeout", "2"], down)
    assert failed.returncode == 1
    assert "spooled" in failed.stderr and down["CRONLAKE_KAFKA_BOOTSTRAP"] in failed.stderr
    run = last_run()
    first_pairs, _ = expected_pairs(first_rows)
    assert run["status"] == "failed" and "Kafka" in run["error"]
    assert (run["rows_out"], run["extra"]["spooled"]) == (0, len(first_pairs))
    spool = Path(cronlake_env["CRONLAKE_STATE_DIR"]) / "velib" / "spool" / cronlake_env["CRONLAKE_VELIB_TOPIC"]
    assert sum(len(f.read_text().splitlines()) for f in spool.glob("*.jsonl")) == len(first_pairs)

    recovered = run_cli([*PRODUCE, *REPLAY], cronlake_env)
    assert recovered.returncode == 0, recovered.stderr
    run = last_run()
    assert run["extra"]["sent_from_spool"] == len(first_pairs)
    assert list(spool.glob("*.jsonl")) == []
    messages = consume_all(cronlake_env)
    second_pairs, _ = expected_pairs(second_rows)
    sent = assert_each_snapshot_once(messages, first_pairs | second_pairs)
    assert first_pairs <= sent  # nothing spooled was lost
    offsets = {(value["station_code"], value["reported_at"]): (partition, offset)
               for _, value, partition, offset in messages}
    for station, reported_at in second_pairs - first_pairs:
        older = [offsets[p] for p in first_pairs if p[0] == station]
        assert all(o < offsets[(station, reported_at)] for o in older)  # same key, same partition: spool first


def test_a_lake_in_safe_mode_costs_no_snapshot_and_fails_in_one_line(cronlake_env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    from webhdfs_server import serve

    server, _ = serve(tmp_path / "hdfs")
    host, port = server.server_address[:2]
    env = {**cronlake_env, "CRONLAKE_LAKE_ROOT": "hdfs://namenode:8020/lake",
           "CRONLAKE_WEBHDFS_URL": f"http://{host}:{port}"}
    first_rows, second_rows = history_snapshots()[:2]
    first_pairs, _ = expected_pairs(first_rows)
    second_pairs, _ = expected_pairs(second_rows)
    try:
        server.RequestHandlerClass.safe_mode = True  # the NameNode restarted: reads answer, writes are refused
        failed = run_cli([*PRODUCE, *REPLAY], env)
        assert failed.returncode == 1
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "velib_produce: failed: lake: cannot write hdfs://namenode:8020/lake/quarantine/velib_api/")
        assert "the NameNode is in safe mode" in last and "Traceback" not in failed.stderr
        assert set(pairs_of(consume_all(cronlake_env))) == first_pairs, "the snapshot was sent before the lake write"
        server.RequestHandlerClass.safe_mode = False
        recovered = run_cli([*PRODUCE, *REPLAY], env)
        assert recovered.returncode == 0, recovered.stderr
    finally:
        server.shutdown()
    assert_each_snapshot_once(consume_all(cronlake_env), first_pairs | second_pairs)
    assert list((tmp_path / "hdfs" / "lake" / "quarantine" / "velib_api").glob("*.rejects.jsonl"))
