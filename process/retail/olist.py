"""Olist marketplace exports: landing `<export>.<table>.csv` files → order lines (versioned Delta dataset) → daily
sales per customer state and category in MongoDB (`retail_sales_daily`, source "olist").

An export is the set of files landed in `landing/olist/` that share the prefix before the first dot; its tables are
`orders, order_items, customers, products, sellers, category_translation` (e.g. `2017-09.order_items.csv`). An
export missing a table, or with a file of another name, is quarantined whole with the reason: never half
processed. Items whose order, product or seller is not in the export, or whose price or item number does not
parse, are kept in quarantine as rejects with their reason. Times are Brazil local time (America/Sao_Paulo),
stored in UTC; zip prefixes get their lost leading zeros back; a category missing from the translation keeps its
Portuguese name (`category_translated` false). Lines already in the dataset (same order id and item number) are
not appended again, so an export landed twice adds nothing.

    python -m cronlake.ops.run retail_olist
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from collections import defaultdict

from cronlake.contracts.retail import OLIST_TABLES, ORDER_LINES, SALES_DAILY
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.mongo import data_db
from cronlake.core.protocol import Claim, reject, run_batch
from cronlake.core.runner import RunContext

SOURCE = "olist"
TIME_ZONE = "America/Sao_Paulo"
BOM = "\ufeff"


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="retail_olist", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def group_exports(paths: list[str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Complete exports ({export: {table: path}}) and the paths to quarantine with their reason."""
    exports: dict[str, dict[str, str]] = defaultdict(dict)
    for path in paths:
        export, _, rest = posixpath.basename(path).partition(".")
        exports[export][rest.removesuffix(".csv")] = path
    complete, rejected = {}, {}
    for export, tables in exports.items():
        missing = [t for t in OLIST_TABLES if t not in tables]
        unknown = sorted(set(tables) - set(OLIST_TABLES))
        if missing or unknown:
            reason = f"export {export!r} incomplete: missing tables {missing}, unknown files {unknown}"
            rejected.update({path: reason for path in tables.values()})
        else:
            complete[export] = tables
    return complete, rejected


def local_to_utc(column: str):
    from pyspark.sql import functions as F

    return F.to_utc_timestamp(F.try_to_timestamp(F.col(column), F.lit("yyyy-MM-dd HH:mm:ss")), TIME_ZONE)


def order_lines(context: RunContext, claim: Claim, export: str, tables: dict[str, str]):
    """The export's items joined into order lines, after its orphan or unparseable items went to quarantine."""
    from pyspark.sql import functions as F

    def table(name: str):
        frame = context.spark.read.option("header", True).csv(claim.lake.uri(tables[name]))
        return frame.toDF(*[c.removeprefix(BOM) for c in frame.columns])

    number = "([0-9]+)(\\.0+)?"  # pandas wrote some integers as floats (`51.0`)
    orders = table("orders").select(
        "order_id", "customer_id", "order_status",
        local_to_utc("order_purchase_timestamp").alias("purchase_time"),
        local_to_utc("order_approved_at").alias("approved_time"),
        local_to_utc("order_delivered_customer_date").alias("delivered_time"),
        local_to_utc("order_estimated_delivery_date").alias("estimated_delivery_time"),
        F.substring("order_purchase_timestamp", 1, 10).alias("purchase_day"),
        F.datediff(F.to_date("order_delivered_customer_date"), F.to_date("order_estimated_delivery_date"))
        .alias("delivery_delay_days"),
    )
    customers = table("customers").select(
        "customer_id", "customer_unique_id", "customer_city", "customer_state",
        F.lpad(F.nullif(F.regexp_extract("customer_zip_code_prefix", f"^{number}$", 1), F.lit("")), 5, "0")
        .alias("customer_zip_prefix"))
    translation = table("category_translation")
    products = (table("products").join(translation, "product_category_name", "left").select(
        "product_id", F.coalesce("product_category_name_english", "product_category_name").alias("category"),
        (F.col("product_category_name_english").isNotNull() | F.col("product_category_name").isNull())
        .alias("category_translated")))
    sellers = table("sellers").select("seller_id", "seller_state")
    items = table("order_items").select(
        "order_id", "product_id", "seller_id", F.col("order_item_id").alias("order_item_text"),
        F.regexp_extract("order_item_id", f"^{number}$", 1).try_cast("int").alias("order_item_id"),
        F.col("price").try_cast("double").alias("price"), F.col("freight_value").try_cast("double").alias("freight"))
    joined = (
        items.join(orders.withColumn("_order", F.lit(True)), "order_id", "left")
        .join(customers, "customer_id", "left")
        .join(products.withColumn("_product", F.lit(True)), "product_id", "left")
        .join(sellers.withColumn("_seller", F.lit(True)), "seller_id", "left")
        .withColumn("reject_reason", F.when(F.col("_order").isNull(), F.lit("unknown order"))
                    .when(F.col("_product").isNull(), F.lit("unknown product"))
                    .when(F.col("_seller").isNull(), F.lit("unknown seller"))
                    .when(F.col("order_item_id").isNull(), F.lit("unparseable order_item_id"))
                    .when(F.col("price").isNull() | F.col("freight").isNull(), F.lit("unparseable price or freight"))
                    .when(F.col("purchase_time").isNull(), F.lit("unparseable purchase time")))
        .cache()
    )
    rejects = joined.where(F.col("reject_reason").isNotNull()).select(
        "reject_reason", "order_id", "order_item_text", "product_id", "seller_id").collect()
    claim.reject_records(tables["order_items"], [
        reject(r["reject_reason"], {k: r[k] for k in ("order_id", "order_item_text", "product_id", "seller_id")},
               file=posixpath.basename(tables["order_items"]))
        for r in rejects])
    context.count("rows_rejected", len(rejects))
    lines = (joined.where(F.col("reject_reason").isNull())
             .withColumn("export", F.lit(export))
             .withColumn("revenue", F.round(F.col("price") + F.col("freight"), 2))
             .withColumn("is_cancelled", F.col("order_status").isin("canceled", "unavailable")))
    return lines.select(*ORDER_LINES.column_names), joined


