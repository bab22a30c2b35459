"""Job `replay`: put archived files of one source back into landing, on purpose, so the next batch run
reprocesses them (then `scripts/backfill` recomputes the days they feed).

The files of `archive/<source>/` holding data of the days FROM..TO (inclusive, in CRONLAKE_TIMEZONE) are moved
back to `landing/<source>/` under the same name. A file's days are those of its data, not of its writing: the
values of the source's time column (`DATA_TIME`: velib `observed_at`, UTC, the time its batch job files the
snapshots under; retail `InvoiceDate`, local), read from the file, so a file landed days after its snapshots is
found by their days. They are moved, not copied,
so the archive never holds two copies of one input; a name already present in landing is left alone and
counted as `already_landed`. The run record counts the files moved in `rows_out` and `extra.files_replayed`.
When no archived file holds data of those days, the run fails with that message instead of reporting success.

    python -m cronlake.ops.run replay --source velib --from 2024-04-17 --to 2024-04-18
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from datetime import UTC, date, datetime, tzinfo

from cronlake.core.jobs import Job
from cronlake.core.lake import clean
from cronlake.core.runner import JobError, RunContext

# source → (CSV column with the data's time, its strptime format, whether it is UTC rather than local time)
DATA_TIME = {"velib": ("observed_at", "%Y-%m-%dT%H:%M:%SZ", True),
             "retail": ("InvoiceDate", "%m/%d/%y %H:%M", False)}


def data_days(text: str, column: str, time_format: str, is_utc: bool, tz: tzinfo) -> set[date]:
    """The local days of the time column's values in a CSV text (unparseable values are ignored)."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    if column not in header:
        return set()
    index, days = header.index(column), set()
    for cells in rows:
        try:
            moment = datetime.strptime(cells[index], time_format)
        except (IndexError, ValueError):
            continue
        days.add((moment.replace(tzinfo=UTC).astimezone(tz) if is_utc else moment).date())
    return days


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="source folder, e.g. velib or retail")
    parser.add_argument("--from", dest="first", required=True, type=day, metavar="DAY", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="last", required=True, type=day, metavar="DAY", help="last day (inclusive)")
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    if args.last < args.first:
        raise JobError(f"--to {args.last} is before --from {args.first}")
    source = clean(args.source)
    if source not in DATA_TIME:
        raise JobError(f"replay knows the data times of {', '.join(sorted(DATA_TIME))}, not {source!r}")
    column, time_format, is_utc = DATA_TIME[source]
    lake = context.lake
    archived = lake.list(f"archive/{source}", recursive=True)
    chosen = [f for f in archived
              if any(args.first <= d <= args.last for d in data_days(
                  lake.read_text(f.path), column, time_format, is_utc, context.settings.tz))]
    context.log("replay.select", source=source, first=str(args.first), last=str(args.last),
                archived=len(archived), selected=len(chosen))
    if not chosen:
        raise JobError(f"no archived file of {source} holds data ({column}) of {args.first}..{args.last}: "
                       f"{len(archived)} archived files read")
    for file in chosen:
        target = "landing/" + file.path.removeprefix("archive/")
        if lake.exists(target):
            context.count("already_landed")
            context.log("replay.skip", file=file.path, reason="a file of that name is already in landing")
            continue
        lake.move(file.path, target)
        context.count("files_replayed")
        context.count("rows_out")
        context.log("replay.file", file=file.path, to=target, bytes=file.size)


JOB = Job("replay", build_parser, run, needs=("lake",))


if __name__ == "__main__":
    sys.exit(JOB.main())
