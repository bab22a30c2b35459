"""Ad campaign replay (job `retail_ads_replay`): the KAG ad-conversion CSV sent row by row to Kafka as JSON events.

Each data row becomes one message on `retail_ads.topic(settings)` (`CRONLAKE_ADS_TOPIC`, default
`ecommerce.ad_campaigns`): key = the row's `ad_id`, value = a JSON object of the `retail_ad_event` contract
(cronlake/contracts/retail_ads.py): the row's eleven fields under snake-case names, typed (a cell the contract
refuses is sent as its text, and the landing consumer quarantines the event), plus `source_file`, `source_row`
(1-based data row of the file, header excluded) and `replayed_at`, the UTC time the event was sent.

The source has no timestamps at all: `replayed_at` is replay time, not when the ad ran, and every event says so
with `timestamp_origin: "replay"`. The file's UTF-8 BOM and CRLF line ends are read as such. Pacing, `--skip`,
`--limit` and topic creation: `cronlake/core/kafka_replay.py`.

    python -m cronlake.ops.run retail_ads_replay ../shared/data/ads/kag_conversion_data_rows_0001-0800.csv
        [--rate 20] [--skip N] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cronlake.contracts import retail_ads
from cronlake.contracts.retail_ads import AD_EVENT, CSV_COLUMNS, TIMESTAMP_ORIGIN
from cronlake.core import kafka_replay
from cronlake.core.contracts import RecordError
from cronlake.core.jobs import Job
from cronlake.core.runner import JobError, RunContext


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The file's data rows as (1-based row number, cells by header); the BOM is dropped with `utf-8-sig`."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = sorted(set(CSV_COLUMNS) - set(reader.fieldnames or ()))
        if missing:
            raise JobError(f"{path.name}: not the KAG conversion header (missing {', '.join(missing)})")
        return list(enumerate(reader, start=1))


def typed(name: str, cell: str) -> Any:
    """The cell as its contract type, or as the text it is when the contract refuses it."""
    try:
        return AD_EVENT.field(name).from_text(cell.strip())
    except RecordError:
        return cell


def event(source_file: str, number: int, cells: dict[str, str]) -> dict[str, Any]:
    """One row as an event, stamped now; a column the row lacks is left out (the consumer rejects the event)."""
    fields = {name: typed(name, cells[column]) for column, name in CSV_COLUMNS.items() if cells.get(column) is not None}
    now = datetime.now(UTC)
    return {**fields, "source_file": source_file, "source_row": number,
            "replayed_at": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "timestamp_origin": TIMESTAMP_ORIGIN}


def build_parser() -> argparse.ArgumentParser:
    return kafka_replay.build_parser(JOB.name, __doc__, "the KAG conversion CSV (ad_id, xyz_campaign_id, ... header)",
                                     rate=20.0)


def run(context: RunContext, args: argparse.Namespace) -> None:
    name = args.csv.name
    kafka_replay.send_paced(context, retail_ads.topic(context.settings), kafka_replay.selected_rows(args, read_rows),
                            key=lambda row: row[1].get(retail_ads.KEY) or "", value=lambda row: event(name, *row),
                            args=args)


JOB = Job("retail_ads_replay", build_parser, run, needs=("kafka",))


if __name__ == "__main__":
    sys.exit(JOB.main())
