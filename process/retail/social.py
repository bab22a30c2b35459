"""Social posts: landing tweets (JSON lines or one JSON array, gzip or not) → versioned `retail_social_posts` →
brand mentions per 10 minutes / hour and a daily summary (languages, top hashtags, retweet share) in MongoDB.

Each file's shape is detected from its first character (`[` = one JSON array, read with Spark's `multiLine`;
otherwise one tweet per line, a line that is not a tweet object is quarantined with its reason). `created_at`
("Wed Nov 30 13:51:43 +0000 2016") is parsed without its weekday token (Spark 4 rejects `EEE` when parsing).
The text is the extended text when the tweet is truncated, with HTML entities unescaped. Brands are the tracked
retailer handles found in the tweet's own, retweeted or quoted text or user mentions. Rows are deduplicated on
the tweet id within the run and against the dataset, so a file landed twice adds nothing.

    python -m cronlake.ops.run retail_social [--max-files N]
"""

from __future__ import annotations

import argparse
import sys

from cronlake.contracts.retail_social import DAY_SUMMARY, MENTIONS, POSTS, TRACKED_HANDLES
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.mongo import data_db
from cronlake.core.protocol import Claim, reject, run_batch
from cronlake.core.runner import RunContext

SOURCE = "social"
TOP_HASHTAGS = 10
_TEXTS = "text STRING, extended_tweet STRUCT<full_text: STRING>"
_ENTITIES = "entities STRUCT<hashtags: ARRAY<STRUCT<text: STRING>>, user_mentions: ARRAY<STRUCT<screen_name: STRING>>>"
TWEET_SCHEMA = (
    f"created_at STRING, id BIGINT, {_TEXTS}, truncated BOOLEAN, lang STRING, source STRING, "
    f"in_reply_to_status_id BIGINT, user STRUCT<screen_name: STRING, followers_count: BIGINT>, {_ENTITIES}, "
    f"retweeted_status STRUCT<{_TEXTS}, {_ENTITIES}>, quoted_status STRUCT<{_TEXTS}, {_ENTITIES}>"
)
# &amp; last, so "&amp;lt;" becomes "&lt;" and not "<".
HTML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail_social", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-files", type=int, default=None, help="claim at most N landing files")
    return parser


def read_tweets(context: RunContext, claim: Claim):  # noqa: ANN201 - a Spark DataFrame
    """The claimed files' tweets as rows of TWEET_SCHEMA plus `source_file`; malformed lines rejected."""
    from pyspark.sql import functions as F

    spark = context.spark
    frames = []
    for path in claim.inputs:
        uri = claim.lake.uri(path)
        name = path.rsplit("/", 1)[-1]
        first = spark.read.text(uri).where(F.trim("value") != "").first()
        if first is None:
            claim.quarantine(path, "empty file")
            continue
        if first["value"].lstrip().startswith("["):
            tweets = spark.read.option("multiLine", True).option("mode", "PERMISSIVE").schema(TWEET_SCHEMA).json(uri)
            if tweets.where(F.col("id").isNotNull()).limit(1).count() == 0:
                claim.quarantine(path, "a JSON array without any tweet object")
                continue
        else:
            lines = (spark.read.text(uri).where(F.trim("value") != "")
                     .withColumn("tweet", F.from_json("value", TWEET_SCHEMA, {"mode": "PERMISSIVE"})))
            bad = F.col("tweet").isNull() | F.col("tweet.id").isNull()
            claim.reject_records(path, [
                reject("not a JSON tweet object (unparseable or without id)", {"line": r["value"][:500]}, file=name)
                for r in lines.where(bad).select("value").collect()
            ])
            tweets = lines.where(~bad).select("tweet.*")
        frames.append(tweets.withColumn("source_file", F.lit(name)))
    if not frames:
        return None
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def full_text(struct: str):  # noqa: ANN201 - a Spark Column
    from pyspark.sql import functions as F

    return F.coalesce(F.col(f"{struct}extended_tweet.full_text"), F.col(f"{struct}text"))


def unescape_html(column):  # noqa: ANN001, ANN201 - Spark Columns
    from pyspark.sql import functions as F

    for entity, character in HTML_ENTITIES:
        column = F.replace(column, F.lit(entity), F.lit(character))
    return column


def joined(column):  # noqa: ANN001, ANN201 - Spark Columns
    """A list column as lower-case, distinct, sorted, comma-separated text."""
    from pyspark.sql import functions as F

    return F.array_join(F.array_sort(F.array_distinct(F.transform(column, F.lower))), ",")


