"""The churn pipeline: the customer contract, training with versions, promotion and rollback, the live stream
(model switch between batches, quarantine, equal to a batch transform) and exactly once after SIGKILL.

The data is the real IBM Telco CSV from ../shared/data/churn (7,043 customers, 11 blank TotalCharges); the forests
are small so that a training takes seconds.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest
from conftest import REPO, SHARED_DATA
from kafka import KafkaProducer

CSV = SHARED_DATA / "churn" / "telco_customer_churn.csv"
SMALL_FOREST = ["--trees", "8", "--max-depth", "5"]


@pytest.fixture
def churn_env(cronlake_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    topic = f"churn.t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CRONLAKE_CHURN_TOPIC", topic)
    return {**cronlake_env, "CRONLAKE_CHURN_TOPIC": topic}


def customers() -> list[dict[str, str]]:
    with CSV.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def settings_and_lake():
    from cronlake.core import settings as settings_module
    from cronlake.core.lake import open_lake

    settings = settings_module.load()
    return settings, open_lake(settings)


def land_and_train(*extra: str) -> str:
    """Land the CSV with the real job, train (promoting with --promote); return the new version."""
    from ingest import land_file
    from process.churn import registry, train

    assert land_file.JOB.main(["--source", "churn", str(CSV)]) == 0
    _, lake = settings_and_lake()
    before = set(registry.versions(lake))
    assert train.JOB.main([*SMALL_FOREST, *extra]) == 0
    (version,) = set(registry.versions(lake)) - before
    return version


def replay(*args: str) -> None:
    from ingest.churn import replay as churn_replay

    assert churn_replay.JOB.main([str(CSV), "--rate", "0", *args]) == 0


def run_stream(*extra: str) -> int:
    from process.churn import stream

    return stream.JOB.main(["--trigger-seconds", "0.5", "--until-idle", "2", *extra])


def batch_probabilities(spark, version: str, rows: list[dict[str, str]]) -> dict[str, float]:
    """A batch `transform` of the same CSV rows with the saved model: customer id → probability."""
    from pyspark.ml import PipelineModel

    from cronlake.contracts.churn import CUSTOMER
    from process.churn import registry
    from process.churn.features import TEXT_SCHEMA, prepare, score

    _, lake = settings_and_lake()
    model = PipelineModel.load(lake.uri(registry.pipeline_path(version)))
    frame = spark.createDataFrame([tuple(r[n] for n in CUSTOMER.names) for r in rows], TEXT_SCHEMA)
    return {r["customerID"]: r["churn_probability"] for r in score(model, prepare(frame)).collect()}


def predictions() -> dict[str, dict]:
    from cronlake.core.mongo import data_db

    settings, _ = settings_and_lake()
    return {doc["_id"]: doc for doc in data_db(settings).churn_predictions.find()}


def scored_count() -> int:
    from cronlake.core.mongo import data_db

    return data_db(settings_and_lake()[0]).churn_predictions.count_documents({})


def test_parse_message_checks_the_customer_contract():
    from cronlake.contracts.churn import parse_message
    from cronlake.core.contracts import RecordError

    blank_total = next(r for r in customers() if not r["TotalCharges"].strip())
    assert parse_message(json.dumps(blank_total))["TotalCharges"] == ""
    unlabelled = {k: v for k, v in customers()[0].items() if k != "Churn"}
    assert parse_message(json.dumps(unlabelled))["customerID"] == "7590-VHVEG"
    for value, reason in ((b"{not json", "not JSON"), ("[1, 2]", "not a JSON object"),
                          (json.dumps({**customers()[0], "tenure": "twelve"}), "tenure is not an integer"),
                          (json.dumps({**customers()[0], "MonthlyCharges": 29.85}), "MonthlyCharges is not text"),
                          (json.dumps({k: v for k, v in customers()[0].items() if k != "Contract"}),
                           "missing column Contract")):
        with pytest.raises(RecordError, match=reason):
            parse_message(value)


def test_train_saves_versions_with_metrics_and_promotion_rolls_back(churn_env, spark):
    from cronlake.core.mongo import data_db
    from process.churn import registry

    first = land_and_train("--promote")
    settings, lake = settings_and_lake()
    manifest = registry.read_manifest(lake, first)
    assert manifest["data_sha256"] == hashlib.sha256(CSV.read_bytes()).hexdigest()
    assert sum(manifest["rows"].values()) == 7043
    model, baseline = manifest["metrics"]["model"], manifest["metrics"]["baseline"]
    assert model["auc"] > baseline["auc"] > 0.5 and model["pr_auc"] > baseline["pr_auc"]
    assert 0 < model["f1"] <= 1 and model["threshold"] == manifest["threshold"]
    assert "TotalCharges DOUBLE" in manifest["features"]["input_schema"]
    assert manifest["drivers"]["rates"]["Contract"]["Month-to-month"] > manifest["drivers"]["base_rate"]
    assert registry.read_pointer(lake)["version"] == first

    second = land_and_train("--seed", "7")
    assert registry.read_pointer(lake)["version"] == first, "training alone promotes nothing"
    assert registry.JOB.main(["promote", second]) == 0
    assert registry.read_pointer(lake) | {"at": None} == {"version": second, "history": [first],
                                                           "action": "promote", "at": None}
    runs = {doc["_id"]: doc for doc in data_db(settings).churn_model_runs.find()}
    assert runs[second]["promoted"] and not runs[first]["promoted"]
    assert registry.JOB.main(["rollback"]) == 0
    assert registry.read_pointer(lake)["version"] == first
    assert registry.JOB.main(["promote", "19990101T000000Z"]) == 1, "an unknown version is refused"
    assert registry.JOB.main(["rollback"]) == 1, "nothing left to roll back to"
    assert registry.read_pointer(lake)["version"] == first


def test_stream_scores_like_a_batch_switches_models_between_batches_and_quarantines(churn_env, spark):
    from cronlake.core.mongo import ops_db
    from process.churn import registry

    first = land_and_train("--promote")
    rows = customers()
    replay("--limit", "300")
    producer = KafkaProducer(bootstrap_servers=churn_env["CRONLAKE_KAFKA_BOOTSTRAP"], acks="all")
    for value in (b"not json", json.dumps({"customerID": "X-1"}).encode(),
                  json.dumps({**rows[0], "customerID": "X-2", "tenure": "-3"}).encode()):
        producer.send(churn_env["CRONLAKE_CHURN_TOPIC"], key=b"bad", value=value)
    producer.flush()
    assert run_stream("--max-offsets-per-trigger", "120") == 0

    scored = predictions()
    assert set(scored) == {r["customerID"] for r in rows[:300]}
    expected = batch_probabilities(spark, first, rows[:300])
    assert all(abs(doc["churn_probability"] - expected[key]) < 1e-6 for key, doc in scored.items())
    assert {doc["model_version"] for doc in scored.values()} == {first}
    doc = scored[rows[0]["customerID"]]
    assert doc["produced_at"] <= doc["scored_at"] and doc["latency_ms"] > 0 and doc["drivers"]
    settings, lake = settings_and_lake()
    rejects = [json.loads(line) for f in lake.list("quarantine/churn")
               for line in lake.read_text(f.path).splitlines()]
    assert sorted(r["reason"] for r in rejects) == ["missing column gender", "negative tenure: -3", "not JSON"]
    run = ops_db(settings).job_runs.find_one({"job": "churn_stream", "status": "succeeded"})
    assert run["records_quarantined"] == 3 and run["rows_out"] == 300
    heartbeat = ops_db(settings).heartbeats.find_one({"_id": "churn_stream"})
    assert heartbeat["run_id"] == run["_id"] and heartbeat["batch_id"] >= 2

    # A new version promoted while the stream is down: the next batches use it; scored rows keep theirs.
    second = land_and_train("--seed", "7")
    assert registry.JOB.main(["promote", second]) == 0
    replay("--skip", "300", "--limit", "200")
    assert run_stream("--max-offsets-per-trigger", "70") == 0
    scored = predictions()
    assert len(scored) == 500
    versions = {r["customerID"]: v for v, part in ((first, rows[:300]), (second, rows[300:500])) for r in part}
    assert all(doc["model_version"] == versions[key] for key, doc in scored.items())
    expected = batch_probabilities(spark, second, rows[300:500])
    assert all(abs(scored[key]["churn_probability"] - p) < 1e-6 for key, p in expected.items())
    by_batch = defaultdict(set)
    for doc in scored.values():
        by_batch[doc["scored_at"]].add(doc["model_version"])
    assert len(by_batch) >= 4 and all(len(v) == 1 for v in by_batch.values()), "no batch mixes versions"


def start_stream(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cronlake.ops.run", "churn_stream", "--trigger-seconds", "0.5",
                             "--max-offsets-per-trigger", "1500", "--until-idle", "2"],
                            env={**os.environ, **env}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def test_every_customer_scored_exactly_once_after_sigkill(churn_env, spark, tmp_path):
    from process.churn import stream

    version = land_and_train("--promote")
    replay()
    with open(tmp_path / "first.log", "w") as log:
        first = start_stream(churn_env, log)
        try:
            deadline = time.monotonic() + 600  # a guard, not a speed check: Spark starts slowly on a busy machine
            while scored_count() < 400:
                assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
                time.sleep(0.1)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
    killed_at = predictions()
    assert 400 <= len(killed_at) < 7043, "killed mid-stream"

    with open(tmp_path / "second.log", "w") as log:
        second = start_stream(churn_env, log)
        try:
            assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()
        finally:
            second.kill()
    scored = predictions()
    rows = customers()
    assert set(scored) == {r["customerID"] for r in rows} and len(scored) == 7043
    assert len({(d["partition"], d["offset"]) for d in scored.values()}) == 7043
    assert all(scored[key]["scored_at"] == doc["scored_at"] for key, doc in killed_at.items()), \
        "a customer scored before the kill was not scored again"
    expected = batch_probabilities(spark, version, rows)
    assert all(abs(scored[key]["churn_probability"] - p) < 1e-6 for key, p in expected.items())
    logged = [json.loads(line) for line in (tmp_path / "second.log").read_text().splitlines()
              if line.startswith("{") and '"stream.batch"' in line]
    assert sum(b["scored"] for b in logged) == 7043 - len(killed_at)
    assert stream.JOB.long_running


def test_a_file_rewritten_without_spark_reads_back_through_spark(cronlake_env, spark):
    """The pointer is written by `churn_train` (through Spark) and by `churn_model` (plain Python) alike."""
    from cronlake.core.lake import open_lake, spark_lake

    settings, _ = settings_and_lake()
    through_spark, plain = spark_lake(spark, settings), open_lake(settings)
    through_spark.put_text("models/x/pointer.json", "first")
    plain.put_text("models/x/pointer.json", "second, longer")
    assert through_spark.read_text("models/x/pointer.json") == "second, longer"
