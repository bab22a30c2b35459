"""Scale the recorded Velib history to benchmark sizes: landing CSV files of time-shifted copies, one snapshot
of every station per `--every-minutes` (1 → ~2 million snapshots a day: ~1,400 stations × 1,440 minutes).

The 2022 history (collections every ~30-60 min) is normalised once with `ingest.velib.records`. For each
target minute, the latest recorded collection at or before the same time of the matching source day is
copied with reported_at and observed_at set to the target minute. Output day k (local Europe/Paris days from
`--start`) copies history day k+1 (wrapping after 20 days), so each bench day has a real day's daily pattern.
Files: one per hour, named `velib-scaled-<UTC hour>.csv`, with the landing CSV header.

    python bench/make_velib_scaled.py --out /tmp/velib-scaled --every-minutes 1 --days 1
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import sys
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cronlake.contracts.velib import STATION  # noqa: E402
from ingest.velib.records import RecordError, StationIndex, normalise_history_row  # noqa: E402

# The shared data folder beside the main checkout (a worktree elsewhere passes --data).
DATA = REPO.parent / "shared" / "data" / "velib"
HISTORY_NAME = "history_2022-05-12_to_2022-06-01.csv.gz"
PARIS = ZoneInfo("Europe/Paris")
FIRST_SOURCE_DAY = date(2022, 5, 13)  # the first complete local day of the history
SOURCE_DAYS = 20
TIMES = [STATION.names.index(name) for name in ("reported_at", "observed_at")]


def load_collections(data: Path = DATA) -> tuple[list[datetime], list[list[list[str]]]]:
    """The history's collections in time order: commit times, and per collection one CSV row per station."""
    index = StationIndex.from_files([data / "gbfs_2022-02-23" / "station_information.json"],
                                    [data / "api_v21_export_2024-05-28.json"])
    collections: dict[str, dict[str, list[str]]] = defaultdict(dict)
    with gzip.open(data / HISTORY_NAME, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                record = normalise_history_row(row, index)
            except RecordError:
                continue
            collections[row["snapshot_commit_time_utc"]][record["station_code"]] = STATION.to_csv_row(record)
    times = sorted(collections)
    return ([datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times],
            [list(collections[t].values()) for t in times])


def generate(out: Path, days: int = 1, every_minutes: int = 10, start: date = date(2024, 1, 8),
             data: Path = DATA) -> int:
    """Write the scaled landing files into `out`; return the number of snapshot rows written."""
    out.mkdir(parents=True, exist_ok=True)
    times, collections = load_collections(data)
    written = 0
    handles: dict[str, tuple] = {}
    for day in range(days):
        target_midnight = datetime.combine(start + timedelta(days=day), datetime.min.time(), PARIS)
        source_midnight = datetime.combine(FIRST_SOURCE_DAY + timedelta(days=day % SOURCE_DAYS),
                                           datetime.min.time(), PARIS)
        for minute in range(0, 24 * 60, every_minutes):
            target = (target_midnight + timedelta(minutes=minute)).astimezone(UTC)
            source = source_midnight + timedelta(minutes=minute)
            collection = collections[max(bisect.bisect_right(times, source) - 1, 0)]
            name = f"velib-scaled-{target:%Y%m%dT%H}.csv"
            if name not in handles:
                handle = open(out / name, "w", newline="", encoding="utf-8")
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(STATION.names)
                handles[name] = (handle, writer)
            stamp = target.strftime("%Y-%m-%dT%H:%M:%SZ")
            writer = handles[name][1]
            for cells in collection:
                writer.writerow([stamp if index in TIMES else cell for index, cell in enumerate(cells)])
            written += len(collection)
    for handle, _ in handles.values():
        handle.close()
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make_velib_scaled", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the landing CSV files into")
    parser.add_argument("--days", type=int, default=1, help="local days to generate (default 1; 7 = one week)")
    parser.add_argument("--every-minutes", type=int, default=10,
                        help="one snapshot of every station every N minutes (1 = full one-minute resolution)")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 8), help="first local day")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the shared velib data folder (default {DATA})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    rows = generate(args.out, args.days, args.every_minutes, args.start, args.data)
    size = sum(f.stat().st_size for f in args.out.glob("*.csv"))
    print(f"{rows} snapshots in {len(list(args.out.glob('*.csv')))} files, {size / 1e6:.1f} MB, "
          f"{time.monotonic() - started:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
