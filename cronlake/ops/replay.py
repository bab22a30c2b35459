"""Job `replay`: put archived files of one source back into landing, on purpose, so the next batch run
reprocesses them (then `scripts/backfill` recomputes the days they feed).

The files of `archive/<source>/` whose modified time falls within the days FROM..TO (inclusive, in
CRONLAKE_TIMEZONE) are moved back to `landing/<source>/` under the same name. Lake renames keep a file's
modified time, which is the time it was first written to the lake, so replaying the same days again selects
the same files. They are moved, not copied, so the archive never holds two copies of one input; a name
already present in landing is left alone and counted as `already_landed`. The run record counts the
files moved in `rows_out` and `extra.files_replayed`.

    python -m cronlake.ops.run replay --source velib --from 2024-04-17 --to 2024-04-18
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, time, timedelta

from cronlake.core.jobs import Job
from cronlake.core.lake import clean
from cronlake.core.runner import JobError, RunContext


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
    tz = context.settings.tz
    start = datetime.combine(args.first, time(), tz).timestamp()
    end = datetime.combine(args.last + timedelta(days=1), time(), tz).timestamp()
    lake = context.lake
    archived = lake.list(f"archive/{source}", recursive=True)
    chosen = [f for f in archived if start <= f.modified < end]
    context.log("replay.select", source=source, first=str(args.first), last=str(args.last),
                archived=len(archived), selected=len(chosen))
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
