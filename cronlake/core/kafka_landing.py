"""Kafka → landing files: the consumer every `<pipeline>_land` job is a declaration of (`KafkaLanding`).

A consumer in the declared group polls the topic until nothing new arrives for `--idle-seconds` (or
`--max-records` are read), then writes one file per topic-partition batch into `landing/<source>/`, named by its
offset range so that names sort (`<topic>-p0-o000000000100-000000000199.csv`), and commits the partition's offset
only once the file is durably in the lake. Each message must be a JSON object holding every field of the declared
record type; valid records are written as CSV (header = the record's fields) or JSON lines, malformed ones (not
JSON, missing or mistyped fields) go to `quarantine/<source>/<same name>.rejects.jsonl` with reason and offset.

Exactly one file per offset range, across crashes: before writing, the batch's range is recorded in
`checkpoints/<job>/pending/<topic>-p<N>.json`. A run that finds a pending range starting at the committed offset
re-reads exactly that range, so it writes the same name with the same content (and writes nothing if the batch job
already took the file from landing), then commits. After each run the group's lag per partition is written to
`<ops db>.kafka_lag`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cronlake.core import sink
from cronlake.core.contracts import RecordError, RecordType
from cronlake.core.jobs import Job
from cronlake.core.kafka_client import end_offsets, new_consumer
from cronlake.core.lake import Lake
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import KAFKA_LAG
from cronlake.core.protocol import keep_rejects, reject
from cronlake.core.runner import RunContext, utcnow
from cronlake.core.settings import Settings

FORMATS = ("csv", "jsonl")


@dataclass
class Batch:
    """The messages of one partition this run lands, in offset order."""

    topic: str
    partition: int
    suffix: str
    messages: list[Any] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.messages[0].offset

    @property
    def last(self) -> int:
        return self.messages[-1].offset

    @property
    def name(self) -> str:
        return f"{self.topic}-p{self.partition}-o{self.first:012d}-{self.last:012d}.{self.suffix}"


def parse_message(record: RecordType, value: bytes | None) -> dict[str, Any]:
    """A Kafka message value → a typed `record`, or RecordError saying why not."""
    try:
        document = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise RecordError(f"not a JSON object: {type(document).__name__}")
    missing = [name for name in record.names if name not in document]
    if missing:
        raise RecordError(f"missing fields {missing}")
    return record.from_csv_row(record.to_csv_row(document))


@dataclass(frozen=True)
class KafkaLanding:
    """A landing consumer: the topic (from settings) it reads in consumer `group`, the record type each message
    must hold, the lake `source` folder it lands into and the file format ("csv" or "jsonl")."""

    source: str
    group: str
    topic: Callable[[Settings], str]
    record: RecordType
    file_format: str = "csv"

    def __post_init__(self) -> None:
        if self.file_format not in FORMATS:
            raise ValueError(f"landing {self.source}: unknown file format {self.file_format!r} (known: {FORMATS})")

    def job(self, name: str, description: str | None, kafka_topics: Callable[[Settings], tuple[str, ...]]) -> Job:
        """The job that runs this consumer (`description`: the job module's docstring, for `--help`)."""
        def build_parser() -> argparse.ArgumentParser:
            return landing_parser(name, description)

        return Job(name, build_parser, self.run, needs=("kafka", "lake"), kafka_topics=kafka_topics,
                   kafka_groups=(self.group,))

    def render(self, batch: Batch) -> tuple[bytes, int, list[dict[str, Any]]]:
        """The file of a batch's valid records, how many it holds, and the rejects of its malformed ones."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if self.file_format == "csv":
            writer.writerow(self.record.csv_header())
        rows, rejects = 0, []
        for message in batch.messages:
            try:
                parsed = parse_message(self.record, message.value)
            except RecordError as exc:
                rejects.append(reject(exc.reason, (message.value or b"").decode("utf-8", "replace"),
                                      topic=batch.topic, partition=batch.partition, offset=message.offset))
                continue
            if self.file_format == "csv":
                writer.writerow(self.record.to_csv_row(parsed))
            else:
                buffer.write(json.dumps(parsed, ensure_ascii=False, separators=(",", ":")) + "\n")
            rows += 1
        return buffer.getvalue().encode("utf-8"), rows, rejects

    def land(self, context: RunContext, lake: Lake, batch: Batch) -> None:
        """Write a batch's file and rejects, unless the batch job already took that file from landing."""
        data, rows, rejects = self.render(batch)
        target = f"landing/{self.source}/{batch.name}"
        taken = any(lake.exists(f"{zone}/{self.source}/{batch.name}") for zone in ("archive", "quarantine"))
        if taken:
            context.log("landing.already_taken", file=target)
        elif rows:
            lake.put_bytes(target, data)
            context.count("files_landed")
            context.log("landing.file", file=target, rows=rows, first=batch.first, last=batch.last)
        keep_rejects(context, lake, f"quarantine/{self.source}/{batch.name}", rejects)
        context.count("rows_in", len(batch.messages))
        context.count("rows_out", rows)

    def run(self, context: RunContext, args: argparse.Namespace) -> None:
        lake = context.lake
        topic = self.topic(context.settings)
        consumer = self.group_consumer(context, topic, min(args.max_records, 5000))
        try:
            batches = self.collect(context, consumer, lake, args)
            for batch in batches.values():
                lake.put_text(pending_path(context, batch.topic, batch.partition),
                              json.dumps({"first": batch.first, "last": batch.last, "file": batch.name}))
                self.land(context, lake, batch)
            context.log("landing.files_written", batches=len(batches))
            if batches and args.pause_before_commit:
                time.sleep(args.pause_before_commit)
            for tp, batch in batches.items():
                commit(context, consumer, lake, batch, tp)
            lag = self.record_lag(context, consumer, topic)
            context.log("landing.lag", group=self.group, topic=topic, lag=sum(lag.values()), partitions=lag)
        finally:
            consumer.close(autocommit=False)

    def group_consumer(self, context: RunContext, topic: str, max_poll: int) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(topic, bootstrap_servers=context.settings.kafka_bootstrap.split(","),
                             group_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_records=max_poll,
                             client_id=f"cronlake-{context.job}")

    def collect(self, context: RunContext, consumer: Any, lake: Lake, args: argparse.Namespace) -> dict[Any, Batch]:
        """Poll until idle or `--max-records`; a partition with a pending range gets exactly that range (or
        nothing, if this run did not read all of it)."""
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
                    batches.setdefault(tp, Batch(tp.topic, tp.partition, self.file_format)).messages.extend(kept)
                    total += len(kept)
                    last_new = time.monotonic()
            if time.monotonic() - last_new >= args.idle_seconds:
                break
        short = [tp for tp, batch in batches.items() if ends.get(tp) is not None and batch.last != ends[tp]]
        for tp in short:
            context.log("landing.pending_incomplete", partition=tp.partition, read_to=batches.pop(tp).last,
                        end=ends[tp])
        return batches

    def record_lag(self, context: RunContext, consumer: Any, topic: str) -> dict[str, int]:
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
            {"group": self.group, "topic": topic, "lag": sum(lag.values()), "partitions": lag,
             "updated_at": utcnow()}])
        return lag


def pending_path(context: RunContext, topic: str, partition: int) -> str:
    return f"checkpoints/{context.job}/pending/{topic}-p{partition}.json"


def pending_end(context: RunContext, consumer: Any, lake: Lake, tp: Any) -> int | None:
    """The end of an unfinished range of an earlier run on `tp` (None if there is none)."""
    path = pending_path(context, tp.topic, tp.partition)
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
    lake.delete(pending_path(context, batch.topic, batch.partition))
    context.log("landing.committed", partition=batch.partition, offset=batch.last + 1)


def landing_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-records", type=int, default=200_000, help="read at most N messages (default 200000)")
    parser.add_argument("--idle-seconds", type=float, default=3.0,
                        help="stop polling after this long without a new message (default 3)")
    parser.add_argument("--join-timeout", type=float, default=30.0,
                        help="give up if the group gives no partition within this many seconds (default 30)")
    parser.add_argument("--pause-before-commit", type=float, default=0.0, metavar="SECONDS",
                        help="crash drill: wait this long after writing the files, before committing")
    return parser
