"""The `velib_produce` job end to end (a new process per run, real broker and MongoDB, a local HTTP API):
a failed fetch sends nothing, every change of a station's snapshot identity (reported_at, counts, flags) reaches
the topic once across runs and restarts and an unchanged re-serve does not, rows that do not map are quarantined
with their reason, a broker outage spools records that the next run sends first, without loss or duplicates, and
a replay file of another format fails in one line with exit code 2."""

from __future__ import annotations

import csv
import gzip
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import free_port, run_cli
from test_velib_ingest import GBFS, HISTORY, PORTAL_CSV, VelibApiStub, load_export, reference

from cronlake.contracts import velib
from cronlake.core import settings as settings_module
from cronlake.core.mongo import ops_db

PRODUCE = [sys.executable, "-m", "cronlake.ops.run", "velib_produce"]
REPLAY = ["--source", "replay", "--replay-file", str(HISTORY)]


def consume_all(env: dict[str, str]) -> list[tuple[str, dict[str, Any], int, int]]:
    """Every message of the test's topic up to its end offsets, read by a fresh consumer: (key, value, partition,
    offset)."""
    from kafka import KafkaConsumer, TopicPartition

    from cronlake.core.kafka_client import end_offsets

    topic = env["CRONLAKE_VELIB_TOPIC"]
    consumer = KafkaConsumer(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"], enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        if not partitions:
            return []
        ends = end_offsets(consumer, partitions)  # the kit's: true ends even where the broker under-reports
        consumer.seek_to_beginning()
        messages = []
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


COUNT_LABELS = ("Capacité de la station", "Nombre total vélos disponibles", "Vélos mécaniques disponibles",
                "Vélos électriques disponibles", "Nombre bornettes libres")
FLAG_LABELS = ("Station en fonctionnement", "Borne de paiement disponible", "Retour vélib possible")


def expected_identities(rows: list[dict[str, str]]) -> tuple[list[tuple], int]:
    """The identities (station code, UTC reported_at, counts, flags) of the rows that map to a known station (all
    have coordinates, so a zone), in row order, and how many rows do not map."""
    gbfs, _ = reference()
    identities, unmapped = [], 0
    for row in rows:
        code = gbfs.get(row["Identifiant station"], {}).get("stationCode")
        if code is None:
            unmapped += 1
            continue
        local = datetime.strptime(row["Actualisation de la donnée"], "%Y-%m-%d %H:%M:%S")
        identities.append((code, (local - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),  # May: UTC+2
                           *(int(row[label]) for label in COUNT_LABELS), *(row[label] == "1" for label in FLAG_LABELS)))
    return identities, unmapped


def changed_identities(snapshots: list[list[dict[str, str]]]) -> list[tuple]:
    """Per station, the identities that differ from the station's previous one, snapshot after snapshot: what the
    producer must send."""
    last: dict[str, tuple] = {}
    sent = []
    for rows in snapshots:
        for identity in expected_identities(rows)[0]:
            if last.get(identity[0]) != identity:
                last[identity[0]] = identity
                sent.append(identity)
    return sent


def identities_of(messages: list[tuple[str, dict[str, Any], int, int]]) -> list[tuple]:
    assert all(key == value["station_code"] for key, value, _, _ in messages)
    return [velib.snapshot_identity(value) for _, value, _, _ in messages]


def assert_sent_once_in_order(messages: list[tuple[str, dict[str, Any], int, int]], wanted: list[tuple]) -> None:
    """The topic holds exactly the wanted identities, each once, and a station's records in observation order."""
    sent = identities_of(messages)
    assert sorted(sent) == sorted(wanted)
    by_station: dict[str, list[tuple[int, str]]] = {}
    for _, value, _, offset in messages:
        by_station.setdefault(value["station_code"], []).append((offset, value["observed_at"]))
    assert all([t for _, t in sorted(v)] == sorted(t for _, t in v) for v in by_station.values())


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
        # 40 stations report a newer snapshot; 25 re-serve their reported_at with a bike more (the feed's real
        # pattern); the others repeat theirs
        assert all(raw["duedate"] < "2024-05-28T20:30" for raw in export[:40])
        updated = [{**raw, "duedate": "2024-05-28T20:30:00+00:00", "numbikesavailable": raw["numbikesavailable"] + 1}
                   for raw in export[:40]]
        reserved = [{**raw, "numbikesavailable": raw["numbikesavailable"] + 1} for raw in export[40:65]]
        api.records = updated + reserved + export[65:]
        third = run_cli(PRODUCE, env)
        assert third.returncode == 0, third.stderr
        assert last_run()["rows_out"] == 65
    messages = consume_all(cronlake_env)
    sent = {(value["station_code"], value["reported_at"], value["bikes"]) for _, value, _, _ in messages}
    expected = {(r["stationcode"], r["duedate"].replace("+00:00", "Z"), r["numbikesavailable"])
                for r in export + updated + reserved}
    assert len(messages) == len(sent) == len(expected)
    assert sent == expected
    observed = sorted({value["observed_at"] for _, value, _, _ in messages})
    assert len(observed) == 2  # the first and the third fetch
    assert [path for path, _ in api.requests] == ["/exports/json"] * 3


def test_history_replay_sends_every_change_of_counts_once(cronlake_env: dict[str, str]) -> None:
    snapshots = history_snapshots()
    gbfs, _ = reference()
    skipped = 0
    for number, rows in enumerate(snapshots, start=1):
        result = run_cli([*PRODUCE, *REPLAY], cronlake_env)
        assert result.returncode == 0, result.stderr
        run = last_run()
        _, unmapped = expected_identities(rows)
        assert (run["rows_in"], run["records_quarantined"]) == (len(rows), unmapped), number
        rejects = Path(cronlake_env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "quarantine" / "velib_api"
        lines = [json.loads(line) for line in (rejects / f"{run['_id']}.rejects.jsonl").read_text().splitlines()]
        assert sorted(r["record"]["Identifiant station"] for r in lines) == sorted(
            r["Identifiant station"] for r in rows if expected_identities([r])[1])
        for reject in lines:
            assert reject["record"]["Identifiant station"] not in gbfs
            assert "unknown station id" in reject["reason"]
        skipped += run["extra"]["skipped_duplicates"]
        assert run["rows_out"] + run["extra"]["skipped_duplicates"] + unmapped == len(rows)
    messages = consume_all(cronlake_env)
    wanted = changed_identities(snapshots)
    assert_sent_once_in_order(messages, wanted)
    # the real pattern: the feed re-serves a reported_at with other counts (sent) or unchanged (skipped)
    per_time: dict[tuple[str, str], int] = {}
    for identity in wanted:
        per_time[identity[:2]] = per_time.get(identity[:2], 0) + 1
    assert sum(n - 1 for n in per_time.values()) > 50 and skipped > 0
    assert {value["observed_at"] for _, value, _, _ in messages} == {
        rows[0]["snapshot_commit_time_utc"] for rows in snapshots}  # each record observed when its snapshot was
    exhausted = run_cli([*PRODUCE, *REPLAY], cronlake_env)
    assert exhausted.returncode == 0 and last_run()["rows_in"] == 0


def test_broker_down_spools_then_the_next_run_sends_the_spool_first(cronlake_env: dict[str, str]) -> None:
    first_rows, second_rows = history_snapshots()[:2]
    down = {**cronlake_env, "CRONLAKE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    failed = run_cli([*PRODUCE, *REPLAY, "--gbfs", str(GBFS), "--kafka-timeout", "2"], down)
    assert failed.returncode == 1
    assert "spooled" in failed.stderr and down["CRONLAKE_KAFKA_BOOTSTRAP"] in failed.stderr
    run = last_run()
    first_sent = changed_identities([first_rows])
    assert run["status"] == "failed" and "Kafka" in run["error"]
    assert (run["rows_out"], run["extra"]["spooled"]) == (0, len(first_sent))
    spool = Path(cronlake_env["CRONLAKE_STATE_DIR"]) / "velib" / "spool" / cronlake_env["CRONLAKE_VELIB_TOPIC"]
    assert sum(len(f.read_text().splitlines()) for f in spool.glob("*.jsonl")) == len(first_sent)

    recovered = run_cli([*PRODUCE, *REPLAY], cronlake_env)
    assert recovered.returncode == 0, recovered.stderr
    run = last_run()
    assert run["extra"]["sent_from_spool"] == len(first_sent)
    assert list(spool.glob("*.jsonl")) == []
    messages = consume_all(cronlake_env)
    assert_sent_once_in_order(messages, changed_identities([first_rows, second_rows]))
    offsets = {velib.snapshot_identity(value): (partition, offset) for _, value, partition, offset in messages}
    for identity in set(changed_identities([first_rows, second_rows])) - set(first_sent):
        older = [offsets[i] for i in first_sent if i[0] == identity[0]]
        assert all(o < offsets[identity] for o in older)  # same key, same partition: spool first


def test_a_lake_in_safe_mode_costs_no_snapshot_and_fails_in_one_line(cronlake_env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    from webhdfs_server import serve

    server, _ = serve(tmp_path / "hdfs")
    host, port = server.server_address[:2]
    env = {**cronlake_env, "CRONLAKE_LAKE_ROOT": "hdfs://namenode:8020/lake",
           "CRONLAKE_WEBHDFS_URL": f"http://{host}:{port}"}
    first_rows, second_rows = history_snapshots()[:2]
    try:
        server.RequestHandlerClass.safe_mode = True  # the NameNode restarted: reads answer, writes are refused
        failed = run_cli([*PRODUCE, *REPLAY], env)
        assert failed.returncode == 1
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "velib_produce: failed: lake: cannot write hdfs://namenode:8020/lake/quarantine/velib_api/")
        assert "the NameNode is in safe mode" in last and "Traceback" not in failed.stderr
        assert sorted(identities_of(consume_all(cronlake_env))) == sorted(changed_identities([first_rows])), \
            "the snapshot was sent before the lake write"
        server.RequestHandlerClass.safe_mode = False
        recovered = run_cli([*PRODUCE, *REPLAY], env)
        assert recovered.returncode == 0, recovered.stderr
    finally:
        server.shutdown()
    assert_sent_once_in_order(consume_all(cronlake_env), changed_identities([first_rows, second_rows]))
    assert list((tmp_path / "hdfs" / "lake" / "quarantine" / "velib_api").glob("*.rejects.jsonl"))


def test_a_replay_file_of_another_format_fails_in_one_line(cronlake_env: dict[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "stations.csv"
    wrong.write_text("stationcode,numbikesavailable\n16107,3\n", encoding="utf-8")
    result = run_cli([*PRODUCE, "--source", "replay", "--replay-file", str(wrong)], cronlake_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"velib_produce: failed: --replay-file: {wrong}: not a Velib open-data CSV")
    assert "missing column(s) Identifiant station" in lines[0] and "'stationcode,numbikesavailable'" in lines[0]
    assert consume_all(cronlake_env) == []


def test_the_portals_zip_export_replays_as_one_snapshot(cronlake_env: dict[str, str]) -> None:
    """The `;`-separated French-label export, zipped: one run sends its stations, observed at its newest
    `Actualisation de la donnée`; the next finds the file exhausted."""
    with open(PORTAL_CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    replay = ["--source", "replay", "--replay-file", str(PORTAL_CSV.with_suffix(".zip"))]
    result = run_cli([*PRODUCE, *replay], cronlake_env)
    assert result.returncode == 0, result.stderr
    assert (last_run()["rows_in"], last_run()["rows_out"]) == (len(rows), len(rows))
    messages = consume_all(cronlake_env)
    newest = max(datetime.fromisoformat(r["Actualisation de la donnée"]) for r in rows)
    assert {value["observed_at"] for _, value, _, _ in messages} == {f"{newest.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"}
    assert sorted(value["station_code"] for _, value, _, _ in messages) == sorted(
        r["Identifiant station"] for r in rows)
    again = run_cli([*PRODUCE, *replay], cronlake_env)
    assert again.returncode == 0 and last_run()["rows_in"] == 0