def posts(tweets):  # noqa: ANN001, ANN201 - Spark DataFrames
    from pyspark.sql import functions as F

    # "Wed Nov 30 13:51:43 +0000 2016": drop the weekday, parse the rest.
    created = F.try_to_timestamp(F.substring_index(F.col("created_at"), " ", -5), F.lit("MMM dd HH:mm:ss Z yyyy"))
    mentions = F.flatten(F.array(*(
        F.coalesce(F.col(f"{s}entities.user_mentions.screen_name"), F.array().cast("array<string>"))
        for s in ("", "retweeted_status.", "quoted_status."))))
    searched = F.lower(F.concat_ws(" ", full_text(""), full_text("retweeted_status."), full_text("quoted_status.")))
    handles = F.array(*(F.lit(h) for h in TRACKED_HANDLES))
    mentioned = F.transform(mentions, F.lower)
    brands = F.filter(handles, lambda h: F.regexp(searched, F.concat(F.lit("@"), h, F.lit("\\b")))
                      | F.array_contains(mentioned, h))
    hashtags = F.coalesce(F.col("entities.hashtags.text"), F.array().cast("array<string>"))
    return (
        tweets.select(
            F.col("id").alias("tweet_id"), created.alias("created_at"), unescape_html(full_text("")).alias("text"),
            F.coalesce(F.col("lang"), F.lit("und")).alias("lang"), joined(hashtags).alias("hashtags"),
            joined(mentions).alias("mentions"), F.array_join(brands, ",").alias("brands"),
            F.col("retweeted_status").isNotNull().alias("is_retweet"),
            F.col("quoted_status").isNotNull().alias("is_quote"),
            F.col("in_reply_to_status_id").isNotNull().alias("is_reply"),
            F.col("user.screen_name").alias("user_screen_name"),
            F.col("user.followers_count").alias("user_followers"),
            F.nullif(F.regexp_extract("source", ">([^<]*)<", 1), F.lit("")).alias("source_app"), "source_file",
        )
        .withColumn("day", F.date_format("created_at", "yyyy-MM-dd"))
        .dropDuplicates(["tweet_id"])
    )


def process(context: RunContext, claim: Claim):  # noqa: ANN201 - a Spark DataFrame or None
    """Publish the claimed files' new tweets; return the touched days' posts, the current version's plus this
    run's (its version is committed only with the claim)."""
    from pyspark.sql import functions as F

    tweets = read_tweets(context, claim)
    if tweets is None:
        return None
    rows = posts(tweets).cache()
    unparsed = rows.where(F.col("created_at").isNull()).select("tweet_id", "source_file").collect()
    for path in claim.accepted:
        name = path.rsplit("/", 1)[-1]
        claim.reject_records(path, [reject("created_at is not a Twitter date", {"tweet_id": r["tweet_id"]},
                                           file=name) for r in unparsed if r["source_file"] == name])
    rows = rows.where(F.col("created_at").isNotNull())
    days = sorted(r["day"] for r in rows.select("day").distinct().collect())
    known = POSTS.read(context.spark, context.lake, where={"day": days}).select(*POSTS.key)
    new = rows.join(known, list(POSTS.key), "left_anti").select(*POSTS.column_names).cache()
    context.count("rows_in", tweets.count())
    context.count("rows_out", new.count())
    claim.publish_version(new, POSTS)
    return claim.read(POSTS, where={"day": days})


def upsert_serving(context: RunContext, frame) -> None:  # noqa: ANN001 - a Spark DataFrame or None
    """Recompute the touched days' brand mentions per window and daily summaries from all their posts."""
    from pyspark.sql import functions as F

    if frame is None:
        return
    frame = frame.cache()
    by_brand = frame.where(F.col("brands") != "").withColumn("brand", F.explode(F.split("brands", ",")))
    documents = []
    for granularity, window in (("10min", "10 minutes"), ("hour", "1 hour")):
        counts = by_brand.groupBy("brand", F.window("created_at", window).start.alias("start")).count().collect()
        documents += [{"brand": r["brand"], "granularity": granularity,
                       "window_start": r["start"].strftime("%Y-%m-%dT%H:%M:%SZ"), "mentions": r["count"],
                       "lineage_run": context.run_id} for r in counts]
    written = sink.upsert(data_db(context.settings), MENTIONS, documents)

    totals = {r["day"]: r for r in frame.groupBy("day").agg(
        F.count("*").alias("posts"), F.sum(F.col("is_retweet").cast("int")).alias("retweets")).collect()}
    languages = frame.groupBy("day", "lang").count().collect()
    tags = (frame.where(F.col("hashtags") != "").withColumn("tag", F.explode(F.split("hashtags", ",")))
            .groupBy("day", "tag").count().collect())
    summaries = []
    for day, total in totals.items():
        top = sorted(((r["tag"], r["count"]) for r in tags if r["day"] == day), key=lambda t: (-t[1], t[0]))
        summaries.append({
            "platform": "twitter", "day": day, "posts": total["posts"], "retweets": total["retweets"],
            "retweet_share": round(total["retweets"] / total["posts"], 4),
            "languages": {r["lang"]: r["count"] for r in languages if r["day"] == day},
            "top_hashtags": [{"hashtag": tag, "posts": n} for tag, n in top[:TOP_HASHTAGS]],
            "lineage_run": context.run_id,
        })
    written += sink.upsert(data_db(context.settings), DAY_SUMMARY, summaries)
    frame.unpersist()
    context.log("mongo.upserted", documents=written, days=len(totals))


def run(context: RunContext, args: argparse.Namespace) -> None:
    """Serving documents are upserted inside the claim: inputs are archived only once MongoDB has them."""
    run_batch(context, context.lake, SOURCE, (POSTS.name,),
              lambda claim: upsert_serving(context, process(context, claim)), args.max_files)


JOB = Job("retail_social", build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
