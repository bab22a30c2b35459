"""Start over with empty data: `scripts/reset` (`python -m cronlake.ops.reset [--yes] [--yes-really]`).

Deletes the content of the lake root, the state folder's working files (locks not held by a running job,
spool, backfill progress, code zip, anything else but the embedded servers' `run/`, `mongo/` and `log/`),
drops the data and ops MongoDB databases, and deletes the Kafka topics and consumer groups the jobs declare
they own (`Job.kafka_topics`, `Job.kafka_groups`), so a stream does not re-read old records after the reset;
other topics and groups on the broker are kept. It stops nothing: stop the stack, cron entries and the
streaming job first if they must not write again at once. The virtualenv and the checkout are never touched.

It asks for confirmation on a terminal; `--yes` answers for scripts. On an `hdfs://` lake, which may be
shared, it refuses unless `--yes-really` is given, and then deletes only the kit's zones (landing, processed,
archive, quarantine, checkpoints, models) under the root.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from cronlake.core import checks, jobs
from cronlake.core.lake import ZONES, open_lake
from cronlake.core.mongo import client
from cronlake.core.runner import JobLock
from cronlake.core.settings import CHECKOUT, SettingError, Settings, load

KEPT_STATE = ("run", "mongo", "log")  # the embedded servers are running: their pid files, data and logs stay
CHECKOUT_MARKERS = (".git", "pyproject.toml", ".venv")


class ResetError(Exception):
    """Reset refused; nothing was deleted."""


def guard(folder: Path, what: str) -> None:
    """Refuse a folder that is (or contains) a checkout or a virtualenv, or is a filesystem root."""
    folder = folder.resolve()
    if folder == Path(folder.anchor) or folder in (CHECKOUT, Path.home()) or CHECKOUT.is_relative_to(folder):
        raise ResetError(f"{what} {folder} contains the checkout or is a root folder; refusing to empty it")
    if any((folder / marker).exists() for marker in CHECKOUT_MARKERS):
        raise ResetError(f"{what} {folder} looks like a checkout or a virtualenv; refusing to empty it")


def plan(settings: Settings) -> list[str]:
    topics, groups = owned_by_jobs(settings)
    lake = (f"the kit's zones ({', '.join(ZONES)}) under {settings.lake_root}" if settings.lake_scheme == "hdfs"
            else f"everything under {settings.lake_root}")
    return [f"delete {lake}",
            f"delete the working files in {settings.state_dir} (keeping {', '.join(KEPT_STATE)}/ and held locks)",
            f"drop MongoDB databases {settings.mongo_db} and {settings.mongo_ops_db}",
            f"delete Kafka topics {', '.join(topics) or '(none)'} and consumer groups {', '.join(groups) or '(none)'} "
            f"at {settings.kafka_bootstrap}"]


def owned_by_jobs(settings: Settings) -> tuple[list[str], list[str]]:
    """The Kafka topics and consumer groups the registered jobs declare they own."""
    declared = jobs.registry().values()
    return (sorted({topic for job in declared for topic in job.kafka_topics(settings)}),
            sorted({group for job in declared for group in job.kafka_groups}))


def empty_kafka(settings: Settings) -> list[str]:
    from kafka import KafkaAdminClient

    topics, groups = owned_by_jobs(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","), client_id="cronlake-reset")
    try:  # the groups first: their offsets are on the topics
        stored = [group for group in groups if group in {found["group_id"] for found in admin.list_groups()}]
        if stored:
            admin.delete_groups(stored)
        present = [topic for topic in topics if topic in set(admin.list_topics())]
        if present:
            admin.delete_topics(present)
    finally:
        admin.close()
    return [f"kafka: deleted topics {', '.join(present) or '(none present)'}",
            f"kafka: deleted consumer groups {', '.join(stored) or '(none present)'}"]


def empty_lake(settings: Settings) -> str:
    if settings.lake_scheme == "hdfs":
        lake = open_lake(settings)
        removed = [zone for zone in ZONES if lake.delete(zone, recursive=True)]
        return f"lake: deleted {', '.join(removed) or 'nothing (already empty)'} under {settings.lake_root}"
    root = Path(urlsplit(settings.lake_root).path)
    if not root.exists():
        return f"lake: {root} does not exist"
    guard(root, "lake root")
    entries = list(root.iterdir())
    for entry in entries:
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    return f"lake: deleted {len(entries)} entries under {root}"


def empty_state(settings: Settings) -> list[str]:
    state = settings.state_path
    if not state.exists():
        return [f"state: {state} does not exist"]
    guard(state, "state folder")
    lake_root = Path(urlsplit(settings.lake_root).path) if settings.lake_scheme == "file" else None
    lines = []
    for entry in sorted(state.iterdir()):
        if entry.name in KEPT_STATE or entry == lake_root:
            continue
        if entry.name == "locks" and entry.is_dir():
            held = [lock for lock in sorted(entry.iterdir()) if JobLock(state, lock.stem).is_held()]
            for lock in entry.iterdir():
                if lock not in held:
                    lock.unlink()
            lines += [f"state: kept {lock.name}: a running job holds it" for lock in held]
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        lines.append(f"state: deleted {entry.name}")
    return lines


def drop_databases(settings: Settings) -> str:
    mongo = client(settings)
    for name in (settings.mongo_db, settings.mongo_ops_db):
        mongo.drop_database(name)
    return f"mongodb: dropped {settings.mongo_db} and {settings.mongo_ops_db}"


def confirmed(yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ResetError("no terminal to ask for confirmation; pass --yes to reset from a script")
    return input("type 'reset' to delete all of this: ").strip() == "reset"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--yes-really", action="store_true", help="required (and enough) on an hdfs:// lake")
    args = parser.parse_args(argv)
    try:
        settings = load()
        if settings.lake_scheme == "hdfs" and not args.yes_really:
            raise ResetError(f"the lake {settings.lake_root} is on HDFS, maybe shared: "
                             "pass --yes-really to delete its cronlake zones")
        checks.require_mongo(settings)
        checks.require_kafka(settings)
        print("reset will:\n" + "\n".join(f"  - {line}" for line in plan(settings)))
        if not confirmed(args.yes or args.yes_really):
            print("reset: not confirmed, nothing deleted")
            return 1
        for line in [empty_lake(settings), *empty_state(settings), drop_databases(settings), *empty_kafka(settings)]:
            print(line)
    except (ResetError, SettingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
