"""Velib batch: landing CSV snapshots → deduplicated Parquet by local day → daily statistics in MongoDB.

Each run claims the files of `landing/velib/` (CSV, header = the normalised record fields in contract order),
reads them with an explicit schema, sends malformed rows to quarantine as rejects and files with another
header to quarantine whole, drops snapshots already known (the same identity, `velib.IDENTITY`: station, reported_at,
counts and flags; within the batch the copy observed first is kept; against `processed/velib_status/` for the days
the batch touches: a replayed file adds nothing), adds `day` (the Europe/Paris date of observed_at, when the
snapshot was seen) and appends to `processed/velib_status/` partitioned by day.
Then, for every touched day and every `--day`, it recomputes from the whole processed day the station and zone
statistics (`process.velib.stats`) and upserts them by key through `cronlake.core.sink`: a rerun changes nothing.
The record, the dataset and the collections are declared in `cronlake.contracts.velib`.

Cron runs it hourly with `--day {today}` (crontab/schedules.yaml expands it to the date in CRONLAKE_TIMEZONE; so
today's figures move even when no file landed) and nightly with `--day {yesterday}` (the day closed with its late
files). By hand, `--day today` and `--day yesterday` mean the same.

Two runners, same outputs (a test proves it on real slices): Spark, and DuckDB (`process.velib.embedded`) on one
node. `--runner auto` (the default) takes DuckDB when the Spark master is local and the lake on `file://`, where
it is ~10× faster than Spark for the same day (see README, Benchmarks), and Spark otherwise (the cluster).
Both read only the folders of the touched days, so a run costs the same whatever the lake holds.

    python -m cronlake.ops.run velib_daily [--day today|yesterday|YYYY-MM-DD ...] [--runner spark] [--engine sql]
"""

from __future__ import annotations

import argparse
import csv
import operator
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import reduce
from typing import TYPE_CHECKING, Any

from cronlake.contracts.velib import IDENTITY, STATION, STATION_DAILY, STATUS, ZONE_DAILY
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.lake import Lake, open_lake
from cronlake.core.mongo import data_db
from cronlake.core.protocol import Claim, reject, run_batch
from cronlake.core.runner import RunContext
from cronlake.core.settings import Settings
from process.velib.stats import ENGINES, daily_stats

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

SOURCE = "velib"
RUNNERS = ("auto", "spark", "duckdb")
CSV_SCHEMA = STATION.spark_schema(text_timestamps=True, extra=("_corrupt_record STRING",))
# Spark reads an empty CSV cell as null, so only the fields that may not be empty text are required here
# (the times have their own check).
REQUIRED = [f.name for f in STATION.fields if f.non_empty or f.kind in ("int", "bool")]
TIMES = STATION.of_kind("timestamp")  # reported_at, observed_at: ISO-8601 UTC text, parsed with one format
KEY = list(IDENTITY)
# Copies of one snapshot (same identity) differ at most in when they were seen and in the descriptive fields: the
# copy observed first wins, then the greatest by the others (nulls last), whatever the file order or
# partitioning, so reruns and replays pick the same one. Both runners sort by exactly this.
COPY_ORDER = [("observed_at", "ASC"), ("name", "DESC"), ("zone", "DESC"), ("insee_code", "DESC"), ("lat", "DESC"),
              ("lon", "DESC")]
DECIMALS = 6
TABLES = (STATION_DAILY, ZONE_DAILY)  # the collections of the DailyStats tables, in order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velib_daily", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", action="append", default=[], metavar="DAY", type=day_argument,
                        help="also recompute this local day: YYYY-MM-DD, today or yesterday (repeatable)")
    parser.add_argument("--runner", choices=RUNNERS, default="auto",
                        help="spark, duckdb (one node, file:// lake) or auto: duckdb on a local master and file:// "
                             "lake, else spark (same outputs)")
    parser.add_argument("--engine", choices=ENGINES, default="dataframe",
                        help="with the Spark runner: the statistics with the DataFrame API or Spark SQL (same results)")
    parser.add_argument("--partitions", type=int, default=None, metavar="N",
                        help="repartition the input into N partitions (default: as Spark reads it)")
    parser.add_argument("--max-files", type=int, default=None, help="claim at most N landing files")
    return parser


