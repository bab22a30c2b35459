"""The "will it be full" model job on a real 3-day slice: examples and baseline metrics checked against plain
Python, model metrics in range, model saved and loadable, one prediction per station with the version."""

from __future__ import annotations

import csv
import math
import shutil
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from statistics import fmean
from zoneinfo import ZoneInfo

import pytest
from conftest import FIXTURES
from pyspark.sql import functions as F

from cronlake.core import settings as settings_module
from cronlake.core.mongo import data_db
from process.velib import daily as velib_daily
from process.velib import model as velib_model

SLICE = FIXTURES / "velib_batch" / "velib-model-slice.csv"
MAX_GAP_S = 120 * 60
PARIS = ZoneInfo("Europe/Paris")
RADIUS_M = 3000.0  # the slice's 15 stations are far apart: a wide radius gives most of them neighbours


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def snapshots_by_station() -> dict[str, list[dict]]:
    stations = defaultdict(dict)
    with open(SLICE, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            stations[row["station_code"]][row["observed_at"]] = row
    return {code: [rows[t] for t in sorted(rows, key=epoch)] for code, rows in stations.items()}


def close(times: list[float]) -> bool:
    return all(0 <= later - earlier <= MAX_GAP_S for earlier, later in zip(times, times[1:], strict=False))


def expected_examples() -> list[tuple[float, bool, bool]]:
    """(time, full at t, full at t-1) for every snapshot whose 3 predecessors are each within 2 h."""
    found = []
    for rows in snapshots_by_station().values():
        for i in range(3, len(rows)):
            window = rows[i - 3:i + 1]
            if close([epoch(r["observed_at"]) for r in window]):
                found.append((epoch(rows[i]["observed_at"]), rows[i]["docks_free"] == "0",
                              rows[i - 1]["docks_free"] == "0"))
    return found


def components(node):
    """`node` and every Dash component below it."""
    yield node
    children = getattr(node, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from components(child)


def slice_status(spark):
    return (spark.read.option("header", True).schema(velib_daily.CSV_SCHEMA).csv(str(SLICE))
            .withColumn("observed_at", F.to_timestamp("observed_at")))


def examples_by_key(status) -> dict[tuple[str, int], dict]:
    rows = velib_model.examples(status, "Europe/Paris", 120.0, RADIUS_M).collect()
    return {(r["station_code"], r["at_0"]): r.asDict() for r in rows}


@pytest.fixture(scope="module")
def slice_examples(spark) -> dict[tuple[str, int], dict]:
    return examples_by_key(slice_status(spark))


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def test_history_features_use_only_earlier_snapshots(slice_examples):
    """Full rates, docks trend, time since the last change and the usual movement at t's hour of each example,
    recomputed in plain Python from the station's earlier snapshots only: no feature of t sees t or later."""
    rows = slice_examples
    checked = 0
    for code, snapshots in snapshots_by_station().items():
        times = [epoch(r["observed_at"]) for r in snapshots]
        full = [r["docks_free"] == "0" for r in snapshots]
        docks = [int(r["docks_free"]) for r in snapshots]
        local = [datetime.fromtimestamp(t, PARIS) for t in times]
        flows = [None] + [(docks[j] - docks[j - 1]) / max((times[j] - times[j - 1]) / 60, 1.0)
                          if times[j] - times[j - 1] <= MAX_GAP_S else None for j in range(1, len(times))]
        for i in range(3, len(snapshots)):
            row = rows.get((code, int(times[i])))
            if not close(times[i - 3:i + 1]):
                assert row is None
                continue
            assert row["full_rate_station"] == pytest.approx(sum(full[:i]) / i)
            assert row["docks_trend_3"] == docks[i - 1] - docks[i - 3]
            last_change = max(j for j in range(i) if j == 0 or docks[j] != docks[j - 1])
            assert row["minutes_since_change"] == pytest.approx((times[i] - times[last_change]) / 60)
            earlier = [j for j in range(i) if flows[j] is not None]
            same_hour = [j for j in earlier if local[j].hour == local[i].hour]
            same_day_type = [j for j in same_hour if (local[j].weekday() >= 5) == (local[i].weekday() >= 5)]
            flow_hour = fmean(flows[j] for j in same_hour or earlier) if earlier else 0.0
            assert row["flow_hour"] == pytest.approx(flow_hour)
            assert row["flow_daytype"] == pytest.approx(
                fmean(flows[j] for j in same_day_type) if same_day_type else flow_hour)
            assert row["flow_projected"] == pytest.approx(docks[i - 1] + flow_hour * (times[i] - times[i - 1]) / 60)
            checked += 1
    assert checked > 300


def test_neighbour_features_are_the_neighbours_latest_state_at_t_minus_1(slice_examples):
    """Share full and share of free docks of the stations within the radius, each by its latest snapshot at or
    before t-1, recomputed in plain Python."""
    stations = snapshots_by_station()
    where = {code: (sum(float(r["lat"]) for r in rows) / len(rows), sum(float(r["lon"]) for r in rows) / len(rows))
             for code, rows in stations.items()}
    checked = 0
    for (code, _), row in slice_examples.items():
        latest = []
        for other, rows in stations.items():
            if other != code and metres(where[code], where[other]) <= RADIUS_M:
                seen = [r for r in rows if epoch(r["observed_at"]) <= row["at_1"]]
                if seen:
                    latest.append(seen[-1])
        assert row["nb_count_1"] == len(latest)
        if latest:
            assert row["nb_full_share_1"] == pytest.approx(sum(r["docks_free"] == "0" for r in latest) / len(latest))
            assert row["nb_free_share_1"] == pytest.approx(
                sum(int(r["docks_free"]) for r in latest) / sum(int(r["capacity"]) for r in latest))
            checked += 1
    assert checked > 300


def test_a_changed_future_leaves_earlier_features_unchanged(spark, slice_examples):
    """Every station full from a time T on (free docks 0, bikes = capacity): no feature of an example at or
    before T moves, for any station, while the later examples do change."""
    status = slice_status(spark)
    cut = status.agg(F.percentile_approx(F.col("observed_at").cast("long"), 0.5).alias("t")).first()["t"]
    future = F.col("observed_at").cast("long") >= cut
    rewritten = examples_by_key(status.withColumn("docks_free", F.when(future, 0).otherwise(F.col("docks_free")))
                                .withColumn("bikes", F.when(future, F.col("capacity")).otherwise(F.col("bikes"))))
    assert rewritten.keys() == slice_examples.keys()
    earlier = [key for key in slice_examples if key[1] <= cut]
    later = [key for key in slice_examples if key[1] > cut]
    assert len(earlier) > 200 and len(later) > 200
    for key in earlier:
        assert {f: rewritten[key][f] for f in velib_model.FEATURES} == {
            f: slice_examples[key][f] for f in velib_model.FEATURES}, key
    assert sum(any(rewritten[key][f] != slice_examples[key][f] for f in velib_model.FEATURES) for key in later) > 100


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
    # The threshold is the best F1 of the validation curve (ties: nearest 0.5), never read off the test curve.
    validation = run["pr_curve_validation"]
    assert [p["threshold"] for p in validation] == velib_model.THRESHOLDS
    best = max(p["f1"] for p in validation)
    assert run["threshold"] == min((p["threshold"] for p in validation if p["f1"] == best),
                                   key=lambda threshold: abs(threshold - 0.5))
    assert run["fit_until"] < run["test_from"]
    assert [p["threshold"] for p in run["pr_curve"]] == velib_model.THRESHOLDS
    recalls = [p["recall"] for p in run["pr_curve"]]
    assert recalls == sorted(recalls, reverse=True)  # a higher threshold never finds more full stations
    chosen = next(p for p in run["pr_curve"] if p["threshold"] == run["threshold"])
    assert (chosen["precision"], chosen["recall"]) == (run["metrics"]["model"]["precision"],
                                                       run["metrics"]["model"]["recall"])

    # The Model page's section built from this run: model beside baseline per metric, the chosen threshold, and
    # the test precision–recall curve with the baseline's point.
    from dashboard.pages.velib import model as model_page

    page = {getattr(c, "id", None): c for c in components(model_page.run_section())}
    shown = {r["metric"]: r for r in page["model-metrics"].data}
    for name in ("pr_auc", "f1"):
        for who in ("model", "baseline"):
            assert shown[name][who] == round(run["metrics"][who][name], 3)
    assert page["model-threshold"].children == str(run["threshold"])
    traces = {trace.name: trace for trace in page["model-pr-curve"].figure.data}
    assert list(traces["model (thresholds)"].x) == [p["recall"] for p in run["pr_curve"]]
    assert list(traces["baseline: full at t-1"].y) == [run["metrics"]["baseline"]["precision"]]

    from pyspark.ml import PipelineModel

    model = PipelineModel.load(cronlake_env["CRONLAKE_LAKE_ROOT"] + "/" + run["path"])
    row = {name: 1.0 for name in velib_model.FEATURES}
    assert model.transform(spark.createDataFrame([row])).select("probability").first()[0].size == 2

    predicted = {d["_id"]: d for d in database.velib_predictions.find()}
    latest = {code: rows[-1] for code, rows in snapshots_by_station().items()}
    eligible = {
        code for code, rows in snapshots_by_station().items()
        if len(rows) >= 3 and close([epoch(r["observed_at"]) for r in rows[-3:]])
        and epoch(rows[-1]["observed_at"]) - epoch(rows[-2]["observed_at"]) <= MAX_GAP_S
    }
    assert set(predicted) == eligible and eligible
    for code, document in predicted.items():
        assert document["model_version"] == run["version"]
        assert 0.0 <= document["probability_full"] <= 1.0
        assert document["at"].timestamp() > epoch(latest[code]["observed_at"])
