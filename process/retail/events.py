"""E-commerce events (REES46 CSV): landing → the versioned `retail_events` Delta dataset by event day.

A file whose header is not the REES46 header is quarantined. Rows that do not parse (bad time, unknown event
type, missing ids or price) and rows priced <= 0 are kept in quarantine as rejects with their reason and counted
(`rejected_malformed`, `rejected_price`). Exact duplicates (all nine fields equal) collapse into one row
(`duplicates_dropped`); rows already in the dataset (same `event_key`) are not appended again, so a file landed
twice adds nothing.

    python -m cronlake.ops.run retail_events [--max-files N]
"""

from __future__ import annotations

import argparse
import sys

from cronlake.contracts.retail_events import EVENT, EVENT_TYPES, EVENTS
from cronlake.core.jobs import Job
from cronlake.core.protocol import Claim, reject, run_batch
from cronlake.core.runner import RunContext

SOURCE = "retail_events"
HEADER = EVENT.csv_header()
SCHEMA = EVENT.spark_schema(extra=("_corrupt_record STRING",))
TIME_FORMAT = "yyyy-MM-dd HH:mm:ss 'UTC'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail_events", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-files", type=int, default=None, help="claim at most N landing files")
    return parser


def process(context: RunContext, claim: Claim) -> None:
    """Clean the claimed files and publish the new events as the next version of `retail_events`."""
    from pyspark.sql import functions as F

    spark = context.spark
    for path in claim.inputs:
        columns = spark.read.option("header", True).csv(claim.lake.uri(path)).columns
        if columns != HEADER:
            claim.quarantine(path, f"unexpected header {columns[:10]}; expected {HEADER}")
    if not claim.accepted:
        return

    raw = (
        spark.read.option("header", True).option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record").schema(SCHEMA).csv(claim.uris())
        .withColumn("source_file", F.element_at(F.split(F.input_file_name(), "/"), -1))
        .withColumn("parsed_time", F.try_to_timestamp("event_time", F.lit(TIME_FORMAT)))
    )
    malformed = (F.col("_corrupt_record").isNotNull() | F.col("parsed_time").isNull()
                 | ~F.coalesce(F.col("event_type").isin(*EVENT_TYPES), F.lit(False))
                 | F.col("product_id").isNull() | F.col("user_id").isNull() | F.col("user_session").isNull()
                 | F.col("price").isNull())
    reason = F.when(malformed, F.lit("unparseable row")).when(F.col("price") <= 0, F.lit("price <= 0"))
    raw = raw.withColumn("reject_reason", reason).cache()
    rows_in = raw.count()
    rejects = raw.where(F.col("reject_reason").isNotNull()).collect()
    for path in claim.accepted:
        name = path.rsplit("/", 1)[-1]
        claim.reject_records(path, [
            reject(r["reject_reason"], {c: r[c] for c in HEADER}, file=name, line=r["_corrupt_record"])
            for r in rejects if r["source_file"] == name
        ])
    rejected_price = sum(r["reject_reason"] == "price <= 0" for r in rejects)

    fields = [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in HEADER]
    clean = (
        raw.where(F.col("reject_reason").isNull())
        .withColumn("event_key", F.sha2(F.concat_ws("\u0001", *fields), 256))
        .withColumn("event_time", F.col("parsed_time"))
        .withColumn("event_day", F.date_format("parsed_time", "yyyy-MM-dd"))
        .select(*EVENTS.column_names)
    ).cache()
    valid = clean.count()
    distinct = clean.dropDuplicates(["event_key"])
    days = sorted(r["event_day"] for r in distinct.select("event_day").distinct().collect())
    known = EVENTS.read(spark, context.lake, where={"event_day": days}).select(*EVENTS.key)
    new = distinct.join(known, list(EVENTS.key), "left_anti").cache()
    new_rows = new.count()
    context.count("rows_in", rows_in)
    context.count("rejected_malformed", len(rejects) - rejected_price)
    context.count("rejected_price", rejected_price)
    context.count("duplicates_dropped", valid - distinct.count())
    context.count("rows_out", new_rows)
    context.log("process.parsed", rows=rows_in, rejected=len(rejects), rejected_price=rejected_price,
                new=new_rows, days=len(days))
    claim.publish_version(new, EVENTS)
    for frame in (new, clean, raw):
        frame.unpersist()


def run(context: RunContext, args: argparse.Namespace) -> None:
    run_batch(context, context.lake, SOURCE, (EVENTS.name,), lambda claim: process(context, claim), args.max_files)


JOB = Job("retail_events", build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
