"""ML training set "will this session/user buy?" from a fixed version of `retail_events`, point in time.

For every cutoff and every entity (a session or a user) active in the lookback before it, one row: features
computed only from events strictly before the cutoff (and at or after `--start` and `cutoff - lookback`), and
`label` = 1 when the entity purchases in (cutoff, cutoff + horizon]. At session grain purchase events never feed a
feature (a session's purchase is what is predicted). Negatives are kept with probability `--negative-rate`, by a
hash of (entity, cutoff, seed), not by a random draw: the same parameters and source version give the same rows.
The rows are sorted and written as one file (Parquet or CSV) with `_manifest.json` (parameters, source dataset and
version, schema, rows, positives, label rate, run id) in the output folder, and recorded in the catalog as a
version of `retail_trainset` whose upstream is `retail_events@<version>`.

    python -m cronlake.ops.run retail_trainset --start 2019-10-01T00:00 --end 2019-10-01T02:30 --every 30m \
        [--cutoff 2019-10-01T01:00 ...] [--lookback 1h] [--horizon 30m] [--grain session|user] \
        [--output exports/retail_trainset/NAME | file:///... | hdfs://...] [--format parquet|csv] \
        [--mongo-collection NAME] [--negative-rate 1.0] [--seed 0] [--source-version N]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cronlake.contracts.retail_events import EVENTS, TRAINSET
from cronlake.core import catalog, sink, versioned
from cronlake.core.contracts import Collection
from cronlake.core.jobs import Job
from cronlake.core.lake import HadoopFsLake
from cronlake.core.mongo import data_db
from cronlake.core.runner import JobError, RunContext

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

DURATION = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MANIFEST = "_manifest.json"
KEY = ("cutoff", "entity_id")


def parse_duration(text: str) -> timedelta:
    match = DURATION.match(text)
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a duration like 30m, 2h or 1d: {text!r}")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time (YYYY-MM-DDTHH:MM, UTC): {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_rate(text: str) -> float:
    rate = float(text)
    if not 0.0 < rate <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate in (0, 1]: {text!r}")
    return rate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail_trainset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=parse_time, required=True, help="feature window start (UTC, inclusive)")
    parser.add_argument("--end", type=parse_time, required=True, help="feature window end (UTC): last cutoff")
    cutoffs = parser.add_mutually_exclusive_group(required=True)
    cutoffs.add_argument("--cutoff", type=parse_time, action="append", help="a cutoff time (repeatable)")
    cutoffs.add_argument("--every", type=parse_duration, help="a cutoff every N minutes/hours after --start")
    parser.add_argument("--lookback", type=parse_duration, default=timedelta(hours=1),
                        help="features from events in [cutoff - lookback, cutoff) (default 1h)")
    parser.add_argument("--horizon", type=parse_duration, default=timedelta(minutes=30),
                        help="label: a purchase in (cutoff, cutoff + horizon] (default 30m)")
    parser.add_argument("--grain", choices=("session", "user"), default="session")
    parser.add_argument("--output", default=None,
                        help="lake path or file:// / hdfs:// URI (default exports/retail_trainset/<run id>)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--mongo-collection", default=None, help="also upsert the rows into this data collection")
    parser.add_argument("--negative-rate", type=parse_rate, default=1.0, help="share of negatives kept (0, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the negative sampling hash")
    parser.add_argument("--source-version", type=int, default=None,
                        help="version of retail_events to read (default: its current version, recorded)")
    return parser


def cutoff_times(args: argparse.Namespace) -> list[datetime]:
    """The cutoffs in order: the given ones, or start + every, start + 2 every, ... up to end."""
    if args.end <= args.start:
        raise JobError(f"--end {args.end.isoformat()} is not after --start {args.start.isoformat()}")
    if args.cutoff:
        outside = [c.isoformat() for c in args.cutoff if not args.start < c <= args.end]
        if outside:
            raise JobError(f"cutoffs outside (start, end]: {outside}")
        return sorted(set(args.cutoff))
    times, moment = [], args.start + args.every
    while moment <= args.end:
        times.append(moment)
        moment += args.every
    if not times:
        raise JobError(f"--every {args.every} gives no cutoff in (start, end]")
    return times


def training_rows(events: DataFrame, cutoffs: list[datetime], start: datetime, lookback: timedelta,
                  horizon: timedelta, grain: str) -> DataFrame:
    """One row per (cutoff, entity active in the lookback): point-in-time features and the label, unsampled."""
    from pyspark.sql import functions as F

    spark = events.sparkSession
    entity = "user_session" if grain == "session" else "user_id"
    frame = spark.createDataFrame([(c,) for c in cutoffs], "cutoff TIMESTAMP")
    events = events.select(F.col(entity).cast("string").alias("entity_id"), "event_time", "event_type",
                           "product_id", "category_id", "category_code", "brand", "price")
    seen = F.greatest(F.lit(start), F.col("cutoff") - F.expr(f"INTERVAL {int(lookback.total_seconds())} SECONDS"))
    past = events.crossJoin(F.broadcast(frame)).where((F.col("event_time") >= seen)
                                                       & (F.col("event_time") < F.col("cutoff")))
    if grain == "session":
        past = past.where(F.col("event_type") != "purchase")
    kind = F.col("event_type")
    features = past.groupBy("cutoff", "entity_id").agg(
        F.count("*").alias("events"),
        F.sum((kind == "view").cast("int")).alias("views"),
        F.sum((kind == "cart").cast("int")).alias("carts"),
        F.sum((kind == "purchase").cast("int")).alias("purchases"),
        F.countDistinct("product_id").alias("distinct_products"),
        F.countDistinct("category_id").alias("distinct_categories"),
        F.round(F.coalesce(F.sum(F.when(kind == "cart", F.col("price"))), F.lit(0.0)), 2).alias("cart_value"),
        F.round(F.avg("price"), 4).alias("price_mean"),
        F.min("price").alias("price_min"),
        F.max("price").alias("price_max"),
        F.round(F.coalesce(F.stddev_pop("price"), F.lit(0.0)), 4).alias("price_std"),
        (F.col("cutoff").cast("long") - F.max("event_time").cast("long")).alias("seconds_since_last_event"),
        (F.col("cutoff").cast("long") - F.min("event_time").cast("long")).alias("seconds_since_first_event"),
        F.hour("cutoff").alias("cutoff_hour"),
    )
    features = features.join(affinity(past, "brand"), ["cutoff", "entity_id"], "left").join(
        affinity(past, "category_code"), ["cutoff", "entity_id"], "left")
    later = F.col("event_time") > F.col("cutoff")
    within = F.col("event_time") <= F.col("cutoff") + F.expr(f"INTERVAL {int(horizon.total_seconds())} SECONDS")
    buyers = (events.where(F.col("event_type") == "purchase").crossJoin(F.broadcast(frame)).where(later & within)
              .select("cutoff", "entity_id").distinct().withColumn("label", F.lit(1)))
    return (features.join(buyers, ["cutoff", "entity_id"], "left")
            .withColumn("label", F.coalesce("label", F.lit(0))))


def affinity(past: DataFrame, column: str) -> DataFrame:
    """Share of the entity's events on its most frequent non-null `column` value (0 when it has none)."""
    from pyspark.sql import functions as F

    per_value = past.where(F.col(column).isNotNull()).groupBy("cutoff", "entity_id", column).count()
    totals = past.groupBy("cutoff", "entity_id").count().withColumnRenamed("count", "total")
    top = per_value.groupBy("cutoff", "entity_id").agg(F.max("count").alias("top"))
    return (totals.join(top, ["cutoff", "entity_id"], "left")
            .select("cutoff", "entity_id",
                    F.round(F.coalesce(F.col("top") / F.col("total"), F.lit(0.0)), 4).alias(f"top_{column}_share")))


