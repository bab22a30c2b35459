"""Velib "will it be full" model: from the processed snapshots, predict whether a station has no free dock at
its next snapshot, and publish the model, its evaluation against a naive baseline and the latest predictions.

Examples. For each station, snapshots are ordered by observed_at; the example at snapshot t uses the three
previous snapshots t-1, t-2, t-3 of the same station. Features: docks_free and bikes at t-1..t-3, capacity,
the local (Europe/Paris) hour and weekday of t, and the minutes between t-1 and t (sampling is irregular:
~30-60 min in the history, one minute live, so the model is told how far ahead it predicts), plus what a
practitioner adds (`HISTORY_FEATURES`): the station's past full rate overall, by local hour, by hour of the week
and over the last 6 and 24 hours, the trend of free docks (t-1 minus t-2, t-1 minus t-3), the fill of t-1, the
minutes since its free docks last changed and how long it has been full at t-1; the state of t-1 in more telling
forms (`STATE_FEATURES`: free docks against the station's usual count at t's hour, the trend per minute projected
to t, bikes beyond the docks, the e-bike share); its neighbourhood (`NEIGHBOUR_FEATURES`: the stations within
`--neighbour-radius`, 500 m, each by its latest snapshot at t-1: how many, the share full, the share of docks free
and its change since t-2); and its usual movement at t's hour (`SEASONAL_FEATURES`: the mean change of free docks
per minute at that local hour on earlier days, on all days and on days of the same type, weekday or weekend, its
turnover, and t-1's free docks projected to t with them). Every one of them is computed from snapshots before t
only (the rates and means average earlier snapshots), so they serve the test and the live predictions alike.
Label: docks_free == 0 at t. An example whose four snapshots are not each within `--max-gap-minutes` (default 120)
of the next is dropped: across a collection outage the lags no longer describe the recent past.

Model: a Spark ML Pipeline, VectorAssembler + RandomForestClassifier (40 trees of depth 12, at least 20 examples
a leaf). Trees fit the non-linear effects (hour × weekday, "almost full" thresholds that depend on capacity)
without scaling or one-hot encoding, and train in a couple of minutes on a laptop. Split by time: train on t
before the cut-off (`--test-from`, default the last 20 % of the covered time span), test on t from the cut-off on.
The baseline predicts "full at t" iff the station was full at t-1. Both are scored with AUC, PR-AUC (area under
the precision–recall curve, the honest summary at ~2 % positives), precision, recall and F1 of the "full" class;
the run also stores the model's precision–recall curve on the test period (`pr_curve`, one point per threshold of
THRESHOLDS).
`bench/bench_velib_model.py` measures both on the whole 21-day history.

Class imbalance: about 2 % of real snapshots are full. The positive rate of both sides is logged and stored
with the run. The default keeps the natural class balance, so `probability_full` stays a probability, and
the decision threshold is the one with the best F1 on the last 20 % of the training period (held out from the
fit; the test set informs no choice). `--class-weight balanced` reweights the classes instead (probabilities
then no longer calibrated).

Outputs: the fitted pipeline under `models/velib_full/<version>/` (version = UTC time of the run),
`velib_model_runs` (metrics, threshold, precision–recall curves of the test and validation periods, sizes,
class balance) and `velib_predictions`:
per station, the probability that it is full at its next snapshot, from its 3 latest snapshots (next snapshot
time = latest + latest interval).

    python -m cronlake.ops.run velib_train [--test-from 2022-05-28T00:00:00Z] [--class-weight balanced]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cronlake.contracts.velib import MODEL_RUNS, PREDICTIONS, STATUS
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.mongo import data_db
from cronlake.core.runner import JobError, RunContext

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import Column, DataFrame

MODEL = "velib_full"
LAGS = (1, 2, 3)
THRESHOLDS = [round(0.02 * i, 2) for i in range(1, 50)]
NEIGHBOUR_RADIUS_M = 500.0
METRES_PER_DEGREE = 111_195.0
# The features a practitioner adds to the raw lags: the station's own past full rate (overall, by local hour of the
# day and by hour of the week), the trend of free docks over the last snapshots, the fill of t-1 and how long the
# station has shown the same count (a station full for hours stays full; one that just filled may empty).
HISTORY_FEATURES = ["full_rate_station", "full_rate_hour", "full_rate_hour_of_week", "full_rate_6h", "full_rate_24h",
                    "docks_trend_2", "docks_trend_3", "fill_1", "minutes_since_change", "minutes_full_1"]
# The state of t-1 in more telling forms: free docks against the station's usual count at t's hour, the trend per
# minute projected to t (snapshots are 30-60 min apart), bikes beyond the docks, the share of e-bikes.
STATE_FEATURES = ["mean_docks_hour", "docks_vs_hour", "minutes_2", "docks_rate", "docks_projected", "overflow_1",
                  "ebike_share_1"]
# The stations within NEIGHBOUR_RADIUS_M at t-1: how many, the share full, the share of docks free and its change
# since t-2 (a neighbourhood filling up sends its returns to the stations that still have docks).
NEIGHBOUR_FEATURES = ["nb_count_1", "nb_full_share_1", "nb_free_share_1", "nb_free_trend"]
# The station's usual movement at t's local hour, from its earlier days: the mean change of free docks per minute
# (`flow`: a business-district station loses docks every weekday morning), on all days and on days of the same type
# (weekday or weekend), its mean absolute change (turnover: a busy full station frees docks sooner), its full rate on
# days of the same type, and the free docks of t-1 projected to t with those rates.
SEASONAL_FEATURES = ["weekend", "flow_hour", "flow_daytype", "turnover_hour", "turnover_station", "full_rate_daytype",
                     "flow_projected", "flow_daytype_projected", "turnover_projected"]
LAG_FEATURES = [*(f"docks_free_{k}" for k in LAGS), *(f"bikes_{k}" for k in LAGS), "capacity", "hour", "weekday",
                "minutes_since_1"]
FEATURES = [*LAG_FEATURES, *HISTORY_FEATURES, *STATE_FEATURES, *NEIGHBOUR_FEATURES, *SEASONAL_FEATURES]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velib_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-from", type=parse_utc, default=None, metavar="TIME",
                        help="first snapshot time of the test set, ISO-8601 UTC (default: last 20%% of the time span)")
    parser.add_argument("--max-gap-minutes", type=float, default=120.0,
                        help="drop examples whose consecutive snapshots are further apart than this")
    parser.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                        help="reweight the classes while training (default: natural balance)")
    parser.add_argument("--neighbour-radius", type=float, default=NEIGHBOUR_RADIUS_M, metavar="METRES",
                        help="stations within this distance are the neighbours of a station")
    parser.add_argument("--trees", type=int, default=40, help="number of trees")
    parser.add_argument("--max-depth", type=int, default=12, help="maximum depth of each tree")
    parser.add_argument("--min-instances", type=int, default=20,
                        help="fewest training examples in a leaf (keeps deep trees from fitting single snapshots)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the forest")
    return parser


def parse_utc(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 time, got {value!r}") from exc
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)


def with_next_snapshots(status: DataFrame) -> DataFrame:
    """Snapshots plus, per station, one row for its next snapshot (`is_next`, no counts): latest + last interval."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest_first = Window.partitionBy("station_code").orderBy(F.col("observed_at").desc())
    columns = ["station_code", "name", "zone", "lat", "lon", "capacity", "observed_at", "docks_free", "bikes", "ebike"]
    latest = (
        status.withColumn("rank", F.row_number().over(latest_first))
        .withColumn("previous_at", F.lead("observed_at").over(latest_first))
        .where((F.col("rank") == 1) & F.col("previous_at").isNotNull())
    )
    seconds = 2 * F.col("observed_at").cast("long") - F.col("previous_at").cast("long")
    following = latest.select(
        "station_code", "name", "zone", "lat", "lon", "capacity", F.timestamp_seconds(seconds).alias("observed_at"),
        *(F.lit(None).cast("int").alias(count) for count in ("docks_free", "bikes", "ebike")),
        F.lit(True).alias("is_next"),
    )
    return status.select(*columns, F.lit(False).alias("is_next")).unionByName(following)


