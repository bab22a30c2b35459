"""Job `lake_census`: count files and bytes per zone and source of the lake, for `scripts/status` and the dashboard.

For each of `landing/`, `quarantine/` and `archive/`, and each `<source>/` folder under it, one document
`<ops db>.lake_census` `_id`="<zone>/<source>" is upserted with files, bytes, oldest_modified and updated_at.
In quarantine, `<name>.reason.json` sidecars are not counted as files; `<name>.rejects.jsonl` files (rejected
records of otherwise archived inputs) are counted apart as `reject_files`. A source whose folder became empty
is kept with zero counts, so a drained backlog shows as 0 rather than as a stale number.

    python -m cronlake.ops.run lake_census
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.lake import Lake, LakeFile
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import LAKE_CENSUS
from cronlake.core.runner import RunContext, utcnow

ZONES = ("landing", "quarantine", "archive")



def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="lake_census", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def census(lake: Lake, zones: tuple[str, ...] = ZONES) -> dict[tuple[str, str], dict]:
    """{(zone, source): {files, bytes, reject_files, oldest_modified}} for every source folder with files."""
    found: dict[tuple[str, str], dict] = {}
    for zone in zones:
        for file in lake.list(zone, recursive=True):
            parts = file.path.split("/")
            if len(parts) < 3:  # a file directly under the zone belongs to no source
                continue
            counts = found.setdefault((zone, parts[1]), {"files": 0, "bytes": 0, "reject_files": 0,
                                                         "oldest_modified": None})
            add(counts, file)
    return found


def add(counts: dict, file: LakeFile) -> None:
    if file.path.endswith(".reason.json"):
        return
    if file.path.endswith(".rejects.jsonl"):
        counts["reject_files"] += 1
        return
    counts["files"] += 1
    counts["bytes"] += file.size
    modified = datetime.fromtimestamp(file.modified, UTC)
    if counts["oldest_modified"] is None or modified < counts["oldest_modified"]:
        counts["oldest_modified"] = modified


def run(context: RunContext, args: argparse.Namespace) -> None:
    found = census(context.lake)
    database = ops_db(context.settings)
    collection = database[LAKE_CENSUS.name]
    now = utcnow()
    documents = [{"_id": f"{zone}/{source}", "zone": zone, "source": source, **counts, "updated_at": now}
                 for (zone, source), counts in sorted(found.items())]
    known = [f"{zone}/{source}" for zone, source in found]
    emptied = collection.update_many(
        {"_id": {"$nin": known}, "zone": {"$in": list(ZONES)}},
        {"$set": {"files": 0, "bytes": 0, "reject_files": 0, "oldest_modified": None, "updated_at": now}},
    ).modified_count
    written = sink.upsert(database, LAKE_CENSUS, documents)
    for (zone, source), counts in sorted(found.items()):
        context.log("census", zone=zone, source=source, files=counts["files"], bytes=counts["bytes"])
        context.count(f"{zone}_files", counts["files"])
    context.count("rows_out", written)
    context.log("census.done", sources=written, emptied=emptied)


JOB = Job("lake_census", build_parser, run, needs=("lake",))


if __name__ == "__main__":
    sys.exit(JOB.main())
