"""Running a Structured Streaming query over the `cronlake_kafka` source as a long-running job.

A streaming job builds its query from `kafka_messages`, hands it to `drive`, and calls `beat` after each
micro-batch: the heartbeat document `<ops db>.heartbeats` (`_id` = job name, `last_batch_at`, `alive_at`, pid,
host, run id) is what `scripts/status` and the watchdog read. `drive` also beats between batches (`alive_at`
only) and stops the query on the job's stop conditions (`--until-idle`, `--max-batches`).
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cronlake.core import sink
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import HEARTBEATS
from cronlake.core.runner import JobError, RunContext, utcnow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.streaming import StreamingQuery


def add_arguments(parser: argparse.ArgumentParser, trigger_seconds: float, max_offsets: int) -> None:
    """The options every streaming job takes."""
    parser.add_argument("--trigger-seconds", type=float, default=trigger_seconds,
                        help=f"micro-batch interval (default {trigger_seconds:g})")
    parser.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                        help="stop after SECONDS without new data (demos, tests, benchmarks); default: run forever")
    parser.add_argument("--max-batches", type=int, default=None, help="stop after N micro-batches")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=max_offsets,
                        help=f"read at most N messages per micro-batch (default {max_offsets})")
    parser.add_argument("--starting-offsets", choices=("earliest", "latest"), default="earliest",
                        help="where a query without checkpoint starts (default earliest)")


def kafka_messages(context: RunContext, topic: str, args: argparse.Namespace) -> DataFrame:
    """The topic's messages as a streaming frame (topic, partition, offset, timestamp, key, value)."""
    from cronlake.core.kafka_source import SOURCE_NAME, KafkaDataSource

    context.spark.dataSource.register(KafkaDataSource)
    return (context.spark.readStream.format(SOURCE_NAME).option("bootstrap", context.settings.kafka_bootstrap)
            .option("topic", topic).option("startingOffsets", args.starting_offsets)
            .option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger)).load())


@dataclass
class Progress:
    """What `drive` needs to know of the batches: how many ran, and when data last came."""

    batches: int = 0
    last_data: float = field(default_factory=time.monotonic)

    def batch_done(self, had_data: bool) -> None:
        self.batches += 1
        if had_data:
            self.last_data = time.monotonic()


def beat(context: RunContext, batch_id: int | None = None) -> None:
    """The job's heartbeat: `alive_at` always, `last_batch_at` and `batch_id` after a micro-batch."""
    stamp = utcnow()
    fields: dict[str, Any] = {"_id": context.job, "alive_at": stamp, "pid": os.getpid(),
                              "host": socket.gethostname(), "run_id": context.run_id}
    if batch_id is not None:
        fields.update(last_batch_at=stamp, batch_id=batch_id)
    sink.upsert(ops_db(context.settings), HEARTBEATS, [fields])


def drive(context: RunContext, query: StreamingQuery, args: argparse.Namespace, progress: Progress) -> None:
    """Wait on the query, beating every trigger interval, until a stop condition; JobError if the query failed."""
    progress.last_data = last_beat = time.monotonic()
    try:
        while query.isActive:
            query.awaitTermination(timeout=1)
            if time.monotonic() - last_beat >= args.trigger_seconds:
                beat(context)
                last_beat = time.monotonic()
            if args.max_batches is not None and progress.batches >= args.max_batches:
                context.log("stream.stop", reason="max batches", batches=progress.batches)
                break
            # idle counts from the first planned trigger: a slow start is not idleness
            idle = time.monotonic() - progress.last_data if query.lastProgress is not None else 0.0
            if args.until_idle is not None and idle >= args.until_idle and not query.status["isDataAvailable"]:
                context.log("stream.stop", reason="idle", idle_seconds=args.until_idle, batches=progress.batches)
                break
    finally:
        query.stop()
    if query.exception() is not None:
        raise JobError(f"streaming query failed: {query.exception()}")
