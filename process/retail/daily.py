"""Online-retail transactions: landing CSV → cleaned, versioned Delta dataset by invoice day → daily totals per
country (and per source/region in `retail_sales_daily`) in MongoDB.

The smoke pipeline of the kit (claim → process → commit → archive on real data). A file whose header is not
the UCI Online Retail header is quarantined; rows that do not parse, or carry a negative unit price, are kept in
quarantine as rejects with their reason. Invoice times are UK local time: stored in UTC with the zone's name.
Cancellations (InvoiceNo `C…`) and returns (negative quantity) keep their negative amount, so sums are net
revenue; zero-price lines are kept and flagged `is_free`.
Every row gets a key (source file, its fields, its occurrence in that file): rows already in the dataset are not
appended again, so a file landed twice adds nothing. Daily totals are recomputed from the whole Parquet dataset
for the days this run touched, then upserted by (day, country), so reruns and late files never double count.

    python -m cronlake.ops.run retail_daily [--max-files N] [--day YYYY-MM-DD ...]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from cronlake.contracts.retail import DAILY, SALES_DAILY, TRANSACTION, TRANSACTIONS
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.mongo import data_db
from cronlake.core.protocol import Claim, reject, run_batch
from cronlake.core.runner import RunContext

SOURCE = "retail"
TIME_ZONE = "Europe/London"
HEADER = TRANSACTION.csv_header()
SCHEMA = TRANSACTION.spark_schema(extra=("_corrupt_record STRING",))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail_daily", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-files", type=int, default=None, help="claim at most N landing files")
    parser.add_argument("--day", action="append", default=[], type=parse_day, metavar="YYYY-MM-DD",
                        help="also recompute this invoice day's totals from the processed data (repeatable)")
    return parser


def parse_day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def process(context: RunContext, claim: Claim) -> list[str]:
    """Clean and publish the claimed files; return the invoice days they touched."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = context.spark
    for path in claim.inputs:
        columns = spark.read.option("header", True).csv(claim.lake.uri(path)).columns
        if columns != HEADER:
            claim.quarantine(path, f"unexpected header {columns[:10]}; expected {HEADER}")
    if not claim.accepted:
        return []

    raw = (
        spark.read.option("header", True).option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record").schema(SCHEMA)
        .csv(claim.uris()).withColumn("source_file", F.element_at(F.split(F.input_file_name(), "/"), -1))
        .withColumn("local_time", F.try_to_timestamp("InvoiceDate", F.lit("M/d/yy H:mm")))
        .withColumn("reject_reason", F.when(
            F.col("_corrupt_record").isNotNull() | F.col("local_time").isNull() | F.col("Quantity").isNull(),
            F.lit("unparseable row")).when(F.col("UnitPrice") < 0, F.lit("negative unit price")))
        .cache()
    )
    bad = F.col("reject_reason").isNotNull()
    rows_in = raw.count()
    rejects = raw.where(bad).select("source_file", "reject_reason", "_corrupt_record", "InvoiceNo", "InvoiceDate",
                                    "UnitPrice").collect()
    for path in claim.accepted:
        name = path.rsplit("/", 1)[-1]
        claim.reject_records(path, [
            reject(r["reject_reason"], {"InvoiceNo": r["InvoiceNo"], "InvoiceDate": r["InvoiceDate"],
                                        "UnitPrice": r["UnitPrice"]}, file=name, line=r["_corrupt_record"])
            for r in rejects if r["source_file"] == name
        ])
    context.count("rows_rejected", len(rejects))

    fields = [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in HEADER]
    same_row = Window.partitionBy("source_file", *HEADER).orderBy(F.monotonically_increasing_id())
    occurrence = F.row_number().over(same_row)
    clean = (
        raw.where(~bad)
        .withColumn("row_key", F.sha2(F.concat_ws("\u0001", "source_file", *fields, occurrence.cast("string")), 256))
        .select(
            F.col("InvoiceNo").alias("invoice_no"), F.col("StockCode").alias("stock_code"),
            F.col("Description").alias("description"), F.col("Quantity").alias("quantity"),
            F.to_utc_timestamp("local_time", TIME_ZONE).alias("invoice_time"), F.lit(TIME_ZONE).alias("time_zone"),
            F.col("UnitPrice").alias("unit_price"), F.col("CustomerID").alias("customer_id"),
            F.col("Country").alias("country"), (F.col("Quantity") * F.col("UnitPrice")).alias("amount"),
            F.col("InvoiceNo").startswith("C").alias("is_cancellation"), (F.col("Quantity") < 0).alias("is_return"),
            (F.col("UnitPrice") == 0).alias("is_free"), "source_file", "row_key",
            F.date_format("local_time", "yyyy-MM-dd").alias("invoice_day"),
        )
    )
    days = sorted(r["invoice_day"] for r in clean.select("invoice_day").distinct().collect())
    known = TRANSACTIONS.read(spark, context.lake, {"invoice_day": days}).select("row_key")
    clean = clean.join(known, "row_key", "left_anti")
    clean = clean.cache()  # counted, then written: key and anti-join computed once
    context.count("rows_in", rows_in)
    context.count("rows_out", clean.count())
    context.log("process.parsed", rows=rows_in, rejected=len(rejects), days=len(days),
                partitions=raw.rdd.getNumPartitions())
    claim.publish_version(clean, TRANSACTIONS)
    clean.unpersist()
    raw.unpersist()
    return days