def day_argument(value: str) -> str:
    """Validate a --day value: today, yesterday or an ISO date."""
    if value not in ("today", "yesterday"):
        try:
            date.fromisoformat(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, today or yesterday, got {value!r}") from exc
    return value


def resolve_day(value: str, settings: Settings) -> str:
    """A --day value as YYYY-MM-DD, 'today' and 'yesterday' in the configured time zone."""
    today = datetime.now(settings.tz).date()
    named = {"today": today, "yesterday": today - timedelta(days=1)}
    return (named.get(value) or date.fromisoformat(value)).isoformat()


def local_day(timestamp: Column, timezone: str) -> Column:
    """The local date (YYYY-MM-DD) of a UTC instant; needs the session time zone UTC, as get_session sets it."""
    from pyspark.sql import functions as F

    return F.date_format(F.from_utc_timestamp(timestamp, timezone), "yyyy-MM-dd")


def first_line(spark: SparkSession, uri: str) -> str:
    """The first line of a lake file, read through Hadoop's FileSystem (no Spark job, whatever the file size)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    stream = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(path)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return reader.readLine() or ""
    finally:
        stream.close()


def check_headers(claim: Claim, first_line: Callable[[str], str]) -> None:
    """Quarantine every input whose header (`first_line(uri)`) is not the record fields in contract order."""
    for path in claim.inputs:
        columns = next(csv.reader([first_line(claim.lake.uri(path))]), [])
        if columns != STATION.csv_header():
            claim.quarantine(path, f"unexpected header {columns[:20]}; expected {STATION.csv_header()}")


def first_observed_copies(snapshots: DataFrame) -> DataFrame:
    """One row per snapshot identity (`KEY`): the copy observed first, `COPY_ORDER` breaking ties."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first_copy = Window.partitionBy(*KEY).orderBy(*[
        F.col(c).asc_nulls_last() if order == "ASC" else F.col(c).desc_nulls_last() for c, order in COPY_ORDER])
    return snapshots.withColumn("copy", F.row_number().over(first_copy)).where("copy = 1").drop("copy")


def ingest(context: RunContext, claim: Claim, partitions: int | None) -> list[str]:
    """Validate, deduplicate and publish the claimed files; return the local days they touch."""
    from pyspark.sql import functions as F

    spark = context.spark
    check_headers(claim, lambda uri: first_line(spark, uri))
    if not claim.accepted:
        return []
    raw = (
        spark.read.option("header", True).option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record").schema(CSV_SCHEMA).csv(claim.uris())
    )
    if partitions:
        raw = raw.repartition(partitions)
    # Asking a repartitioned frame for its RDD would run the shuffle once more just to count: it has N parts.
    context.log("input", files=len(claim.accepted), partitions=partitions or raw.rdd.getNumPartitions())
    raw = raw.withColumn("source_file", F.element_at(F.split(F.input_file_name(), "/"), -1))
    for name in TIMES:
        raw = raw.withColumn(f"{name}_ts", F.try_to_timestamp(name, F.lit("yyyy-MM-dd'T'HH:mm:ssX")))
    problem = F.when(F.col("_corrupt_record").isNotNull(),
                     "unparseable row (a value of the wrong type or column count)")
    for name in TIMES:
        problem = problem.when(F.col(f"{name}_ts").isNull(), f"{name} is not an ISO-8601 UTC time")
    problem = (
        problem.when(reduce(operator.or_, [F.col(c).isNull() for c in REQUIRED]), f"one of {REQUIRED} is empty")
        .when(reduce(operator.or_, [F.col(c) < 0 for c in STATION.of_kind("int")]), "negative count")
    )
    raw = raw.withColumn("problem", problem).cache()
    rows_in = raw.count()
    rejects = raw.where(F.col("problem").isNotNull()).select("source_file", "problem", "_corrupt_record",
                                                             *STATION.names).collect()
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in rejects:
        by_file.setdefault(r["source_file"], []).append(
            reject(r["problem"], {k: r[k] for k in STATION.names}, file=r["source_file"], line=r["_corrupt_record"]))
    keep_rejects(claim, by_file)
    valid = raw.where(F.col("problem").isNull())
    for name in TIMES:
        valid = valid.drop(name).withColumnRenamed(f"{name}_ts", name)
    valid = (
        valid.withColumn("day", local_day(F.col("observed_at"), context.settings.timezone))
        .select(*STATUS.column_names)
    )
    days = sorted(r["day"] for r in valid.select("day").distinct().collect())
    known = STATUS.read(spark, claim.lake, {"day": days}).select(*KEY)
    fresh = first_observed_copies(valid).join(known, KEY, "left_anti").select(valid.columns).repartition("day").cache()
    rows_out = fresh.count()
    count_rows(context, rows_in, len(rejects), rows_out, days)
    if rows_out:
        claim.publish_parquet(fresh, STATUS.name, list(STATUS.partition_by))
    fresh.unpersist()
    raw.unpersist()
    return days


