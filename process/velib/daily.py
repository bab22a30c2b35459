"""Velib batch: landing CSV snapshots → deduplicated Parquet by local day → daily statistics in MongoDB.

Each run claims the files of `landing/velib/` (CSV, header = the normalised record fields in contract order),
reads them with an explicit schema, sends malformed rows to quarantine as rejects and files with another
header to quarantine whole, drops snapshots already known (same station_code and reported_at, within the
batch and in `processed/velib_status/` for the days the batch touches: a replayed file adds nothing), adds
`day` (the Europe/Paris date of reported_at) and appends to `processed/velib_status/` partitioned by day.
Then, for every touched day and every `--day`, it recomputes from the whole processed day the station, zone
and empty-station statistics (`process.velib.stats`) and upserts them by key: a rerun changes nothing.

Cron runs it hourly with `--day today` (so today's figures move even when no file landed) and nightly with
`--day yesterday` (the day closed with its late files).

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
from functools import reduce
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne

from cronlake.core.jobs import Job
from cronlake.core.lake import Lake, open_lake
from cronlake.core.mongo import data_db
from cronlake.core.protocol import Claim, run_batch
from cronlake.core.runner import RunContext
from cronlake.core.settings import Settings
from ingest.velib.records import FIELDS, INT_FIELDS
from process.velib.stats import EMPTY_COLUMNS, ENGINES, STATION_COLUMNS, ZONE_COLUMNS, daily_stats

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

SOURCE = "velib"
RUNNERS = ("auto", "spark", "duckdb")
DATASET = "velib_status"
CSV_SCHEMA = ("station_code STRING, name STRING, capacity INT, bikes INT, mechanical INT, ebike INT, docks_free INT, "
              "is_installed BOOLEAN, is_renting BOOLEAN, is_returning BOOLEAN, reported_at STRING, lat DOUBLE, "
              "lon DOUBLE, zone STRING, insee_code STRING, _corrupt_record STRING")
# The processed dataset as stored; `day` is the partition column, read back as a string (not inferred as a date).
STATUS_SCHEMA = ("station_code STRING, name STRING, capacity INT, bikes INT, mechanical INT, ebike INT, "
                 "docks_free INT, is_installed BOOLEAN, is_renting BOOLEAN, is_returning BOOLEAN, "
                 "reported_at TIMESTAMP, lat DOUBLE, lon DOUBLE, zone STRING, insee_code STRING, day STRING")
STATUS_COLUMNS = [column.split()[0] for column in STATUS_SCHEMA.split(", ")]
REQUIRED = ["station_code", "capacity", "bikes", "mechanical", "ebike", "docks_free", "is_installed", "is_renting",
            "is_returning"]
KEY = ["station_code", "reported_at"]
# Copies of one snapshot may disagree (the source re-serves a station with new counts but the same time): the
# greatest by this order wins, whatever the file order or partitioning, so reruns and replays pick the same one.
PREFERENCE = ["bikes", "docks_free", "mechanical", "ebike", "capacity", "is_installed", "is_renting", "is_returning",
              "name", "zone", "insee_code", "lat", "lon", "day"]
DECIMALS = 6
# collection → (its unique key, its columns). Upserts address documents by `_id` (see document_id).
COLLECTIONS = {
    "velib_station_daily": (["station_code", "day"], STATION_COLUMNS),
    "velib_zone_daily": (["zone", "day"], ZONE_COLUMNS),
    "velib_empty_stations": (["day", "station_code"], EMPTY_COLUMNS),
}


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


def read_status(spark: SparkSession, lake: Lake, days: list[str] | None = None) -> DataFrame:
    """The processed snapshots of `days` (all days if None; empty if the dataset does not exist yet)."""
    from pyspark.sql import functions as F

    root = f"processed/{DATASET}"
    folders = [root] if days is None else [f"{root}/day={day}" for day in days]
    folders = [folder for folder in folders
               if any(f.path.endswith(".parquet") for f in lake.list(folder, recursive=True))]
    if not folders:
        return spark.createDataFrame([], STATUS_SCHEMA)
    # Only the touched days' folders are listed and read (basePath keeps `day` from the folder names).
    status = (spark.read.schema(STATUS_SCHEMA).option("basePath", lake.uri(root))
              .parquet(*(lake.uri(folder) for folder in folders)))
    return status if days is None else status.where(F.col("day").isin(days))


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
        if columns != list(FIELDS):
            claim.quarantine(path, f"unexpected header {columns[:20]}; expected {list(FIELDS)}")


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
    raw = (
        raw.withColumn("source_file", F.element_at(F.split(F.input_file_name(), "/"), -1))
        .withColumn("reported_ts", F.try_to_timestamp("reported_at", F.lit("yyyy-MM-dd'T'HH:mm:ssX")))
    )
    problem = (
        F.when(F.col("_corrupt_record").isNotNull(), "unparseable row (a value of the wrong type or column count)")
        .when(F.col("reported_ts").isNull(), "reported_at is not an ISO-8601 UTC time")
        .when(reduce(operator.or_, [F.col(c).isNull() for c in REQUIRED]), f"one of {REQUIRED} is empty")
        .when(reduce(operator.or_, [F.col(c) < 0 for c in INT_FIELDS]), "negative count")
    )
    raw = raw.withColumn("problem", problem).cache()
    rows_in = raw.count()
    rejects = raw.where(F.col("problem").isNotNull()).select("source_file", "problem", "_corrupt_record",
                                                             *FIELDS).collect()
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in rejects:
        by_file.setdefault(r["source_file"], []).append(
            {"reason": r["problem"], "line": r["_corrupt_record"], **{k: r[k] for k in FIELDS}})
    keep_rejects(claim, by_file)
    valid = (
        raw.where(F.col("problem").isNull()).drop("reported_at").withColumnRenamed("reported_ts", "reported_at")
        .withColumn("day", local_day(F.col("reported_at"), context.settings.timezone))
        .select(*STATUS_COLUMNS)
    )
    days = sorted(r["day"] for r in valid.select("day").distinct().collect())
    known = read_status(spark, claim.lake, days).select(*KEY)
    unique = valid.groupBy(*KEY).agg(F.max(F.struct(*PREFERENCE)).alias("copy")).select(*KEY, "copy.*")
    fresh = unique.join(known, KEY, "left_anti").select(valid.columns).repartition("day").cache()
    rows_out = fresh.count()
    count_rows(context, rows_in, len(rejects), rows_out, days)
    if rows_out:
        claim.publish_parquet(fresh, DATASET, ["day"])
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


def document_value(value: object) -> object:
    """Averages rounded to 6 decimals: plenty for a dashboard, and stable through any store's float formatting."""
    return round(value, DECIMALS) if isinstance(value, float) else value


