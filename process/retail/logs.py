"""Web server logs: Apache/Nginx access logs in `landing/weblogs/` → hits and sessions (versioned Delta datasets)
→ hourly traffic, top product/category pages and daily session figures in MongoDB.

Each line is parsed with one regex (combined format, optional trailing quoted X-Forwarded-For); lines that do not
match, or whose time does not parse, are quarantined with the reason. A hit is identified by `hit_key` = sha256 of
the site and the raw line: exact duplicate lines are dropped (counted), and a file landed twice adds nothing.
Sessions (same client ip + user agent, a new one after 30 minutes without a hit) are recomputed from the hits of
the days this run touched plus the day before, so a session spanning two landed files is computed whole.

    python -m cronlake.ops.run retail_logs [--max-files N]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from typing import TYPE_CHECKING

from cronlake.contracts.retail_logs import (
    BOT_PATTERN,
    HITS,
    HOURLY,
    LINE_PATTERN,
    LOG_TIME_FORMAT,
    SESSION_GAP_MINUTES,
    SESSION_SUMMARY,
    SESSIONS,
    TOP_PAGES,
)
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.mongo import data_db
from cronlake.core.protocol import Claim, reject, run_batch
from cronlake.core.runner import RunContext

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SOURCE = "weblogs"
GROUPS = ("remote_ip", "user", "time", "method", "target", "protocol", "status", "bytes", "referer_raw",
          "user_agent_raw", "xff")
NOT_PAGES = ("image", "static", "order_api")  # requests a page makes, not pages a visitor opens


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail_logs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-files", type=int, default=None, help="claim at most N landing files")
    return parser


def unescape(column: Column) -> Column:
    """Nginx writes non-printable and non-ASCII bytes as `\\xHH`: decode them as UTF-8 (literal `%` and `+` are
    protected so that only the escapes change)."""
    from pyspark.sql import functions as F

    protected = F.replace(F.replace(column, F.lit("%"), F.lit("%25")), F.lit("+"), F.lit("%2B"))
    decoded = F.try_url_decode(F.regexp_replace(protected, r"\\x([0-9A-Fa-f]{2})", "%$1"))
    return F.coalesce(decoded, column)


def percent_decoded(column: Column) -> Column:
    """A URL part with its %HH sequences decoded (UTF-8); the text unchanged when it is not valid."""
    from pyspark.sql import functions as F

    return F.coalesce(F.try_url_decode(F.replace(column, F.lit("+"), F.lit("%2B"))), column)


def page_type(path: Column) -> Column:
    from pyspark.sql import functions as F

    lower = F.lower(path)
    return (F.when(lower.rlike(r"^/(m/)?product/"), "product")
            .when(lower.rlike(r"^/(m/)?filter/"), "category")
            .when(lower.rlike(r"^/(m/)?basket"), "basket")
            .when(lower.rlike(r"^/(m/)?image/"), "image")
            .when(lower.startswith("/rapidgrails/"), "order_api")
            .when(lower.rlike(r"^/(m/)?article"), "article")
            .when(lower.rlike(r"^/(m/?)?$"), "home")
            .when(lower.rlike(r"\.(css|js|png|jpe?g|gif|ico|svg|webp|woff2?|ttf|eot|map|txt|xml)$"), "static")
            .otherwise("other"))


def parse(lines: DataFrame) -> DataFrame:
    """Raw lines (`line`, `source_file`) → one column per regex group, `matched` and the parsed UTC time."""
    from pyspark.sql import functions as F

    groups = [F.regexp_extract("line", LINE_PATTERN, i + 1).alias(name) for i, name in enumerate(GROUPS)]
    return (lines.select("line", "source_file", F.col("line").rlike(LINE_PATTERN).alias("matched"), *groups)
            .withColumn("hit_time", F.try_to_timestamp("time", F.lit(LOG_TIME_FORMAT))))


def hits_of(parsed: DataFrame) -> DataFrame:
    """Matched lines → the hits dataset's columns (one row per line; duplicates are still there)."""
    from pyspark.sql import functions as F

    def blank_as_null(name: str) -> Column:
        return F.when(F.col(name).isin("", "-"), None).otherwise(F.col(name))

    path_raw = F.regexp_extract("target", r"^([^?]*)", 1)
    query_raw = F.when(F.col("target").contains("?"), F.regexp_extract("target", r"\?(.*)$", 1))
    forwarded = F.trim(F.split(blank_as_null("xff"), ",").getItem(0))
    site = F.regexp_extract("source_file", r"^([^_.]+)", 1)
    return (
        parsed
        .withColumn("site", site)
        .withColumn("hit_key", F.sha2(F.concat_ws("\u0001", site, F.col("line")), 256))
        .withColumn("path_raw", path_raw)
        .withColumn("path", percent_decoded(unescape(path_raw)))
        .withColumn("query_raw", query_raw)
        .withColumn("query", percent_decoded(unescape(F.col("query_raw"))))
        .withColumn("referer_raw", blank_as_null("referer_raw"))
        .withColumn("user_agent", unescape(F.col("user_agent_raw")))
        .select(
            "hit_key", "site", F.coalesce(forwarded, F.col("remote_ip")).alias("client_ip"), "remote_ip",
            forwarded.alias("forwarded_for"), "hit_time", F.regexp_extract("time", r"([+-]\d{4})$", 1)
            .alias("utc_offset"), F.date_trunc("hour", "hit_time").alias("hit_hour"), "method", "path", "path_raw",
            "query", "query_raw", blank_as_null("protocol").alias("protocol"), F.col("status").cast("int")
            .alias("status"), F.concat(F.substring("status", 1, 1), F.lit("xx")).alias("status_class"),
            # `-` is how both servers write "no body bytes": 0, so that byte totals add up.
            F.when(F.col("bytes") == "-", F.lit(0)).otherwise(F.col("bytes")).cast("long").alias("bytes"),
            percent_decoded(unescape(F.col("referer_raw"))).alias("referer"), "referer_raw", "user_agent",
            F.col("user_agent").rlike(BOT_PATTERN).alias("is_bot"), page_type(F.col("path")).alias("page_type"),
            F.col("path").startswith("/m/").alias("is_mobile"),
            F.nullif(F.regexp_extract("path", r"^/(?:m/)?product/(\d+)", 1), F.lit("")).alias("product_id"),
            F.nullif(F.regexp_extract("path", r"^/(?:m/)?filter/([^/]+)", 1), F.lit("")).alias("category_id"),
            "source_file", F.date_format("hit_time", "yyyy-MM-dd").alias("hit_day"),
        )
    )


