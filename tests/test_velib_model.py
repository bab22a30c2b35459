"""The "will it be full" model job on a real 3-day slice: examples and baseline metrics checked against plain
Python, model metrics in range, model saved and loadable, one prediction per station with the version."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from conftest import FIXTURES
from pyspark.sql import functions as F

from cronlake.core import settings as settings_module
from cronlake.core.mongo import data_db
from process.velib import daily as velib_daily
from process.velib import model as velib_model

SLICE = FIXTURES / "velib_batch" / "velib-model-slice.csv"
MAX_GAP_S = 120 * 60


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def snapshots_by_station() -> dict[str, list[dict]]:
    stations = defaultdict(dict)
    with open(SLICE, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            stations[row["station_code"]][row["reported_at"]] = row
    return {code: [rows[t] for t in sorted(rows, key=epoch)] for code, rows in stations.items()}


def close(times: list[float]) -> bool:
    return all(0 <= later - earlier <= MAX_GAP_S for earlier, later in zip(times, times[1:], strict=False))


def expected_examples() -> list[tuple[float, bool, bool]]:
    """(time, full at t, full at t-1) for every snapshot whose 3 predecessors are each within 2 h."""
    found = []
    for rows in snapshots_by_station().values():
        for i in range(3, len(rows)):
            window = rows[i - 3:i + 1]
            if close([epoch(r["reported_at"]) for r in window]):
                found.append((epoch(rows[i]["reported_at"]), rows[i]["docks_free"] == "0",
                              rows[i - 1]["docks_free"] == "0"))
    return found


def test_history_features_use_only_earlier_snapshots(spark):
    """Full rates, docks trend and time since the last change of each example, recomputed in plain Python from
    the station's earlier snapshots only: no feature of t sees t or later."""
    status = (spark.read.option("header", True).schema(velib_daily.CSV_SCHEMA).csv(str(SLICE))
              .withColumn("reported_at", F.to_timestamp("reported_at")))
    rows = {(r["station_code"], r["at_0"]): r
            for r in velib_model.examples(status, "Europe/Paris", 120.0).collect()}
    checked = 0
    for code, snapshots in snapshots_by_station().items():
        times = [epoch(r["reported_at"]) for r in snapshots]
        full = [r["docks_free"] == "0" for r in snapshots]
        docks = [int(r["docks_free"]) for r in snapshots]
        for i in range(3, len(snapshots)):
            row = rows.get((code, int(times[i])))
            if not close(times[i - 3:i + 1]):
                assert row is None
                continue
            assert row["full_rate_station"] == pytest.approx(sum(full[:i]) / i)
            assert row["docks_trend_3"] == docks[i - 1] - docks[i - 3]
            last_change = max(j for j in range(i) if j == 0 or docks[j] != docks[j - 1])
            assert row["minutes_since_change"] == pytest.approx((times[i] - times[last_change]) / 60)
            checked += 1
    assert checked > 300


def test_train_evaluates_saves_and_predicts(spark, cronlake_env):
    landing = Path(cronlake_env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "landing" / "velib"
    landing.mkdir(parents=True)
    shutil.copy(SLICE, landing / SLICE.name)
    assert velib_daily.JOB.main([]) == 0

    assert velib_model.JOB.main(["--trees", "10", "--max-depth", "5"]) == 0

    database = data_db(settings_module.load())
    runs = list(database.velib_model_runs.find())
    assert len(runs) == 1
    run = runs[0]

    examples = expected_examples()
    first, last = min(t for t, _, _ in examples), max(t for t, _, _ in examples)
    cut = int(first + 0.8 * (last - first))
    test = [(full, baseline) for t, full, baseline in examples if t >= cut]
    assert run["rows_train"] == len(examples) - len(test)
    assert run["rows_test"] == len(test)
    assert run["positives_test"] == sum(full for full, _ in test)
    tp = sum(full and baseline for full, baseline in test)
    assert run["metrics"]["baseline"]["precision"] == pytest.approx(tp / sum(b for _, b in test), abs=1e-6)
    assert run["metrics"]["baseline"]["recall"] == pytest.approx(tp / sum(f for f, _ in test), abs=1e-6)
    for who in ("model", "baseline"):
        assert set(run["metrics"][who]) == {"auc", "pr_auc", "precision", "recall", "f1"}
        assert all(0.0 <= value <= 1.0 for value in run["metrics"][who].values()), run["metrics"]
    assert run["threshold"] in velib_model.THRESHOLDS
    assert [p["threshold"] for p in run["pr_curve"]] == velib_model.THRESHOLDS
    recalls = [p["recall"] for p in run["pr_curve"]]
    assert recalls == sorted(recalls, reverse=True)  # a higher threshold never finds more full stations
    chosen = next(p for p in run["pr_curve"] if p["threshold"] == run["threshold"])
    assert (chosen["precision"], chosen["recall"]) == (run["metrics"]["model"]["precision"],
                                                       run["metrics"]["model"]["recall"])

    from pyspark.ml import PipelineModel

    model = PipelineModel.load(cronlake_env["CRONLAKE_LAKE_ROOT"] + "/" + run["path"])
    row = {name: 1.0 for name in velib_model.FEATURES}
    assert model.transform(spark.createDataFrame([row])).select("probability").first()[0].size == 2

    predicted = {d["_id"]: d for d in database.velib_predictions.find()}
    latest = {code: rows[-1] for code, rows in snapshots_by_station().items()}
    eligible = {
        code for code, rows in snapshots_by_station().items()
        if len(rows) >= 3 and close([epoch(r["reported_at"]) for r in rows[-3:]])
        and epoch(rows[-1]["reported_at"]) - epoch(rows[-2]["reported_at"]) <= MAX_GAP_S
    }
    assert set(predicted) == eligible and eligible
    for code, document in predicted.items():
        assert document["model_version"] == run["version"]
        assert 0.0 <= document["probability_full"] <= 1.0
        assert document["at"].timestamp() > epoch(latest[code]["reported_at"])