def neighbour_state(snapshots: DataFrame, radius_m: float) -> DataFrame:
    """Per row of `snapshots` (station_code, observed_at): the stations within `radius_m` as of that time, each by
    its latest snapshot at or before it: how many (`nb_count`), the share full (`nb_full_share`) and the share of
    their docks free (`nb_free_share`).

    Each neighbour snapshot enters the station's timeline as the change it makes to those sums, so a running sum
    over the timeline is the neighbourhood's state at every moment without joining snapshots by time."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    coords = snapshots.where(F.col("lat").isNotNull()).groupBy("station_code").agg(
        F.avg("lat").alias("lat"), F.avg("lon").alias("lon"))
    a, b = coords.alias("a"), coords.alias("b")
    north = (F.col("a.lat") - F.col("b.lat")) * METRES_PER_DEGREE
    east = (F.col("a.lon") - F.col("b.lon")) * METRES_PER_DEGREE * F.cos(F.radians(F.col("a.lat")))
    pairs = a.crossJoin(b).where((F.col("a.station_code") != F.col("b.station_code"))
                                 & (north * north + east * east <= radius_m * radius_m)).select(
        F.col("a.station_code").alias("station_code"), F.col("b.station_code").alias("neighbour"))

    own = Window.partitionBy("station_code").orderBy("observed_at")
    sums = {"full": (F.col("docks_free") == 0).cast("int"), "docks": F.col("docks_free"), "cap": F.col("capacity"),
            "n": F.lit(1)}
    real = snapshots.where(F.col("docks_free").isNotNull()).select("station_code", "observed_at", *(
        value.alias(name) for name, value in sums.items()))
    changes = real.select(F.col("station_code").alias("neighbour"), "observed_at", *(
        (F.col(name) - F.coalesce(F.lag(name).over(own), F.lit(0))).alias(name) for name in sums))
    timeline = Window.partitionBy("station_code").orderBy(F.col("observed_at").cast("long")).rangeBetween(
        Window.unboundedPreceding, 0)
    state = (pairs.join(changes, "neighbour").select("station_code", "observed_at", *sums, F.lit(False).alias("own"))
             .unionByName(snapshots.select("station_code", "observed_at", *(F.lit(0).alias(name) for name in sums),
                                           F.lit(True).alias("own")))
             .select("station_code", "observed_at", "own", *(F.sum(name).over(timeline).alias(name) for name in sums))
             .where("own"))
    return state.select("station_code", "observed_at", F.col("n").alias("nb_count"),
                        (F.col("full") / F.greatest("n", F.lit(1))).alias("nb_full_share"),
                        (F.col("docks") / F.greatest("cap", F.lit(1))).alias("nb_free_share"))


def examples(snapshots: DataFrame, timezone: str, max_gap_minutes: float,
             radius_m: float = NEIGHBOUR_RADIUS_M) -> DataFrame:
    """One row per snapshot t with its 3 previous snapshots and history features; label = full at t (null for next).

    Every feature of t is known at t-1: the full rates average the labels of the station's earlier snapshots
    only (no future, no label of t), so the same columns serve the time-split test and the live predictions.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ordered = Window.partitionBy("station_code").orderBy("observed_at")
    local = F.from_utc_timestamp("observed_at", timezone)
    frame = (snapshots.join(neighbour_state(snapshots, radius_m), ["station_code", "observed_at"], "left")
             .withColumn("at_0", F.col("observed_at").cast("long"))
             .withColumn("hour", F.hour(local)).withColumn("weekday", F.dayofweek(local))
             .withColumn("weekend", F.col("weekday").isin(1, 7).cast("double"))
             .withColumn("label", (F.col("docks_free") == 0).cast("double")))
    for k in LAGS:
        frame = (frame.withColumn(f"docks_free_{k}", F.lag("docks_free", k).over(ordered))
                 .withColumn(f"bikes_{k}", F.lag("bikes", k).over(ordered))
                 .withColumn(f"at_{k}", F.lag("at_0", k).over(ordered))
                 .withColumn(f"nb_free_share_{k}", F.lag("nb_free_share", k).over(ordered)))
    frame = (frame.withColumn("ebike_1", F.lag("ebike").over(ordered))
             .withColumn("nb_count_1", F.lag("nb_count").over(ordered))
             .withColumn("nb_full_share_1", F.lag("nb_full_share").over(ordered)))
    # The change of free docks per minute from t-1 to t, on the row of t: only its means over earlier rows are
    # features (a gap beyond max_gap_minutes says nothing about an hour's movement).
    minutes_1 = (F.col("at_0") - F.col("at_1")) / 60
    frame = frame.withColumn("flow", F.when(minutes_1 <= max_gap_minutes, (
        F.col("docks_free") - F.col("docks_free_1")) / F.greatest(minutes_1, F.lit(1.0))))
    frame = frame.withColumn("turnover", F.abs("flow"))
    gaps_ok = F.lit(True)
    for k in LAGS:
        gap = (F.col(f"at_{k - 1}") - F.col(f"at_{k}")) / 60
        gaps_ok = gaps_ok & gap.isNotNull() & (gap <= max_gap_minutes)

    def recent_rate(hours: int) -> Column:
        last_hours = Window.partitionBy("station_code").orderBy("at_0").rangeBetween(-hours * 3600, -1)
        return F.coalesce(F.avg("label").over(last_hours), F.lit(0.0))

    changed = F.col("docks_free_1").isNull() | (F.col("docks_free") != F.col("docks_free_1"))
    last_change = F.last(F.when(changed, F.col("at_0")), ignorenulls=True).over(
        ordered.rowsBetween(Window.unboundedPreceding, -1))
    def past_mean(column: str, *keys: str) -> Column:
        earlier = Window.partitionBy("station_code", *keys).orderBy("observed_at").rowsBetween(
            Window.unboundedPreceding, -1)
        return F.avg(column).over(earlier)

    def past_rate(*keys: str) -> Column:
        return past_mean("label", *keys)

    station_rate = past_rate()
    hour_rate = F.coalesce(past_rate("hour"), station_rate)
    minutes_2 = (F.col("at_1") - F.col("at_2")) / 60
    return (
        frame.withColumn("full_rate_station", F.coalesce(station_rate, F.lit(0.0)))
        .withColumn("full_rate_hour", F.coalesce(hour_rate, F.lit(0.0)))
        .withColumn("full_rate_hour_of_week", F.coalesce(past_rate("hour", "weekday"), hour_rate, F.lit(0.0)))
        .withColumn("full_rate_6h", recent_rate(6)).withColumn("full_rate_24h", recent_rate(24))
        .withColumn("minutes_since_change", (F.col("at_0") - last_change) / 60)
        .withColumn("mean_docks_hour", F.coalesce(past_mean("docks_free", "hour"), past_mean("docks_free"),
                                                  F.col("docks_free_1").cast("double")))
        .withColumn("full_rate_daytype", F.coalesce(past_rate("hour", "weekend"), hour_rate, F.lit(0.0)))
        .withColumn("flow_hour", F.coalesce(past_mean("flow", "hour"), past_mean("flow"), F.lit(0.0)))
        .withColumn("flow_daytype", F.coalesce(past_mean("flow", "hour", "weekend"), F.col("flow_hour")))
        .withColumn("turnover_station", F.coalesce(past_mean("turnover"), F.lit(0.0)))
        .withColumn("turnover_hour", F.coalesce(past_mean("turnover", "hour"), F.col("turnover_station")))
        .where(gaps_ok)
        .withColumn("minutes_since_1", (F.col("at_0") - F.col("at_1")) / 60)
        .withColumn("docks_trend_2", F.col("docks_free_1") - F.col("docks_free_2"))
        .withColumn("docks_trend_3", F.col("docks_free_1") - F.col("docks_free_3"))
        .withColumn("fill_1", F.coalesce(F.col("docks_free_1") / F.when(F.col("capacity") > 0, F.col("capacity")),
                                         F.lit(0.0)))
        .withColumn("minutes_full_1", F.when(F.col("docks_free_1") == 0, F.col("minutes_since_change"))
                    .otherwise(F.lit(0.0)))
        .withColumn("minutes_2", minutes_2)
        .withColumn("docks_rate", F.col("docks_trend_2") / F.greatest(minutes_2, F.lit(1.0)))
        .withColumn("docks_projected", F.col("docks_free_1") + F.col("docks_rate") * F.col("minutes_since_1"))
        .withColumn("docks_vs_hour", F.col("docks_free_1") - F.col("mean_docks_hour"))
        .withColumn("overflow_1", F.col("bikes_1") + F.col("docks_free_1") - F.col("capacity"))
        .withColumn("ebike_share_1", F.coalesce(F.col("ebike_1") / F.greatest("bikes_1", F.lit(1)), F.lit(0.0)))
        .withColumn("nb_free_trend", F.col("nb_free_share_1") - F.col("nb_free_share_2"))
        .withColumn("flow_projected", F.col("docks_free_1") + F.col("flow_hour") * F.col("minutes_since_1"))
        .withColumn("flow_daytype_projected", F.col("docks_free_1") + F.col("flow_daytype") * F.col("minutes_since_1"))
        .withColumn("turnover_projected", F.col("docks_free_1") - F.col("turnover_hour") * F.col("minutes_since_1"))
        .withColumn("baseline", (F.col("docks_free_1") == 0).cast("double"))
    )


