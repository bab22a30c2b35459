"""Churn replay (job `churn_replay`): the customer CSV sent row by row to Kafka at a chosen rate.

Each row becomes one message on `churn.topic(settings)` (`CRONLAKE_CHURN_TOPIC`): key = customer id, value = the
row as a JSON object of its CSV cells, as text (see `cronlake/contracts/churn.py`); the Kafka timestamp is the
produced time the stream measures latency from. Rows are paced at `--rate` messages per second (0: as fast as
possible) on a fixed schedule (`cronlake/core/kafka_replay.py`). The file is sent as it is: a row
the contract would refuse is sent too, and the stream quarantines it.

    python -m cronlake.ops.run churn_replay ../shared/data/churn/telco_customer_churn.csv [--rate 10]
        [--skip N] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from cronlake.contracts import churn
from cronlake.core import kafka_replay
from cronlake.core.jobs import Job
from cronlake.core.runner import RunContext


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows (cells as text, by header)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def build_parser() -> argparse.ArgumentParser:
    return kafka_replay.build_parser(JOB.name, __doc__, "the customer CSV (IBM Telco header)", rate=10.0)


def run(context: RunContext, args: argparse.Namespace) -> None:
    kafka_replay.send_paced(context, churn.topic(context.settings), kafka_replay.selected_rows(args, read_rows),
                            key=lambda row: row.get(churn.KEY) or "", value=lambda row: row, args=args)


JOB = Job("churn_replay", build_parser, run, needs=("kafka",))


if __name__ == "__main__":
    sys.exit(JOB.main())
