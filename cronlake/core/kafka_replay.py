"""Replaying a file row by row into Kafka at a chosen rate: the parser, the row selection and the paced send loop
shared by the replay jobs.

Rows are paced at `--rate` messages per second (0: as fast as possible) on a fixed schedule, so a slow send does
not lower the average rate; each message's value is made when it is sent (a replay can stamp it), serialised as
compact JSON; the topic is created (`--partitions`, `--replication-factor`) if it is missing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cronlake.core.kafka_client import ensure_topic
from cronlake.core.runner import JobError, RunContext


def build_parser(prog: str, description: str | None, file_help: str, rate: float) -> argparse.ArgumentParser:
    """A replay job's parser: the file, `--rate` (default `rate`), `--skip`, `--limit`, `--partitions`,
    `--replication-factor`, `--kafka-timeout`."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, help=file_help)
    parser.add_argument("--rate", type=float, default=rate, help=f"messages per second; 0 = unpaced (default {rate:g})")
    parser.add_argument("--skip", type=int, default=0, help="start at row N (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="send at most N rows (default: all)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic if it is created")
    parser.add_argument("--replication-factor", type=int, default=1, help="replication of a created topic")
    parser.add_argument("--kafka-timeout", type=float, default=10.0, help="seconds for one Kafka request")
    return parser


def selected_rows(args: argparse.Namespace, read: Callable[[Path], Sequence[Any]]) -> Sequence[Any]:
    """The rows `read(args.csv)` gives that `--skip` and `--limit` select; JobError if there is no such file."""
    if not args.csv.is_file():
        raise JobError(f"no such file: {args.csv}")
    return read(args.csv)[args.skip:None if args.limit is None else args.skip + args.limit]


def send_paced(context: RunContext, topic: str, rows: Sequence[Any], key: Callable[[Any], str],
               value: Callable[[Any], Any], args: argparse.Namespace) -> None:
    """Send one message per row (`key(row)`, `value(row)` made at send time) at `args.rate`, counting them."""
    from kafka import KafkaProducer

    context.count("rows_in", len(rows))
    timeout_ms = int(args.kafka_timeout * 1000)
    bootstrap = context.settings.kafka_bootstrap
    created = ensure_topic(bootstrap, topic, args.partitions, args.replication_factor, timeout_ms)
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), client_id=f"cronlake-{context.job}",
                             acks="all", linger_ms=0 if args.rate else 20, key_serializer=str.encode,
                             value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"),
                             request_timeout_ms=timeout_ms, max_block_ms=timeout_ms)
    context.log("replay.start", topic=topic, rows=len(rows), rate=args.rate, topic_created=created)
    started = time.monotonic()
    try:
        for index, row in enumerate(rows):
            if args.rate:
                delay = started + index / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topic, key=key(row), value=value(row))
        producer.flush(timeout=args.kafka_timeout + len(rows) / 100)
    finally:
        producer.close(timeout=args.kafka_timeout)
    seconds = time.monotonic() - started
    context.count("rows_out", len(rows))
    context.log("replay.sent", topic=topic, rows=len(rows), seconds=round(seconds, 3),
                rate=round(len(rows) / seconds, 1) if seconds else None)
