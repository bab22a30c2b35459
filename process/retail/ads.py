"""Ad campaigns: landed ad events (JSON lines of `landing/ads/`) → versioned `retail_ad_events` (one row per ad) →
campaign performance in MongoDB (`retail_ad_performance`: impressions, clicks, spent, conversions, CTR, CPC,
conversion rates and costs per campaign and by age, gender and interest, overall and within each campaign).

An event that is not a JSON object of the `retail_ad_event` contract (missing or mistyped fields, negative counts,
an unknown age bracket or gender, a time that is not ISO-8601) or that contradicts itself (more clicks than
impressions, more approved than total conversions) is quarantined with its reasons, counted, and the run goes on.
Ads reporting conversions without a single click (an upstream inconsistency of the KAG data) are kept, flagged
`conversions_without_clicks` and counted; no rate divides by zero (a rate without denominator is None). Events are
deduplicated on `ad_id` within the run (the earliest replay wins) and against the dataset, so a file landed twice,
or the source replayed twice, adds nothing.

    python -m cronlake.ops.run retail_ads [--max-files N]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cronlake.contracts.retail_ads import (
    AD_EVENT,
    AGES,
    ALL,
    EVENTS,
    GENDERS,
    MEASURES,
    PERFORMANCE,
    SOURCE,
    TIMESTAMP_ORIGIN,
)
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.mongo import data_db
from cronlake.core.protocol import Claim, reject, run_batch
from cronlake.core.runner import RunContext

TIME_FORMATS = ("yyyy-MM-dd'T'HH:mm:ss.SSSX", "yyyy-MM-dd'T'HH:mm:ssX")
COUNTS = ("impressions", "clicks", "total_conversion", "approved_conversion")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail_ads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-files", type=int, default=None, help="claim at most N landing files")
    return parser


def reasons():  # noqa: ANN201 - a Spark Column
    """Why a parsed event line is refused: an array of reasons, empty for a valid event."""
    from pyspark.sql import functions as F

    event = F.col("event")
    checks = [(event.isNull(), "not a JSON object")]
    checks += [(event.isNotNull() & F.col(f"event.{name}").isNull(), f"missing or mistyped {name}")
               for name in AD_EVENT.names]
    checks += [(F.col(f"event.{f.name}") < F.lit(f.minimum), f"{f.name} below {f.minimum:g}")
               for f in AD_EVENT.fields if f.minimum is not None]
    checks += [
        (F.col("event.replayed_at").isNotNull() & F.col("replayed_ts").isNull(), "replayed_at is not an ISO time"),
        (~F.col("event.age").isin(list(AGES)), "unknown age bracket"),
        (~F.col("event.gender").isin(list(GENDERS)), "unknown gender"),
        (F.col("event.timestamp_origin") != F.lit(TIMESTAMP_ORIGIN), "unknown timestamp_origin"),
        (F.col("event.clicks") > F.col("event.impressions"), "more clicks than impressions"),
        (F.col("event.approved_conversion") > F.col("event.total_conversion"),
         "more approved than total conversions"),
    ]
    return F.filter(F.array(*(F.when(F.coalesce(condition, F.lit(False)), F.lit(reason))
                              for condition, reason in checks)), lambda r: r.isNotNull())


def read_events(context: RunContext, claim: Claim):  # noqa: ANN201 - a Spark DataFrame or None
    """The claimed files' valid events with `landing_file`; empty files quarantined, refused lines rejected."""
    from pyspark.sql import functions as F

    if not claim.accepted:
        return None
    lines = (context.spark.read.text(claim.uris())
             .withColumn("landing_file", F.element_at(F.split(F.input_file_name(), "/"), -1))
             .where(F.trim("value") != ""))
    per_file = {r["landing_file"]: r["count"] for r in lines.groupBy("landing_file").count().collect()}
    for path in list(claim.accepted):
        if path.rsplit("/", 1)[-1] not in per_file:
            claim.quarantine(path, "empty file")
    context.count("rows_in", sum(per_file.values()))
    parsed = (lines.withColumn("event", F.from_json("value", AD_EVENT.spark_schema(text_timestamps=True),
                                                     {"mode": "PERMISSIVE"}))
              .withColumn("replayed_ts", F.coalesce(*(F.try_to_timestamp("event.replayed_at", F.lit(f))
                                                       for f in TIME_FORMATS)))
              .withColumn("reasons", reasons())
              .cache())
    refused = parsed.where(F.size("reasons") > 0).select("landing_file", "value", "reasons").collect()
    for path in claim.accepted:
        name = path.rsplit("/", 1)[-1]
        claim.reject_records(path, [reject(", ".join(r["reasons"]), {"line": r["value"][:500]}, file=name)
                                    for r in refused if r["landing_file"] == name])
    return parsed.where(F.size("reasons") == 0)


