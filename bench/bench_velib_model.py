"""Benchmark the "will it be full" model against the "full at t-1" baseline on the whole 21-day history.

Reads the shared open-data history, normalises it with the replay reader (stations the index cannot place are
skipped, as velib_daily quarantines them), keeps one copy per snapshot identity with velib_daily's rule (the copy
observed first), builds the examples of `velib_train` and runs its time split (train 80 % / test 20 %, threshold
chosen on the last 20 % of the training period). It fits the lags and the station's past full rates only (the model
before its state, neighbourhood and seasonal features), then all features once per `--seeds` (the forest's seed moves
the margin), and prints one table: AUC, PR-AUC, precision, recall and F1 of each against the baseline on the same
test rows, with the margins.

    python bench/bench_velib_model.py [--history PATH] [--trees 40] [--max-depth 12] [--min-instances 20] [--seeds 7,11]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cronlake.contracts.velib import STATION  # noqa: E402
from cronlake.core import settings as settings_module  # noqa: E402
from cronlake.core.spark import get_session  # noqa: E402
from ingest.velib.records import RecordError, StationIndex, normalise_history_row  # noqa: E402
from ingest.velib.replay import default_reference_files, open_text  # noqa: E402
from process.velib import model as velib_model  # noqa: E402
from process.velib.daily import CSV_SCHEMA, first_observed_copies  # noqa: E402

HISTORY = REPO.parent / "shared" / "data" / "velib" / "history_2022-05-12_to_2022-06-01.csv.gz"
METRICS = ("auc", "pr_auc", "precision", "recall", "f1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=Path, default=HISTORY, help="the open-data CSV history (gzip)")
    parser.add_argument("--trees", type=int, default=40, help="number of trees (velib_train's default)")
    parser.add_argument("--max-depth", type=int, default=12, help="maximum tree depth (velib_train's default)")
    parser.add_argument("--min-instances", type=int, default=20, help="fewest examples a leaf (velib_train's default)")
    parser.add_argument("--seeds", type=lambda text: [int(seed) for seed in text.split(",")], default=[7],
                        help="comma-separated forest seeds for the all-features model (default 7, velib_train's)")
    return parser


def normalise_history(history: Path, target: Path) -> tuple[int, int]:
    """Write the history as normalised record CSV; return (rows written, rows skipped)."""
    gbfs, exports = default_reference_files(history)
    index = StationIndex.from_files(gbfs, exports)
    written = skipped = 0
    with open_text(history) as source, open(target, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        for row in csv.DictReader(source):
            try:
                record = normalise_history_row(row, index)
            except RecordError:
                skipped += 1
                continue
            writer.writerow(["" if record[f] is None else record[f] for f in STATION.names])
            written += 1
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def train_args(seed: int) -> argparse.Namespace:
        return argparse.Namespace(test_from=None, class_weight="none", trees=args.trees, max_depth=args.max_depth,
                                  min_instances=args.min_instances, seed=seed)

    spark = get_session(settings_module.load(), "bench_velib_model")
    from pyspark.sql import functions as F

    with tempfile.TemporaryDirectory() as folder:
        records = Path(folder) / "records.csv"
        started = time.monotonic()
        written, skipped = normalise_history(args.history, records)
        raw = spark.read.schema(CSV_SCHEMA).csv(str(records))
        status = first_observed_copies(raw.withColumn("reported_at", F.to_timestamp("reported_at"))
                                       .withColumn("observed_at", F.to_timestamp("observed_at")))
        labelled = velib_model.examples(status, "Europe/Paris", 120.0).where(F.col("docks_free").isNotNull()).cache()
        print(f"history: {written} records ({skipped} skipped), {labelled.count()} examples, "
              f"prepared in {time.monotonic() - started:.0f} s", flush=True)
        results = {}
        station_only = [*velib_model.LAG_FEATURES, *velib_model.HISTORY_FEATURES]
        fits = [("lags + station rates", station_only, args.seeds[0]),
                *((f"all features, seed {seed}", velib_model.FEATURES, seed) for seed in args.seeds)]
        for name, features, seed in fits:
            started = time.monotonic()
            trained = velib_model.fit_and_score(labelled, train_args(seed), features)
            results[name] = (trained, time.monotonic() - started)
    sizes = trained.sizes
    print(f"\ntest from {trained.test_from.isoformat()}: {sizes['test']['rows']} examples, "
          f"{sizes['test']['positives']} full ({sizes['test']['positives'] / sizes['test']['rows']:.2%}); "
          f"train {sizes['train']['rows']}")
    print(f"\n{'scorer':<36}{'threshold':>10}{'fit s':>8}" + "".join(f"{m:>11}" for m in METRICS))
    baseline = trained.metrics["baseline"]
    print(f"{'baseline full at t-1':<36}{'-':>10}{'-':>8}" + "".join(f"{baseline[m]:>11.3f}" for m in METRICS))
    for name, (result, seconds) in results.items():
        scores = result.metrics["model"]
        print(f"{'model, ' + name:<36}{result.threshold:>10.2f}{seconds:>8.0f}"
              + "".join(f"{scores[m]:>11.3f}" for m in METRICS))
        print(f"{'  margin':<36}{'':>10}{'':>8}" + "".join(f"{scores[m] - baseline[m]:>+11.3f}" for m in METRICS))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