def sessions_of(hits: DataFrame) -> DataFrame:
    """Hits → sessions: per site, client ip and user agent in time order, a gap of more than 30 minutes starts a
    new session; the id is the sha256 of site, client, agent and first hit time (stable across reruns)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    visitor = ("site", "client_ip", "user_agent")
    ordered = Window.partitionBy(*visitor).orderBy("hit_time", "hit_key")
    gap = F.unix_seconds("hit_time") - F.unix_seconds(F.lag("hit_time").over(ordered))
    starts = F.when(gap.isNull() | (gap > SESSION_GAP_MINUTES * 60), 1).otherwise(0)
    numbered = (hits.withColumn("starts", starts)
                .withColumn("session_no", F.sum("starts").over(ordered.rowsBetween(Window.unboundedPreceding, 0))))
    return (
        numbered.groupBy(*visitor, "session_no")
        .agg(F.min("hit_time").alias("first_hit"), F.max("hit_time").alias("last_hit"),
             F.count("*").alias("hits"), F.max("is_bot").alias("is_bot"),
             F.sum(F.when(~F.col("page_type").isin(*NOT_PAGES), 1).otherwise(0)).cast("long").alias("pages"))
        .withColumn("session_id", F.sha2(F.concat_ws("\u0001", *visitor, F.col("first_hit").cast("string")), 256))
        .withColumn("duration_seconds", F.unix_seconds("last_hit") - F.unix_seconds("first_hit"))
        .withColumn("session_day", F.date_format("first_hit", "yyyy-MM-dd"))
        .select(*SESSIONS.column_names)
    )


def quarantine_lines(claim: Claim, parsed: DataFrame) -> int:
    """Keep the lines that do not parse as rejects of their file, with the reason; returns how many."""
    from pyspark.sql import functions as F

    reason = (F.when(~F.col("matched"), "not an access-log line (combined format, optional X-Forwarded-For)")
              .otherwise(F.concat(F.lit("unreadable time "), F.col("time"))))
    bad = parsed.where(~F.col("matched") | F.col("hit_time").isNull()).select("source_file", "line", reason
                                                                              .alias("reason")).collect()
    for path in claim.accepted:
        name = path.rsplit("/", 1)[-1]
        claim.reject_records(path, [reject(r["reason"], r["line"], file=name) for r in bad if r["source_file"] == name])
    return len(bad)


def process(context: RunContext, claim: Claim) -> None:
    from pyspark.sql import functions as F

    spark = context.spark
    lines = (spark.read.text(claim.uris()).withColumnRenamed("value", "line")
             .withColumn("source_file", F.element_at(F.split(F.input_file_name(), "/"), -1)))
    parsed = parse(lines).cache()
    rows_in = parsed.count()
    rejected = quarantine_lines(claim, parsed)
    hits = hits_of(parsed.where(F.col("matched") & F.col("hit_time").isNotNull())).cache()
    parsed_hits = hits.count()
    distinct = hits.dropDuplicates(["hit_key"])
    days = sorted(r["hit_day"] for r in distinct.select("hit_day").distinct().collect())
    known = HITS.read(spark, context.lake, {"hit_day": days}).select("hit_key")
    # One file per day and version: the slices are small, many tiny part files would cost more than the rows.
    new_hits = distinct.join(known, "hit_key", "left_anti").repartition("hit_day").cache()
    added = new_hits.count()
    context.count("rows_in", rows_in)
    context.count("duplicate_lines", parsed_hits - distinct.count())
    context.count("rows_out", added)
    context.log("process.parsed", lines=rows_in, rejected=rejected, hits=parsed_hits, new=added, days=len(days))
    claim.publish_version(new_hits, HITS)
    if added:
        publish_sessions_and_serve(context, claim, new_hits, days)
    new_hits.unpersist()
    hits.unpersist()
    parsed.unpersist()


def publish_sessions_and_serve(context: RunContext, claim: Claim, new_hits: DataFrame, days: list[str]) -> None:
    """Sessions of the touched days (their hits, read with the day before, plus this run's) published when new
    or extended; the serving figures of the touched days recomputed from the same hits and upserted."""
    from pyspark.sql import functions as F

    window = sorted(set(days) | {(date.fromisoformat(d) - timedelta(days=1)).isoformat() for d in days})
    all_hits = claim.read(HITS, {"hit_day": window}).cache()
    sessions = sessions_of(all_hits).where(F.col("session_day").isin(days)).cache()
    known = SESSIONS.read(context.spark, context.lake, {"session_day": days}).select(*SESSIONS.key)
    claim.publish_version(sessions.join(known, list(SESSIONS.key), "left_anti").repartition("session_day"),
                          SESSIONS, upstream=(HITS,))
    touched = all_hits.where(F.col("hit_day").isin(days))
    db = data_db(context.settings)
    run = {"lineage_run": context.run_id}
    written = {
        HOURLY.name: sink.upsert(db, HOURLY, ({**row, **run} for row in hourly_traffic(touched))),
        TOP_PAGES.name: sink.upsert(db, TOP_PAGES, ({**row, **run} for row in top_pages(touched))),
        SESSION_SUMMARY.name: sink.upsert(db, SESSION_SUMMARY, ({**row, **run} for row in
                                                                session_summary(sessions))),
    }
    context.log("mongo.upserted", days=len(days), **written)
    sessions.unpersist()
    all_hits.unpersist()


def hourly_traffic(hits: DataFrame) -> list[dict]:
    from pyspark.sql import functions as F

    def status(cls: str) -> Column:
        return F.sum(F.when(F.col("status_class") == cls, 1).otherwise(0)).alias(f"status_{cls}")

    rows = (hits.groupBy("site", "hit_hour")
            .agg(F.count("*").alias("hits"), F.countDistinct("client_ip").alias("unique_clients"),
                 F.sum(F.col("is_bot").cast("int")).alias("bot_hits"), *(status(c) for c in ("2xx", "3xx", "4xx",
                                                                                                   "5xx")),
                 F.sum("bytes").alias("bytes"))
            .collect())
    return [{"site": r["site"], "hour": r["hit_hour"].strftime("%Y-%m-%dT%H:00Z"),
             "day": r["hit_hour"].strftime("%Y-%m-%d"), "hits": r["hits"], "unique_clients": r["unique_clients"],
             "bot_hits": r["bot_hits"], "bot_share": round(r["bot_hits"] / r["hits"], 4),
             **{f"status_{c}": r[f"status_{c}"] for c in ("2xx", "3xx", "4xx", "5xx")},
             "error_rate": round((r["status_4xx"] + r["status_5xx"]) / r["hits"], 4), "bytes": r["bytes"]}
            for r in rows]


def top_pages(hits: DataFrame) -> list[dict]:
    from pyspark.sql import functions as F

    items = (hits.where(F.col("page_type").isin("product", "category"))
             .withColumn("item_id", F.coalesce("product_id", "category_id")).where(F.col("item_id").isNotNull())
             .groupBy("site", "hit_day", "page_type", "item_id")
             .agg(F.count("*").alias("hits"), F.countDistinct("client_ip").alias("unique_clients")).collect())
    return [{"site": r["site"], "day": r["hit_day"], "page_type": r["page_type"], "item_id": r["item_id"],
             "hits": r["hits"], "unique_clients": r["unique_clients"]} for r in items]


def session_summary(sessions: DataFrame) -> list[dict]:
    from pyspark.sql import functions as F

    rows = (sessions.groupBy("site", "session_day")
            .agg(F.count("*").alias("sessions"), F.sum((~F.col("is_bot")).cast("int")).alias("human_sessions"),
                 F.median("duration_seconds").alias("median_duration"), F.avg("pages").alias("pages_per_session"),
                 F.avg((F.col("pages") <= 1).cast("int")).alias("bounce_rate"))
            .collect())
    return [{"site": r["site"], "day": r["session_day"], "sessions": r["sessions"],
             "human_sessions": r["human_sessions"], "median_duration_seconds": float(r["median_duration"]),
             "pages_per_session": round(r["pages_per_session"], 3), "bounce_rate": round(r["bounce_rate"], 4)}
            for r in rows]


def run(context: RunContext, args: argparse.Namespace) -> None:
    """The serving figures are upserted inside the claim, before commit: inputs are archived only once MongoDB
    has them."""
    run_batch(context, context.lake, SOURCE, (HITS.name, SESSIONS.name), lambda claim: process(context, claim),
              args.max_files)


JOB = Job("retail_logs", build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