def ads(events):  # noqa: ANN001, ANN201 - Spark DataFrames
    """One row per ad id (its earliest replay), in the dataset's columns."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy("ad_id").orderBy("replayed_at", "landing_file", "source_row")
    return (
        events.select("event.*", "replayed_ts", "landing_file")
        .drop("replayed_at").withColumnRenamed("replayed_ts", "replayed_at")
        .withColumn("spent", F.round("spent", 2))
        .withColumn("conversions_without_clicks", (F.col("clicks") == 0) & (F.col("total_conversion") > 0))
        .withColumn("replay_day", F.date_format("replayed_at", "yyyy-MM-dd"))
        .withColumn("_n", F.row_number().over(first)).where("_n = 1")
        .select(*EVENTS.column_names)
    )


def process(context: RunContext, claim: Claim):  # noqa: ANN201 - a Spark DataFrame or None
    """Publish the claimed files' new ads; return every ad, the current version's plus this run's."""
    from pyspark.sql import functions as F

    events = read_events(context, claim)
    if events is None:
        return None
    known = EVENTS.read(context.spark, context.lake).select(*EVENTS.key)
    new = ads(events).join(known, list(EVENTS.key), "left_anti").cache()
    counts = new.agg(F.count("*").alias("rows"), F.sum(F.col("conversions_without_clicks").cast("long"))
                     .alias("inconsistent")).first()
    inconsistent = int(counts["inconsistent"] or 0)
    context.count("rows_out", counts["rows"])
    context.count("conversions_without_clicks", inconsistent)
    if inconsistent:
        context.log("ads.conversions_without_clicks", ads=inconsistent)
    claim.publish_version(new, EVENTS)
    new.unpersist()
    return claim.read(EVENTS)


def rate(numerator: float, denominator: float, digits: int) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def performance(row: Any, run_id: str) -> dict[str, Any]:
    """A serving document from one group's sums."""
    spent = round(row["spent"], 2)
    return {
        "campaign": row["campaign"], "dimension": row["dimension"], "value": row["value"], "ads": row["ads"],
        **{name: int(row[name]) for name in COUNTS}, "spent": spent,
        "ctr": rate(row["clicks"], row["impressions"], 8), "cpc": rate(spent, row["clicks"], 4),
        "conversion_rate": rate(row["total_conversion"], row["clicks"], 6),
        "approval_rate": rate(row["approved_conversion"], row["total_conversion"], 6),
        "cost_per_conversion": rate(spent, row["total_conversion"], 4),
        "cost_per_approved": rate(spent, row["approved_conversion"], 4),
        "zero_click_ads": int(row["zero_click_ads"]), "zero_click_conversions": int(row["zero_click_conversions"]),
        "last_replayed_at": row["last_replayed_at"], "lineage_run": run_id,
    }


def upsert_serving(context: RunContext, frame) -> None:  # noqa: ANN001 - a Spark DataFrame or None
    """Recompute every performance document from all ads: totals, per campaign, and by age, gender and interest
    overall and within each campaign."""
    from pyspark.sql import functions as F

    if frame is None:
        return
    campaign = F.col("xyz_campaign_id").cast("string")

    def group(of, dimension: str, value):  # noqa: ANN001, ANN202 - Spark Columns
        return F.struct(of.alias("campaign"), F.lit(dimension).alias("dimension"), value.alias("value"))

    groups = [group(F.lit(ALL), "total", F.lit(ALL)), group(campaign, "total", F.lit(ALL)),
              group(F.lit(ALL), "campaign", campaign)]
    for dimension in ("age", "gender", "interest"):
        value = F.col(dimension).cast("string")
        groups += [group(F.lit(ALL), dimension, value), group(campaign, dimension, value)]
    zero_click = F.col("conversions_without_clicks")
    sums = (frame.withColumn("g", F.explode(F.array(*groups))).groupBy("g.campaign", "g.dimension", "g.value")
            .agg(F.count("*").alias("ads"), *(F.sum(m).alias(m) for m in MEASURES),
                 F.sum(zero_click.cast("long")).alias("zero_click_ads"),
                 F.sum(F.when(zero_click, F.col("total_conversion")).otherwise(0)).alias("zero_click_conversions"),
                 F.max("replayed_at").alias("last_replayed_at"))
            .collect())
    written = sink.upsert(data_db(context.settings), PERFORMANCE, [performance(r, context.run_id) for r in sums])
    context.log("mongo.upserted", documents=written)


def run(context: RunContext, args: argparse.Namespace) -> None:
    """Serving documents are upserted inside the claim: inputs are archived only once MongoDB has them."""
    run_batch(context, context.lake, SOURCE, (EVENTS.name,),
              lambda claim: upsert_serving(context, process(context, claim)), args.max_files)


JOB = Job("retail_ads", build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