def sample_negatives(rows: DataFrame, rate: float, seed: int) -> DataFrame:
    """Every positive, and the negatives whose hash of (entity, cutoff, seed) falls under `rate`."""
    from pyspark.sql import functions as F

    if rate >= 1.0:
        return rows
    bucket = F.pmod(F.xxhash64("entity_id", F.col("cutoff").cast("string"), F.lit(seed)), F.lit(1_000_000))
    return rows.where((F.col("label") == 1) | (bucket < F.lit(int(rate * 1_000_000))))


def output_uri(context: RunContext, output: str | None) -> str:
    if output is None:
        return context.lake.uri(f"exports/{TRAINSET}/{context.run_id}")
    return output if "://" in output else context.lake.uri(output)


def parameters_of(args: argparse.Namespace, cutoffs: list[datetime], source_version: int) -> dict[str, Any]:
    return {
        "start": args.start.isoformat(), "end": args.end.isoformat(), "cutoffs": [c.isoformat() for c in cutoffs],
        "every": str(args.every) if args.every else None, "lookback": str(args.lookback),
        "horizon": str(args.horizon), "grain": args.grain, "format": args.format,
        "negative_rate": args.negative_rate, "seed": args.seed, "source_version": source_version,
        "mongo_collection": args.mongo_collection,
    }


