"""Velib landing consumer (job `velib_land`, every 5 minutes under cron): Kafka → CSV files in `landing/velib/`.

A consumer in group `cronlake-velib-landing` polls the topic until nothing new arrives for `--idle-seconds` (or
`--max-records` are read), then writes one CSV file per topic-partition batch, named by its offset range so that
names sort, e.g. `landing/velib/velib.station_status-p0-o000000000100-000000000199.csv` (header = the record
FIELDS), and commits the partition's offset only once the file is durably in the lake. Malformed messages (not
JSON, missing or mistyped fields) go to `quarantine/velib/<same name>.rejects.jsonl` with reason and offset.

Exactly one file per offset range, across crashes: before writing, the batch's range is recorded in
`checkpoints/velib_land/pending/<topic>-p<N>.json`. A run that finds a pending range starting at the committed
offset re-reads exactly that range, so it writes the same name with the same content (and writes nothing if the
batch job already took the file from landing), then commits. After each run the group's lag per partition is
written to `<ops db>.kafka_lag`.

    python -m cronlake.ops.run velib_land [--max-records N] [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cronlake.contracts import velib
from cronlake.contracts.velib import STATION
from cronlake.core import sink
from cronlake.core.contracts import RecordError
from cronlake.core.jobs import Job
from cronlake.core.kafka_client import end_offsets, new_consumer
from cronlake.core.lake import Lake
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import KAFKA_LAG
from cronlake.core.protocol import keep_rejects, reject
from cronlake.core.runner import RunContext, utcnow

GROUP = "cronlake-velib-landing"
SOURCE = "velib"


@dataclass
class Batch:
    """The messages of one partition this run lands, in offset order."""

    topic: str
    partition: int
    messages: list[Any] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.messages[0].offset

    @property
    def last(self) -> int:
        return self.messages[-1].offset

    @property
    def name(self) -> str:
        return f"{self.topic}-p{self.partition}-o{self.first:012d}-{self.last:012d}.csv"


def parse_message(value: bytes | None) -> dict[str, Any]:
    """A Kafka message value → a typed record, or RecordError saying why not."""
    try:
        document = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise RecordError(f"not a JSON object: {type(document).__name__}")
    missing = [name for name in STATION.names if name not in document]
    if missing:
        raise RecordError(f"missing fields {missing}")
    return STATION.from_csv_row(STATION.to_csv_row(document))


def render(batch: Batch) -> tuple[bytes, list[dict[str, Any]]]:
    """The CSV file of a batch's valid records and the rejects of its malformed ones."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STATION.csv_header())
    rejects = []
    for message in batch.messages:
        try:
            writer.writerow(STATION.to_csv_row(parse_message(message.value)))
        except RecordError as exc:
            rejects.append(reject(exc.reason, (message.value or b"").decode("utf-8", "replace"), topic=batch.topic,
                                  partition=batch.partition, offset=message.offset))
    return buffer.getvalue().encode("utf-8"), rejects


def pending_path(topic: str, partition: int) -> str:
    return f"checkpoints/{JOB.name}/pending/{topic}-p{partition}.json"


def land(context: RunContext, lake: Lake, batch: Batch) -> None:
    """Write a batch's file and rejects, unless the batch job already took that file from landing."""
    data, rejects = render(batch)
    rows = data.count(b"\n") - 1
    target = f"landing/{SOURCE}/{batch.name}"
    taken = any(lake.exists(f"{zone}/{SOURCE}/{batch.name}") for zone in ("archive", "quarantine"))
    if taken:
        context.log("landing.already_taken", file=target)
    elif rows:
        lake.put_bytes(target, data)
        context.count("files_landed")
        context.log("landing.file", file=target, rows=rows, first=batch.first, last=batch.last)
    keep_rejects(context, lake, f"quarantine/{SOURCE}/{batch.name}", rejects)
    context.count("rows_in", len(batch.messages))
    context.count("rows_out", rows)


def group_consumer(context: RunContext, topic: str, max_poll: int) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(topic, bootstrap_servers=context.settings.kafka_bootstrap.split(","), group_id=GROUP,
                         enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=6000,
                         heartbeat_interval_ms=1000, max_poll_records=max_poll, client_id=f"cronlake-{JOB.name}")