def document_id(row: Any, key: list[str]) -> str:
    """`<station_code or zone>|<day>`: an upsert by `_id` is a primary-key lookup on any server (on nx-27017 a
    filter on the key fields is a scan per document), the unique index on the key fields stays. The day goes
    last because nx-27017 does not match string ids that start with a date."""
    return "|".join([*(str(row[k]) for k in key if k != "day"), row["day"]])


def spark_statistics(context: RunContext, lake: Lake, days: list[str], engine: str) -> list[list[dict[str, Any]]]:
    """The three statistics tables of `days` with Spark (rows as dicts, in `COLLECTIONS` order)."""
    status = read_status(context.spark, lake, days).cache()
    tables = [[row.asDict() for row in table.collect()] for table in daily_stats(status, engine)]
    status.unpersist()
    return tables


def upsert_statistics(context: RunContext, days: list[str], tables: list[list[dict[str, Any]]], engine: str) -> None:
    """Upsert the statistics tables of `days` by their keys."""
    database = data_db(context.settings)
    for (collection, (key, columns)), table in zip(COLLECTIONS.items(), tables, strict=True):
        database[collection].create_index([(k, 1) for k in key], unique=True)
        operations = [
            UpdateOne({"_id": document_id(row, key)},
                      {"$set": {c: document_value(row[c]) for c in columns}}, upsert=True)
            for row in table
        ]
        if operations:
            database[collection].bulk_write(operations, ordered=False)
        context.count(f"upserted_{collection}", len(operations))
        context.log("mongo.upserted", collection=collection, documents=len(operations), days=days, engine=engine)


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
        claim = run_batch(context, lake, SOURCE, (DATASET,), process, args.max_files)
        if claim is None and requested:
            days = sorted(requested)
            upsert_statistics(context, days, statistics(days), engine)
    finally:
        close()


JOB = Job("velib_daily", build_parser, run, needs=("lake", "spark"), takes_day=True)


if __name__ == "__main__":
    sys.exit(JOB.main())