def process(context: RunContext, claim: Claim) -> list[str]:
    """Publish the complete exports' new order lines; return the purchase days they touched."""
    exports, incomplete = group_exports(claim.inputs)
    for path, reason in incomplete.items():
        claim.quarantine(path, reason)
    if not exports:
        return []
    frames = [order_lines(context, claim, export, tables) for export, tables in sorted(exports.items())]
    lines = frames[0][0]
    for frame, _ in frames[1:]:
        lines = lines.unionByName(frame)
    # Two exports in one claim may repeat a line: keep the first export's.
    lines = lines.dropDuplicates(list(ORDER_LINES.key)).cache()
    days = sorted(r["purchase_day"] for r in lines.select("purchase_day").distinct().collect())
    known = ORDER_LINES.read(context.spark, context.lake, {"purchase_day": days}).select(*ORDER_LINES.key)
    new = lines.join(known, list(ORDER_LINES.key), "left_anti").cache()
    context.count("rows_in", lines.count())
    context.count("rows_out", new.count())
    claim.publish_version(new, ORDER_LINES)
    for frame in (new, lines, *(joined for _, joined in frames)):
        frame.unpersist()
    return days


def upsert_sales(context: RunContext, claim: Claim, days: list[str]) -> None:
    """Recompute the given purchase days from the whole dataset: one document per (day, state, category);
    revenue excludes cancelled orders, whose lines are counted apart."""
    from pyspark.sql import functions as F

    if not days:
        return
    totals = (
        claim.read(ORDER_LINES, {"purchase_day": days})
        .groupBy("purchase_day", "customer_state", F.coalesce("category", F.lit("unknown")).alias("category"))
        .agg(F.countDistinct("order_id").alias("orders"), F.count("*").alias("lines"),
             F.round(F.sum(F.when(~F.col("is_cancelled"), F.col("revenue")).otherwise(0.0)), 2).alias("revenue"),
             F.sum(F.col("is_cancelled").cast("int")).alias("cancelled_lines"))
        .collect()
    )
    written = sink.upsert(data_db(context.settings), SALES_DAILY, (
        {"source": "olist", "day": t["purchase_day"], "region": t["customer_state"], "category": t["category"],
         "orders": t["orders"], "lines": t["lines"], "revenue": t["revenue"], "cancelled_lines": t["cancelled_lines"],
         "lineage_run": context.run_id}
        for t in totals))
    context.log("mongo.upserted", collection=SALES_DAILY.name, documents=written, days=len(days))


def run(context: RunContext, args: argparse.Namespace) -> None:
    """Sales are upserted inside the claim, before commit: inputs are archived only once MongoDB has them."""
    run_batch(context, context.lake, SOURCE, (ORDER_LINES.name,),
              lambda claim: upsert_sales(context, claim, process(context, claim)))


JOB = Job("retail_olist", build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