def run(context: RunContext, args: argparse.Namespace) -> None:
    from pyspark.sql import functions as F

    cutoffs = cutoff_times(args)
    source_version = versioned.current_version(context.lake, EVENTS) if args.source_version is None \
        else args.source_version
    if source_version is None:
        raise JobError("retail_events has no version yet: run retail_events first")
    events = EVENTS.read(context.spark, context.lake, version=source_version)
    last = max(cutoffs) + args.horizon
    days = sorted({(args.start + timedelta(days=d)).date().isoformat()
                   for d in range((last.date() - args.start.date()).days + 1)})
    events = events.where(F.col("event_day").isin(days))
    rows = sample_negatives(training_rows(events, cutoffs, args.start, args.lookback, args.horizon, args.grain),
                            args.negative_rate, args.seed)
    rows = rows.orderBy(*KEY).coalesce(1).cache()
    total = rows.count()
    positives = rows.where(F.col("label") == 1).count()
    uri = output_uri(context, args.output)
    writer = rows.write.mode("overwrite")
    (writer.option("header", True).csv(uri) if args.format == "csv" else writer.parquet(uri))
    schema = [{"name": f.name, "type": f.dataType.simpleString()} for f in rows.schema.fields]
    parameters = parameters_of(args, cutoffs, source_version)
    manifest = {
        "dataset": TRAINSET, "run_id": context.run_id, "job": context.job, "location": uri, "format": args.format,
        "parameters": parameters, "source": {"dataset": EVENTS.name, "version": source_version},
        "schema": schema, "rows": total, "positives": positives,
        "label_rate": positives / total if total else 0.0,
    }
    HadoopFsLake(context.spark, uri).put_text(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    version = catalog.record_version(
        context.settings, TRAINSET, run_id=context.run_id, job=context.job, rows=total, location=uri,
        format=args.format, schema=schema, upstream=[manifest["source"]], parameters=parameters)
    if args.mongo_collection:
        upsert_rows(context, args.mongo_collection, rows)
    context.count("rows_out", total)
    context.count("positives", positives)
    context.log("trainset.written", location=uri, rows=total, positives=positives, version=version,
                source_version=source_version, cutoffs=len(cutoffs))
    rows.unpersist()


def upsert_rows(context: RunContext, name: str, rows: DataFrame) -> None:
    """One document per (entity, cutoff), `_id` = "<entity>|<cutoff>", carrying the run that wrote it."""
    columns = tuple(rows.columns)
    collection = Collection(name, key=KEY, id_order=("entity_id", "cutoff"), produced_by=TRAINSET,
                            fields=(*columns, "lineage_run"))
    written = sink.upsert(data_db(context.settings), collection, (
        {**row.asDict(), "cutoff": row["cutoff"].isoformat(), "lineage_run": context.run_id}
        for row in rows.toLocalIterator()))
    context.log("mongo.upserted", collection=name, documents=written)


JOB = Job(TRAINSET, build_parser, run, needs=("lake", "spark"))


if __name__ == "__main__":
    sys.exit(JOB.main())