def upsert_daily_totals(context: RunContext, days: list[str], claim: Claim | None = None) -> None:
    """Recompute the given days from the whole dataset and upsert one document per (day, country), in both the
    UCI totals and the cross-source sales collection."""
    from pyspark.sql import functions as F

    if not days:
        context.log("mongo.skipped", reason="no day to recompute")
        return
    totals = (
        (claim.read(TRANSACTIONS, {"invoice_day": days}) if claim is not None
         else TRANSACTIONS.read(context.spark, context.lake, {"invoice_day": days}))
        .groupBy("invoice_day", "country")
        .agg(
            F.countDistinct("invoice_no").alias("invoices"),
            F.count("*").alias("lines"),
            F.round(F.sum("amount"), 2).alias("revenue"),
            F.sum(F.col("is_cancellation").cast("int")).alias("cancelled_lines"),
        )
        .collect()
    )
    db = data_db(context.settings)
    written = sink.upsert(db, DAILY, (
        {"day": t["invoice_day"], "country": t["country"], "invoices": t["invoices"], "lines": t["lines"],
         "revenue": t["revenue"], "cancelled_lines": t["cancelled_lines"], "lineage_run": context.run_id}
        for t in totals))
    sink.upsert(db, SALES_DAILY, (
        {"source": "uci", "day": t["invoice_day"], "region": t["country"], "category": "all",
         "orders": t["invoices"], "lines": t["lines"], "revenue": t["revenue"],
         "cancelled_lines": t["cancelled_lines"], "lineage_run": context.run_id}
        for t in totals))
    context.log("mongo.upserted", collection=DAILY.name, documents=written, days=len(days))


def run(context: RunContext, args: argparse.Namespace) -> None:
    """Totals are upserted inside the claim, before commit: inputs are archived only once MongoDB has them."""

    def process_and_upsert(claim: Claim) -> None:
        upsert_daily_totals(context, sorted(set(process(context, claim)) | set(args.day)), claim)

    if run_batch(context, context.lake, SOURCE, (TRANSACTIONS.name,), process_and_upsert, args.max_files) is None:
        upsert_daily_totals(context, sorted(set(args.day)))


JOB = Job("retail_daily", build_parser, run, needs=("lake", "spark"), takes_day=True)


if __name__ == "__main__":
    sys.exit(JOB.main())