def collect(context: RunContext, consumer: Any, lake: Lake, args: argparse.Namespace) -> dict[Any, Batch]:
    """Poll until idle or `--max-records`; a partition with a pending range gets exactly that range (or nothing,
    if this run did not read all of it)."""
    batches: dict[Any, Batch] = {}
    ends: dict[Any, int | None] = {}
    total, last_new = 0, time.monotonic()
    deadline = time.monotonic() + args.join_timeout
    while total < args.max_records:
        fetched = consumer.poll(timeout_ms=200, max_records=args.max_records - total)
        if not consumer.assignment():
            if time.monotonic() > deadline:
                break
            last_new = time.monotonic()
            continue
        for tp in consumer.assignment():
            if tp not in ends:
                ends[tp] = pending_end(context, consumer, lake, tp)
        for tp, messages in fetched.items():
            end = ends.get(tp)
            kept = [m for m in messages if end is None or m.offset <= end]
            if kept:
                batches.setdefault(tp, Batch(tp.topic, tp.partition)).messages.extend(kept)
                total += len(kept)
                last_new = time.monotonic()
        if time.monotonic() - last_new >= args.idle_seconds:
            break
    short = [tp for tp, batch in batches.items() if ends.get(tp) is not None and batch.last != ends[tp]]
    for tp in short:
        context.log("landing.pending_incomplete", partition=tp.partition, read_to=batches.pop(tp).last, end=ends[tp])
    return batches


def pending_end(context: RunContext, consumer: Any, lake: Lake, tp: Any) -> int | None:
    """The end of an unfinished range of an earlier run on `tp` (None if there is none)."""
    path = pending_path(tp.topic, tp.partition)
    if not lake.exists(path):
        return None
    pending = json.loads(lake.read_text(path))
    committed = consumer.committed(tp)
    if committed is not None and committed > pending["last"]:
        lake.delete(path)
        return None
    context.log("landing.resume_pending", partition=tp.partition, first=pending["first"], last=pending["last"])
    return pending["last"]


def commit(context: RunContext, consumer: Any, lake: Lake, batch: Batch, tp: Any) -> None:
    from kafka.structs import OffsetAndMetadata

    consumer.commit({tp: OffsetAndMetadata(batch.last + 1, None, -1)})
    lake.delete(pending_path(batch.topic, batch.partition))
    context.log("landing.committed", partition=batch.partition, offset=batch.last + 1)


def record_lag(context: RunContext, consumer: Any, topic: str) -> dict[str, int]:
    """Lag per partition = the partition's end offset − the group's committed offset."""
    from kafka import TopicPartition


    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    probe = new_consumer(context.settings.kafka_bootstrap)
    try:
        ends = end_offsets(probe, partitions) if partitions else {}
    finally:
        probe.close()
    lag = {str(tp.partition): max(ends[tp] - (consumer.committed(tp) or 0), 0) for tp in partitions}
    sink.upsert(ops_db(context.settings), KAFKA_LAG, [
        {"group": GROUP, "topic": topic, "lag": sum(lag.values()), "partitions": lag, "updated_at": utcnow()}])
    return lag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=JOB.name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-records", type=int, default=200_000, help="read at most N messages (default 200000)")
    parser.add_argument("--idle-seconds", type=float, default=3.0,
                        help="stop polling after this long without a new message (default 3)")
    parser.add_argument("--join-timeout", type=float, default=30.0,
                        help="give up if the group gives no partition within this many seconds (default 30)")
    parser.add_argument("--pause-before-commit", type=float, default=0.0, metavar="SECONDS",
                        help="crash drill: wait this long after writing the files, before committing")
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    lake = context.lake
    topic = velib.topic(context.settings)
    consumer = group_consumer(context, topic, min(args.max_records, 5000))
    try:
        batches = collect(context, consumer, lake, args)
        for batch in batches.values():
            lake.put_text(pending_path(batch.topic, batch.partition),
                          json.dumps({"first": batch.first, "last": batch.last, "file": batch.name}))
            land(context, lake, batch)
        context.log("landing.files_written", batches=len(batches))
        if batches and args.pause_before_commit:
            time.sleep(args.pause_before_commit)
        for tp, batch in batches.items():
            commit(context, consumer, lake, batch, tp)
        lag = record_lag(context, consumer, topic)
        context.log("landing.lag", group=GROUP, topic=topic, lag=sum(lag.values()), partitions=lag)
    finally:
        consumer.close(autocommit=False)


JOB = Job("velib_land", build_parser, run, needs=("kafka", "lake"), kafka_topics=velib.topics,
          kafka_groups=(GROUP,))


if __name__ == "__main__":
    sys.exit(JOB.main())
