"""Live churn scoring (job `churn_stream`, long-running): Kafka customer rows → promoted random forest → MongoDB.

Reads `churn.topic(settings)` through the `cronlake_kafka` source. Until a first model is promoted it waits
(heartbeat alive, nothing read). At the start of each micro-batch the pointer `models/churn_rf/promoted.json` is
read; the model is loaded only when it names another version, so every row of a batch is scored by one version
and a promotion or rollback takes effect at the next batch, without a restart.

A message is checked against the customer contract (`churn.parse_message`); one that is not JSON, misses a field
or has a bad value is written with its reason, partition and offset to
`quarantine/churn/p<partition>-o<offset>.rejects.jsonl` (named by the batch's first reject, so a replayed batch
rewrites the same file), counted, and the stream goes on. Valid rows are prepared and scored like a batch
`transform` of the CSV (`process/churn/features.py`), and upserted to `churn_predictions` by customer id with
the probability, the decision at the model's threshold, drivers, model_version, partition/offset, produced_at
(the Kafka timestamp), scored_at and latency_ms.

Exactly once: progress is Spark's checkpoint (`checkpoints/churn_stream`); a batch killed before its commit runs
again after a restart, and the keyed upsert skips a customer whose stored prediction already comes from that
offset or a later one, so a replay rewrites nothing (scored_at stays the first scoring's).

    python -m cronlake.ops.run churn_stream [--trigger-seconds 1] [--until-idle SECONDS] [--max-batches N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cronlake.contracts import churn
from cronlake.core.contracts import RecordError
from cronlake.core.jobs import Job
from cronlake.core.runner import JobError, RunContext, utcnow
from cronlake.core.sink import database, upsert
from cronlake.core.streaming import Progress, add_arguments, beat, drive, kafka_messages
from process.churn import registry
from process.churn.features import TEXT_SCHEMA, drivers, prepare, score


@dataclass
class LoadedModel:
    version: str
    model: Any
    threshold: float
    driver_table: dict[str, Any]


class ModelSlot:
    """The promoted model, reloaded only when the pointer names another version."""

    def __init__(self, context: RunContext):
        self.context = context
        self.current: LoadedModel | None = None

    def wait(self, args: argparse.Namespace) -> bool:
        """Wait for a first promotion (beating, so the watchdog sees a live job); False if `--until-idle` ran out."""
        started = time.monotonic()
        if registry.read_pointer(self.context.lake) is None:
            self.context.log("model.waiting", pointer=churn.POINTER_PATH,
                             hint="run `churn_train --promote` or `churn_model promote VERSION`")
        while registry.read_pointer(self.context.lake) is None:
            if args.until_idle is not None and time.monotonic() - started >= args.until_idle:
                return False
            beat(self.context)
            time.sleep(args.trigger_seconds)
        return True

    def refresh(self) -> LoadedModel:
        from pyspark.ml import PipelineModel

        lake = self.context.lake
        pointer = registry.read_pointer(lake)
        if pointer is None:  # the pointer is replaced atomically; gone means deleted by hand: keep scoring
            if self.current is None:
                raise JobError(f"no promoted churn model at {churn.POINTER_PATH}")
            return self.current
        version = pointer["version"]
        if self.current is None or self.current.version != version:
            started = time.monotonic()
            manifest = registry.read_manifest(lake, version)
            model = PipelineModel.load(lake.uri(registry.pipeline_path(version)))
            previous = self.current.version if self.current else None
            self.current = LoadedModel(version, model, manifest["threshold"], manifest["drivers"])
            self.context.log("model.loaded", version=version, previous=previous,
                             seconds=round(time.monotonic() - started, 3))
        return self.current


def split_messages(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Messages → (the newest valid one per customer id, with its cells; the rejects with their reason)."""
    valid: dict[str, dict[str, Any]] = {}
    rejects = []
    for row in sorted(rows, key=lambda r: (r["partition"], r["offset"])):
        try:
            cells = churn.parse_message(row["value"])
        except RecordError as exc:
            rejects.append({"reason": exc.reason, "partition": row["partition"], "offset": row["offset"],
                            "key": row["key"], "value": row["value"]})
            continue
        valid[cells[churn.KEY]] = {**row, "cells": cells}
    return valid, rejects