def keep_rejects(claim: Claim, by_file: dict[str, list[dict[str, Any]]]) -> None:
    """Write the malformed rows of each accepted input (by file name) beside the quarantined files."""
    for path in claim.accepted:
        claim.reject_records(path, by_file.get(path.rsplit("/", 1)[-1], []))


def count_rows(context: RunContext, rows_in: int, rejected: int, rows_out: int, days: list[str]) -> None:
    context.count("rows_in", rows_in)
    context.count("rows_out", rows_out)
    context.count("duplicates_dropped", rows_in - rejected - rows_out)
    context.log("process.parsed", rows=rows_in, rejected=rejected, new=rows_out, days=days)


def document_value(row: Any, column: str) -> object:
    """A statistic as stored: 6 decimals, plenty for a dashboard and stable through any store's float formatting.

    An average of counts (`avg_*`, over `samples` integers) is the exact mean rounded half-even: its integer sum
    is recovered as avg × samples, so the rounding is that of the true mean, not of its binary float (on which
    `round(x, 6)` sends an exact tie such as 3/640 = 0.0046875 down to 0.004687). Other floats: `round(x, 6)`.
    """
    value = row[column]
    if not isinstance(value, float):
        return value
    if column.startswith("avg_") and row["samples"]:
        mean = Decimal(round(value * row["samples"])) / row["samples"]
        return float(mean.quantize(Decimal(1).scaleb(-DECIMALS), ROUND_HALF_EVEN))
    return round(value, DECIMALS)


def spark_statistics(context: RunContext, lake: Lake, days: list[str], engine: str) -> list[list[dict[str, Any]]]:
    """The three statistics tables of `days` with Spark (rows as dicts, in `TABLES` order)."""
    status = STATUS.read(context.spark, lake, {"day": days}).cache()
    tables = [[row.asDict() for row in table.collect()] for table in daily_stats(status, engine)]
    status.unpersist()
    return tables


def upsert_statistics(context: RunContext, days: list[str], tables: list[list[dict[str, Any]]], engine: str) -> None:
    """Upsert the statistics tables of `days` by their keys."""
    database = data_db(context.settings)
    for collection, table in zip(TABLES, tables, strict=True):
        documents = ({c: document_value(row, c) for c in collection.fields} for row in table)
        written = sink.upsert(database, collection, documents)
        context.count(f"upserted_{collection.name}", written)
        context.log("mongo.upserted", collection=collection.name, documents=written, days=days, engine=engine)


def chosen_runner(runner: str, settings: Settings) -> str:
    """`auto` → duckdb on a local Spark master with a file:// lake (one machine), spark otherwise."""
    if runner != "auto":
        return runner
    return "duckdb" if settings.spark_master.startswith("local") and settings.lake_root.startswith("file:") \
        else "spark"


def run(context: RunContext, args: argparse.Namespace) -> None:
    requested = {resolve_day(value, context.settings) for value in args.day}
    runner = chosen_runner(args.runner, context.settings)
    context.log("runner", runner=runner)
    if runner == "duckdb":
        from process.velib import embedded

        lake = open_lake(context.settings)
        engine = "duckdb"
        duck = embedded.EmbeddedRun(context, lake)
        ingest_claim, statistics, close = duck.ingest, duck.statistics, duck.close
    else:
        lake = context.lake  # through Spark's Hadoop FileSystem: the protocol moves files on file:// and hdfs://
        engine = args.engine

        def ingest_claim(claim: Claim) -> list[str]:
            return ingest(context, claim, args.partitions)

        def statistics(days: list[str]) -> list[list[dict[str, Any]]]:
            return spark_statistics(context, lake, days, engine)

        def close() -> None:
            """The session belongs to the run context, which stops it."""

    def process(claim: Claim) -> None:
        days = sorted(requested | set(ingest_claim(claim)))
        if days:
            upsert_statistics(context, days, statistics(days), engine)

    try:
        claim = run_batch(context, lake, SOURCE, (STATUS.name,), process, args.max_files)
        if claim is None and requested:
            days = sorted(requested)
            upsert_statistics(context, days, statistics(days), engine)
    finally:
        close()


JOB = Job("velib_daily", build_parser, run, needs=("lake", "spark"), takes_day=True)


if __name__ == "__main__":
    sys.exit(JOB.main())
