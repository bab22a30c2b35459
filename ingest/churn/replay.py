"""Churn replay (job `churn_replay`): the customer CSV sent row by row to Kafka at a chosen rate.

Each row becomes one message on `churn.topic(settings)` (`CRONLAKE_CHURN_TOPIC`): key = customer id, value = the
row as a JSON object of its CSV cells, as text (see `cronlake/contracts/churn.py`); the Kafka timestamp is the
produced time the stream measures latency from. Rows are paced at `--rate` messages per second (0: as fast as
possible) on a fixed schedule, so a slow send does not lower the average rate. The file is sent as it is: a row
the contract would refuse is sent too, and the stream quarantines it.

    python -m cronlake.ops.run churn_replay ../shared/data/churn/telco_customer_churn.csv [--rate 10]
        [--skip N] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from cronlake.contracts import churn
from cronlake.core.jobs import Job
from cronlake.core.kafka_client import ensure_topic
from cronlake.core.runner import JobError, RunContext


def read_rows(path: Path, skip: int, limit: int | None) -> list[dict[str, str]]:
    """The CSV's rows (cells as text, by header), from row `skip`, at most `limit`."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[skip:None if limit is None else skip + limit]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=JOB.name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, help="the customer CSV (IBM Telco header)")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second; 0 = unpaced (default 10)")
    parser.add_argument("--skip", type=int, default=0, help="start at row N (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="send at most N rows (default: all)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic if it is created")
    parser.add_argument("--replication-factor", type=int, default=1, help="replication of a created topic")
    parser.add_argument("--kafka-timeout", type=float, default=10.0, help="seconds for one Kafka request")
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    from kafka import KafkaProducer

    if not args.csv.is_file():
        raise JobError(f"no such file: {args.csv}")
    rows = read_rows(args.csv, args.skip, args.limit)
    context.count("rows_in", len(rows))
    settings, topic = context.settings, churn.topic(context.settings)
    timeout_ms = int(args.kafka_timeout * 1000)
    created = ensure_topic(settings.kafka_bootstrap, topic, args.partitions, args.replication_factor, timeout_ms)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","), client_id="cronlake-churn-replay",
                             acks="all", linger_ms=0 if args.rate else 20, key_serializer=str.encode,
                             value_serializer=lambda cells: json.dumps(cells, separators=(",", ":")).encode("utf-8"),
                             request_timeout_ms=timeout_ms, max_block_ms=timeout_ms)
    context.log("replay.start", topic=topic, rows=len(rows), rate=args.rate, topic_created=created)
    started = time.monotonic()
    try:
        for index, row in enumerate(rows):
            if args.rate:
                delay = started + index / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topic, key=row.get(churn.KEY) or "", value=row)
        producer.flush(timeout=args.kafka_timeout + len(rows) / 100)
    finally:
        producer.close(timeout=args.kafka_timeout)
    seconds = time.monotonic() - started
    context.count("rows_out", len(rows))
    context.log("replay.sent", topic=topic, rows=len(rows), seconds=round(seconds, 3),
                rate=round(len(rows) / seconds, 1) if seconds else None)


JOB = Job("churn_replay", build_parser, run, needs=("kafka",))


if __name__ == "__main__":
    sys.exit(JOB.main())