def already_scored(db: Any, messages: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Customers whose stored prediction comes from the same partition at this offset or later (a replay)."""
    stored = db[churn.PREDICTIONS.name].find({"_id": {"$in": list(messages)}}, {"partition": 1, "offset": 1})
    return {doc["_id"] for doc in stored
            if doc.get("partition") == messages[doc["_id"]]["partition"]
            and doc.get("offset", -1) >= messages[doc["_id"]]["offset"]}


def predictions(spark: Any, loaded: LoadedModel, messages: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Score the messages' customers in one Spark job with one model version; one document per customer."""
    cells = spark.createDataFrame([tuple(m["cells"][name] for name in churn.CUSTOMER.names)
                                   for m in messages.values()], TEXT_SCHEMA)
    scored = score(loaded.model, prepare(cells)).collect()
    scored_at = utcnow()
    documents = []
    for row in scored:
        values = row.asDict()
        message = messages[values[churn.KEY]]
        probability = float(values["churn_probability"])
        documents.append({
            "customer_id": values[churn.KEY], "churn_probability": round(probability, 6),
            "predicted_churn": probability >= loaded.threshold, "model_version": loaded.version,
            "partition": message["partition"], "offset": message["offset"], "produced_at": message["timestamp"],
            "scored_at": scored_at,
            "latency_ms": round((scored_at - message["timestamp"]).total_seconds() * 1000, 1),
            "contract": values["Contract"], "tenure": values["tenure"], "monthly_charges": values["MonthlyCharges"],
            "total_charges": values["TotalCharges"], "internet_service": values["InternetService"],
            "payment_method": values["PaymentMethod"], "drivers": drivers(values, loaded.driver_table),
        })
    return documents


def quarantine(context: RunContext, rejects: list[dict[str, Any]]) -> None:
    first = rejects[0]
    path = f"{churn.QUARANTINE_PATH}/p{first['partition']}-o{first['offset']}.rejects.jsonl"
    context.lake.put_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    reasons: dict[str, int] = {}
    for reject in rejects:
        reasons[reject["reason"]] = reasons.get(reject["reason"], 0) + 1
    context.log("quarantine", path=path, records=len(rejects), reasons=reasons)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=JOB.name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, trigger_seconds=1.0, max_offsets=20000)
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    spark = context.spark
    db = database(context.settings, churn.PREDICTIONS)
    slot, progress = ModelSlot(context), Progress()
    if not slot.wait(args):
        context.log("stream.stop", reason="no promoted model", idle_seconds=args.until_idle)
        return
    slot.refresh()
    for name in ("rows_in", "rows_out", "records_quarantined", "skipped_replayed", "batches"):
        context.count(name, 0)

    def on_batch(batch: Any, batch_id: int) -> None:
        started = time.monotonic()
        loaded = slot.refresh()
        rows = batch.select("partition", "offset", "timestamp", "key", "value").toArrow().to_pylist()
        messages, rejects = split_messages(rows)
        if rejects:
            quarantine(context, rejects)
        replayed = already_scored(db, messages) if messages else set()
        fresh = {key: message for key, message in messages.items() if key not in replayed}
        documents = predictions(spark, loaded, fresh) if fresh else []
        upsert(db, churn.PREDICTIONS, documents)
        beat(context, batch_id)
        progress.batch_done(bool(rows))
        for name, amount in (("rows_in", len(rows)), ("rows_out", len(documents)), ("skipped_replayed", len(replayed)),
                             ("records_quarantined", len(rejects)), ("batches", 1)):
            context.count(name, amount)
        context.log("stream.batch", batch_id=batch_id, model_version=loaded.version, messages=len(rows),
                    scored=len(documents), replayed=len(replayed), quarantined=len(rejects),
                    seconds=round(time.monotonic() - started, 3))

    checkpoint = context.lake.uri(f"checkpoints/{JOB.name}")
    query = (kafka_messages(context, churn.topic(context.settings), args).writeStream.queryName(JOB.name)
             .foreachBatch(on_batch).option("checkpointLocation", checkpoint)
             .trigger(processingTime=f"{args.trigger_seconds} seconds").start())
    context.log("stream.started", topic=churn.topic(context.settings), checkpoint=checkpoint,
                model_version=slot.current.version if slot.current else None)
    drive(context, query, args, progress)


JOB = Job("churn_stream", build_parser, run, needs=("kafka", "lake", "spark"), long_running=True)


if __name__ == "__main__":
    sys.exit(JOB.main())
