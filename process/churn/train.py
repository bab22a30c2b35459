"""Churn model training (job `churn_train`): the customer CSV → a versioned Spark ML random forest with its metrics.

Input: the IBM Telco CSV in the lake, by default `landing/churn/telco_customer_churn.csv`, landed there with

    python -m cronlake.ops.run land_file --source churn ../shared/data/churn/telco_customer_churn.csv

The file is read as text cells and prepared like the stream prepares messages (`process/churn/features.py`).
Split by a hash of the customer id with the fixed `--seed`: 60 % fit, 20 % validation (picks the decision
threshold: best F1), 20 % test (the reported metrics; it informs no choice). Metrics: AUC, PR-AUC, and
precision, recall, F1 at the threshold, against the baseline "churns iff on a month-to-month contract".

Output: `models/churn_rf/<version>/pipeline` (the fitted PipelineModel) and `manifest.json` beside it (version =
UTC time of the run; training data version = sha256 of the input file; feature schema; drivers table), and one
document in `churn_model_runs`. Training never changes what the stream scores with unless `--promote` is given;
otherwise promote later with `churn_model promote <version>`.

    python -m cronlake.ops.run churn_train [--input LAKE_PATH] [--trees 60] [--max-depth 8] [--seed 42] [--promote]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cronlake.contracts.churn import CATEGORICAL, CUSTOMER, KEY, MODEL_RUNS, NUMERIC, TRAINING_INPUT, model_path
from cronlake.core.jobs import Job
from cronlake.core.runner import JobError, RunContext, utcnow
from cronlake.core.sink import database, upsert
from process.churn import registry
from process.churn.features import TEXT_SCHEMA, build_pipeline, driver_table, prepare, score

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)]
BASELINE = "Contract == Month-to-month"
SPLITS = ("fit", "validation", "test")
SPLIT_RULE = "xxhash64(customerID, seed) mod 10: 0-5 fit, 6-7 validation, 8-9 test"


def with_split(prepared: DataFrame, seed: int) -> DataFrame:
    """`split` by a hash of the customer id and the seed: the same customers in the same split on every run."""
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64(F.col(KEY), F.lit(seed)), F.lit(10))
    return prepared.withColumn("split", F.when(bucket < 6, "fit").when(bucket < 8, "validation").otherwise("test"))


def baseline(row: Mapping[str, Any]) -> float:
    return 1.0 if row["Contract"] == "Month-to-month" else 0.0


def pairs(rows: Iterable[Mapping[str, Any]], scorer: Callable[[Mapping[str, Any]], float] | None = None
          ) -> list[tuple[float, float]]:
    """(label, score) of each row: the model's probability, or `scorer`'s score."""
    return [(row["label"], scorer(row) if scorer else row["churn_probability"]) for row in rows]


def auc(pairs: Sequence[tuple[float, float]]) -> float:
    """Area under the ROC curve of (label, score) pairs: the chance a positive outscores a negative (ties: half)."""
    ordered = sorted(pairs, key=lambda p: p[1])
    rank_sum, index = 0.0, 0
    while index < len(ordered):
        end = index
        while end < len(ordered) and ordered[end][1] == ordered[index][1]:
            end += 1
        mid_rank = (index + end + 1) / 2
        rank_sum += mid_rank * sum(1 for label, _ in ordered[index:end] if label == 1)
        index = end
    positives = sum(1 for label, _ in pairs if label == 1)
    negatives = len(pairs) - positives
    if not positives or not negatives:
        return 0.0
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def pr_auc(pairs: Sequence[tuple[float, float]]) -> float:
    """Average precision: precision at each positive, by decreasing score (tied scores taken together)."""
    positives = sum(1 for label, _ in pairs if label == 1)
    if not positives:
        return 0.0
    ordered = sorted(pairs, key=lambda p: -p[1])
    area, hits, seen, index = 0.0, 0, 0, 0
    while index < len(ordered):
        end = index
        while end < len(ordered) and ordered[end][1] == ordered[index][1]:
            end += 1
        group_hits = sum(1 for label, _ in ordered[index:end] if label == 1)
        hits, seen = hits + group_hits, seen + end - index
        area += group_hits / positives * hits / seen
        index = end
    return area


def at_threshold(pairs: Sequence[tuple[float, float]], threshold: float) -> dict[str, float]:
    tp = sum(1 for label, s in pairs if s >= threshold and label == 1)
    fp = sum(1 for label, s in pairs if s >= threshold and label == 0)
    fn = sum(1 for label, s in pairs if s < threshold and label == 1)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def metrics(pairs: Sequence[tuple[float, float]], threshold: float) -> dict[str, float]:
    return {"auc": round(auc(pairs), 4), "pr_auc": round(pr_auc(pairs), 4), "threshold": threshold,
            **at_threshold(pairs, threshold)}


def best_threshold(pairs: Sequence[tuple[float, float]]) -> float:
    return max(THRESHOLDS, key=lambda t: (at_threshold(pairs, t)["f1"], -abs(t - 0.5)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=JOB.name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=TRAINING_INPUT, help=f"lake path of the CSV (default {TRAINING_INPUT})")
    parser.add_argument("--trees", type=int, default=60, help="number of trees (default 60)")
    parser.add_argument("--max-depth", type=int, default=8, help="maximum depth of each tree (default 8)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and of the forest (default 42)")
    parser.add_argument("--promote", action="store_true", help="promote the new version once it is saved")
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    spark, lake = context.spark, context.lake
    if not lake.exists(args.input):
        raise JobError(f"no training file at {lake.uri(args.input)}: land it with "
                       "`python -m cronlake.ops.run land_file --source churn <csv>`")
    data_sha256 = hashlib.sha256(lake.read_bytes(args.input)).hexdigest()
    cells = spark.read.csv(lake.uri(args.input), header=True, schema=TEXT_SCHEMA, enforceSchema=False)
    prepared = with_split(prepare(cells).where("label IS NOT NULL"), args.seed).cache()
    model = build_pipeline(args.trees, args.max_depth, args.seed).fit(prepared.where("split = 'fit'"))
    scored = [row.asDict() for row in score(model, prepared).collect()]  # 7,043 rows: the rest is plain Python
    by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for row in scored:
        by_split[row["split"]].append(row)
    threshold = best_threshold(pairs(by_split["validation"]))
    evaluation = {"model": metrics(pairs(by_split["test"]), threshold),
                  "baseline": {"rule": BASELINE, **metrics(pairs(by_split["test"], baseline), 1.0)}}
    rows = {name: len(part) for name, part in by_split.items()}
    context.log("evaluated", rows=rows, **{f"{who}_{name}": value for who, values in evaluation.items()
                                           for name, value in values.items() if name != "rule"})

    trained_at = utcnow()
    version = trained_at.strftime("%Y%m%dT%H%M%SZ")
    if lake.exists(model_path(version)):
        raise JobError(f"model version {version} already exists; run again in a second")
    model.write().save(lake.uri(registry.pipeline_path(version)))
    manifest = {
        "version": version, "trained_at": trained_at.isoformat(), "path": model_path(version), "input": args.input,
        "data_sha256": data_sha256, "rows": rows, "seed": args.seed, "threshold": threshold, "metrics": evaluation,
        "features": {"categorical": list(CATEGORICAL), "numeric": list(NUMERIC),
                     "input_schema": CUSTOMER.spark_schema(), "prepared_schema": prepared.schema.simpleString()},
        "params": {"classifier": "RandomForestClassifier", "trees": args.trees, "max_depth": args.max_depth,
                   "split": SPLIT_RULE},
        "drivers": driver_table(by_split["fit"]),
    }
    lake.put_text(registry.manifest_path(version), json.dumps(manifest, indent=1) + "\n")
    context.log("model.saved", path=model_path(version), threshold=threshold)
    upsert(database(context.settings, MODEL_RUNS), MODEL_RUNS, [{
        **{name: manifest[name] for name in ("version", "path", "data_sha256", "rows", "seed", "threshold",
                                             "metrics", "features", "params")},
        "trained_at": trained_at, "promoted": False}])
    context.count("rows_in", sum(rows.values()))
    prepared.unpersist()
    if args.promote:
        registry.record_promotion(context, registry.promote(lake, version))
    print(f"trained {version}: AUC {evaluation['model']['auc']} (baseline {evaluation['baseline']['auc']}), "
          f"F1 {evaluation['model']['f1']} at {threshold}{', promoted' if args.promote else ''}")


JOB = Job("churn_train", build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