def evaluate(scored: DataFrame, score: str, prediction: str) -> dict[str, float]:
    """AUC and PR-AUC of `score`, and precision, recall, F1 of the positive ("full") class for `prediction`."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F

    def area(metric: str) -> float:
        evaluator = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol="label", metricName=metric)
        return round(evaluator.evaluate(scored), 6)

    predicted, actual = F.col(prediction) == 1, F.col("label") == 1
    counts = scored.agg(
        F.sum((predicted & actual).cast("long")).alias("tp"),
        F.sum((predicted & ~actual).cast("long")).alias("fp"),
        F.sum((~predicted & actual).cast("long")).alias("fn"),
    ).first()
    tp, fp, fn = (counts[name] or 0 for name in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"auc": area("areaUnderROC"), "pr_auc": area("areaUnderPR"), "precision": round(precision, 6),
            "recall": round(recall, 6), "f1": round(f1, 6)}


def precision_recall(scored: DataFrame) -> list[dict[str, float]]:
    """Precision, recall and F1 of "probability_full >= threshold" for every threshold of THRESHOLDS."""
    from pyspark.sql import functions as F

    actual = F.col("label") == 1
    sums = []
    for i, threshold in enumerate(THRESHOLDS):
        predicted = F.col("probability_full") >= threshold
        sums += [F.sum((predicted & actual).cast("long")).alias(f"tp{i}"),
                 F.sum(predicted.cast("long")).alias(f"p{i}")]
    row = scored.agg(F.sum(actual.cast("long")).alias("positives"), *sums).first()
    positives, curve = row["positives"] or 0, []
    for i, threshold in enumerate(THRESHOLDS):
        tp, predicted_count = row[f"tp{i}"] or 0, row[f"p{i}"] or 0
        curve.append({"threshold": threshold, "precision": round(tp / predicted_count, 6) if predicted_count else 1.0,
                      "recall": round(tp / positives, 6) if positives else 0.0,
                      "f1": round(2 * tp / (predicted_count + positives), 6) if positives else 0.0})
    return curve


def best_threshold(curve: list[dict[str, float]]) -> float:
    """The threshold of `curve` with the best F1 (the one nearest 0.5 among ties; 0.5 if no F1 is positive)."""
    best = max(curve, key=lambda point: (point["f1"], -abs(point["threshold"] - 0.5)))
    return best["threshold"] if best["f1"] > 0 else 0.5


def class_counts(frame: DataFrame) -> dict[str, int]:
    from pyspark.sql import functions as F

    row = frame.agg(F.count("*").alias("rows"), F.sum("label").alias("positives")).first()
    return {"rows": int(row["rows"]), "positives": int(row["positives"] or 0)}


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Trained:
    """A fitted model with its decision threshold and its scores on the held-out test period."""

    model: PipelineModel
    threshold: float
    test_from: datetime
    fit_until: datetime
    sizes: dict[str, dict[str, int]]
    metrics: dict[str, dict[str, float]]
    pr_curve: dict[str, list[dict[str, float]]]

    def probability(self, frame: DataFrame) -> DataFrame:
        from pyspark.ml.functions import vector_to_array

        return self.model.transform(frame).withColumn("probability_full", vector_to_array("probability")[1])


def fit_and_score(labelled: DataFrame, args: argparse.Namespace, features: list[str] = FEATURES) -> Trained:
    """Split `labelled` examples by time, fit on the first 80 % of the training period, choose the threshold on the
    last 20 % (validation), then score the model and the baseline on the test period (from `args.test_from`)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    span = labelled.agg(F.min("at_0").alias("first"), F.max("at_0").alias("last")).first()
    if span["first"] is None:
        raise JobError("no training examples: processed/velib_status is empty or has no 4 close snapshots")
    test_from = args.test_from or utc(span["first"] + 0.8 * (span["last"] - span["first"]))
    cut = int(test_from.timestamp())
    train, test = labelled.where(F.col("at_0") < cut), labelled.where(F.col("at_0") >= cut)
    sizes = {"train": class_counts(train), "test": class_counts(test)}
    for side, counts in sizes.items():
        if counts["positives"] in (0, counts["rows"]):
            raise JobError(f"the {side} set has {counts['rows']} examples of which {counts['positives']} full: "
                           "both classes are needed; load more history or move --test-from")

    # The last 20 % of the training period is held out to pick the decision threshold (best F1): with ~2 %
    # positives, 0.5 on an honest probability is far too strict. The test set never informs any choice.
    fit_cut = int(span["first"] + 0.8 * (cut - span["first"]))
    fit, validation = train.where(F.col("at_0") < fit_cut), train.where(F.col("at_0") >= fit_cut)
    forest = RandomForestClassifier(labelCol="label", featuresCol="features", numTrees=args.trees,
                                    maxDepth=args.max_depth, minInstancesPerNode=args.min_instances, seed=args.seed)
    if args.class_weight == "balanced":
        positive_rate = sizes["train"]["positives"] / sizes["train"]["rows"]
        weight = F.when(F.col("label") == 1, 0.5 / positive_rate).otherwise(0.5 / (1 - positive_rate))
        fit = fit.withColumn("weight", weight)
        forest = forest.setWeightCol("weight")
    model = Pipeline(stages=[VectorAssembler(inputCols=features, outputCol="features"), forest]).fit(fit)
    trained = Trained(model, 0.5, test_from, utc(fit_cut), sizes, {}, {})
    trained.pr_curve["validation"] = precision_recall(trained.probability(validation))
    trained.threshold = best_threshold(trained.pr_curve["validation"])
    scored = trained.probability(test).withColumn(
        "predicted_full", (F.col("probability_full") >= trained.threshold).cast("double")).cache()
    trained.pr_curve["test"] = precision_recall(scored)
    trained.metrics = {"model": evaluate(scored, "probability_full", "predicted_full"),
                       "baseline": evaluate(test, "baseline", "baseline")}
    scored.unpersist()
    return trained


