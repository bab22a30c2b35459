"""Land local files into the lake's `landing/<source>/` zone, atomically, keeping their names.

A file already archived under the same name and identical content is not landed again, so a repeated
demo or cron run does not reprocess it; `--force` lands it anyway (a deliberate replay).

    python -m ingest.land_file --source retail ../shared/data/ecommerce/online_retail_2010-12-01_to_2010-12-13.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cronlake.core.jobs import Job
from cronlake.core.runner import JobError, RunContext


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="land_file", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="landing folder name, e.g. retail or velib")
    parser.add_argument("--force", action="store_true", help="land even if an identical file is archived")
    parser.add_argument("files", nargs="+", type=Path, help="local files to land")
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    lake = context.lake
    for file in args.files:
        if not file.is_file():
            raise JobError(f"no such file: {file}")
        data = file.read_bytes()
        context.count("rows_in", data.count(b"\n"))
        archived = f"archive/{args.source}/{file.name}"
        if not args.force and lake.exists(archived) and lake.read_bytes(archived) == data:
            context.log("land.skip", file=str(file), reason="identical file already archived", archived=archived)
            continue
        target = f"landing/{args.source}/{file.name}"
        lake.put_bytes(target, data)
        context.count("files_landed")
        context.log("land.file", file=str(file), to=target, bytes=len(data))


JOB = Job("land_file", build_parser, run, needs=("lake",))


if __name__ == "__main__":
    sys.exit(JOB.main())
