"""Baseline for `bench_velib_daily`: the core of `velib_daily` as a plain Spark script, no job around it.

Read the landing CSV files with a schema → group by (station_code, local day) → write the station averages as
Parquet. No validation, deduplication, protocol or MongoDB: what Spark itself costs on this machine (JVM start
included) for the heart of the work. Master and time zone from the settings, as the job.

    python bench/baseline_velib_spark.py --input landing/velib --out /tmp/velib-station-daily
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cronlake.core import settings as settings_module  # noqa: E402
from cronlake.core.spark import get_session  # noqa: E402

SCHEMA = ("station_code STRING, name STRING, capacity INT, bikes INT, mechanical INT, ebike INT, docks_free INT, "
          "is_installed BOOLEAN, is_renting BOOLEAN, is_returning BOOLEAN, reported_at TIMESTAMP, "
          "observed_at TIMESTAMP, lat DOUBLE, "
          "lon DOUBLE, zone STRING, insee_code STRING")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baseline_velib_spark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="folder of landing CSV files")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the Parquet output into")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    settings = settings_module.load()
    spark = get_session(settings, "baseline-velib-spark")
    from pyspark.sql import functions as F

    rows = spark.read.option("header", True).schema(SCHEMA).csv(str(args.input))
    day = F.date_format(F.from_utc_timestamp("observed_at", settings.timezone), "yyyy-MM-dd").alias("day")
    (rows.groupBy("station_code", day)
     .agg(F.count("*").alias("samples"), F.avg("bikes").alias("avg_bikes"), F.avg("docks_free").alias("avg_docks"))
     .write.mode("overwrite").parquet(args.out.as_uri()))
    spark.stop()
    print(f"{args.input} -> {args.out}, {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
