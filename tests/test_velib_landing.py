"""The Velib landing consumer: offset-range file names, commit only after the file is in the lake (a SIGKILL
between the two lands the same file again, nothing twice), malformed messages quarantined, lag recorded."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys

from conftest import REPO
from contracts_check import declared_indexes, server_indexes
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from test_velib_stream import create_topic, snapshots

from cronlake.contracts.velib import STATION
from cronlake.core.lake import open_lake
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import KAFKA_LAG
from cronlake.core.settings import load
from ingest.velib import landing as velib_landing

GROUP = "cronlake-velib-landing"


def produce_to(env: dict[str, str], values_by_partition: dict[int, list[bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"], acks="all")
    for partition, values in values_by_partition.items():
        for value in values:
            producer.send(env["CRONLAKE_VELIB_TOPIC"], value=value, partition=partition)
    producer.flush()
    producer.close()


def committed(env: dict[str, str]) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"], group_id=GROUP,
                             enable_auto_commit=False)
    topic = env["CRONLAKE_VELIB_TOPIC"]
    found = {p: consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    consumer.close(autocommit=False)
    return found


def landed(lake) -> dict[str, bytes]:
    return {f.path.rsplit("/", 1)[-1]: lake.read_bytes(f.path) for f in lake.list("landing/velib")}


def rows_of(files: dict[str, bytes]) -> list[tuple[str, ...]]:
    rows = []
    for data in files.values():
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        assert tuple(next(reader)) == STATION.names
        rows.extend(tuple(row) for row in reader)
    return rows


def split(records: list[dict]) -> dict[int, list[bytes]]:
    return {p: [json.dumps(r).encode() for r in records[p::2]] for p in (0, 1)}


def test_crash_between_file_and_commit_lands_the_same_file_once(cronlake_env):
    topic = cronlake_env["CRONLAKE_VELIB_TOPIC"]
    create_topic(cronlake_env)
    first = snapshots(range(0, 3))  # 120 records: 60 per partition
    produce_to(cronlake_env, split(first))
    command = [sys.executable, "-m", "cronlake.ops.run", "velib_land", "--idle-seconds", "2",
               "--pause-before-commit", "60"]
    process = subprocess.Popen(command, env={**os.environ, **cronlake_env},
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    steps = []
    for line in process.stdout:
        steps.append(json.loads(line)["step"])
        if steps[-1] == "landing.files_written":
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert steps.count("landing.file") == 2 and "landing.committed" not in steps

    lake = open_lake(load())
    before = landed(lake)
    assert sorted(before) == [f"{topic}-p{p}-o000000000000-000000000059.csv" for p in (0, 1)]
    assert committed(cronlake_env) == {0: None, 1: None}

    produce_to(cronlake_env, split(snapshots(range(3, 4))))  # new messages arrive before the retry
    pending = lake.list(f"checkpoints/{velib_landing.JOB.name}/pending")
    assert len(pending) == 2, "the killed run left its ranges pending"
    assert velib_landing.JOB.main(["--idle-seconds", "2"]) == 0
    after = landed(lake)
    assert {name: after[name] for name in before} == before, "the retry rewrote the same files, same content"
    assert len(after) == 2, "the new messages wait for the next run: the retry lands exactly the pending ranges"
    assert committed(cronlake_env) == {0: 60, 1: 60}

    assert velib_landing.JOB.main(["--idle-seconds", "2"]) == 0
    final = landed(lake)
    assert sorted(final)[1] == f"{topic}-p0-o000000000060-000000000079.csv"
    rows = rows_of(final)
    assert len(rows) == len(set(rows)) == 160, "every record landed exactly once"
    expected = {(r["station_code"], r["reported_at"]) for r in snapshots(range(0, 4))}
    assert {(row[0], row[10]) for row in rows} == expected
    assert committed(cronlake_env) == {0: 80, 1: 80}
    assert not lake.list(f"checkpoints/{velib_landing.JOB.name}/pending")


def test_malformed_messages_quarantined_and_lag_recorded(cronlake_env):
    topic = cronlake_env["CRONLAKE_VELIB_TOPIC"]
    create_topic(cronlake_env)
    good = [json.dumps(r).encode() for r in snapshots(range(0, 1))]  # 40 records
    bad = [b"{not json", json.dumps({"station_code": "16107"}).encode(),
           json.dumps({**snapshots(range(0, 1))[0], "mechanical": "many"}).encode()]
    produce_to(cronlake_env, {0: bad + good[:30], 1: good[30:]})
    assert velib_landing.JOB.main(["--max-records", "33", "--idle-seconds", "1"]) == 0

    settings = load()
    lake = open_lake(settings)
    run = ops_db(settings).job_runs.find_one({"job": "velib_land"})
    assert run["status"] == "succeeded"
    files = landed(lake)
    assert len(rows_of(files)) == run["rows_out"] == 30
    assert run["rows_in"] == 33 and run["records_quarantined"] == 3 and run["extra"]["files_landed"] == len(files)
    positions = {p: offset or 0 for p, offset in committed(cronlake_env).items()}
    assert positions[0] + positions[1] == 33, "exactly the records read were committed"
    p0 = f"{topic}-p0-o000000000000-{positions[0] - 1:012d}.csv"
    rejects = [json.loads(line) for line in lake.read_text(f"quarantine/velib/{p0}.rejects.jsonl").splitlines()]
    assert [r["origin"]["offset"] for r in rejects] == [0, 1, 2]
    assert "not JSON" in rejects[0]["reason"] and "missing" in rejects[1]["reason"]
    assert "mechanical" in rejects[2]["reason"]

    lag = ops_db(settings).kafka_lag.find_one({"_id": f"{GROUP}|{topic}"})
    assert lag["partitions"] == {"0": 33 - positions[0], "1": 10 - positions[1]}
    assert lag["lag"] == 43 - 33
    assert declared_indexes(KAFKA_LAG) <= server_indexes(ops_db(settings), KAFKA_LAG)