def run(context: RunContext, args: argparse.Namespace) -> None:
    from pyspark.sql import functions as F

    lake = context.lake
    rows = examples(with_next_snapshots(STATUS.read(context.spark, lake)), context.settings.timezone,
                    args.max_gap_minutes, args.neighbour_radius).cache()
    labelled = rows.where(~F.col("is_next"))
    trained = fit_and_score(labelled, args)
    sizes, metrics = trained.sizes, trained.metrics
    context.log("examples", test_from=trained.test_from.isoformat(), **{
        f"{side}_{name}": value for side, counts in sizes.items() for name, value in counts.items()})
    context.log("evaluated", threshold=trained.threshold, **{
        f"{who}_{name}": value for who, values in metrics.items() for name, value in values.items()})

    trained_at = datetime.now(UTC)
    version = trained_at.strftime("%Y%m%dT%H%M%SZ")
    path = f"models/{MODEL}/{version}"
    trained.model.write().overwrite().save(lake.uri(path))
    context.log("model.saved", path=path)
    train_until = labelled.where(F.col("at_0") < int(trained.test_from.timestamp())).agg(
        F.max("at_0").alias("last")).first()["last"]

    database = data_db(context.settings)
    sink.upsert(database, MODEL_RUNS, [{
        "version": version, "trained_at": trained_at, "train_until": utc(train_until),
        "test_from": trained.test_from, "rows_train": sizes["train"]["rows"], "rows_test": sizes["test"]["rows"],
        "metrics": metrics, "pr_curve": trained.pr_curve["test"], "pr_curve_validation": trained.pr_curve["validation"],
        "path": path,
        "positives_train": sizes["train"]["positives"], "positives_test": sizes["test"]["positives"],
        "positive_rate_test": round(sizes["test"]["positives"] / sizes["test"]["rows"], 6),
        "classifier": "RandomForestClassifier", "features": FEATURES, "class_weight": args.class_weight,
        "threshold": trained.threshold, "fit_until": trained.fit_until,
        "params": {"trees": args.trees, "max_depth": args.max_depth, "min_instances": args.min_instances,
                   "seed": args.seed, "max_gap_minutes": args.max_gap_minutes,
                   "neighbour_radius_m": args.neighbour_radius},
    }], replace=True)
    upsert_predictions(context, trained.probability(rows.where(F.col("is_next"))), trained.threshold, version)
    context.count("rows_in", sizes["train"]["rows"] + sizes["test"]["rows"])
    rows.unpersist()


def upsert_predictions(context: RunContext, predicted: DataFrame, threshold: float, version: str) -> None:
    """One document per station: probability that its next snapshot has no free dock."""
    documents = (
        {"station_code": r["station_code"], "name": r["name"], "zone": r["zone"], "at": utc(r["at_0"]),
         "probability_full": round(float(r["probability_full"]), 6),
         "predicted_full": r["probability_full"] >= threshold, "model_version": version}
        for r in predicted.select("station_code", "name", "zone", "at_0", "probability_full").collect()
    )
    written = sink.upsert(data_db(context.settings), PREDICTIONS, documents)
    context.count("rows_out", written)
    context.log("mongo.upserted", collection=PREDICTIONS.name, documents=written, model_version=version)


JOB = Job("velib_train", build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
