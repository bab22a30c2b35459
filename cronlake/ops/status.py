"""One screen of platform health for operators: `scripts/status` (`python -m cronlake.ops.status`).

Shows whether Kafka, MongoDB and the lake answer, the last run of every registered job (status, age,
duration, error), the landing backlog and quarantine per source (read from the lake now, not from the
census), and whether each long-running job is alive (the pid in its lock file runs; age of its last heartbeat).
Exit code 1 when a service does not answer, else 0 (a failed job run is shown, not an exit code: cron
retries it on its next tick).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime

import psutil

from cronlake.core import checks, jobs
from cronlake.core.lake import open_lake
from cronlake.core.mongo import ops_db
from cronlake.core.runner import JobLock, utcnow
from cronlake.core.settings import SettingError, Settings, load
from cronlake.ops.census import census


def age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def services(settings: Settings) -> list[tuple[str, str | None]]:
    """(name, None if it answers else the reason) for Kafka, MongoDB and the lake."""
    probes: list[tuple[str, Callable[[], None]]] = [
        ("kafka", lambda: checks.require_kafka(settings, timeout_s=2)),
        ("mongodb", lambda: checks.require_mongo(settings, timeout_s=2)),
        ("lake", lambda: checks.require_lake(settings)),
    ]
    results = []
    for name, probe in probes:
        try:
            probe()
            results.append((name, None))
        except SettingError as exc:
            results.append((name, str(exc)))
    return results


def last_runs(settings: Settings) -> list[dict]:
    """The newest job_runs document of each registered job (and of any other job that has runs)."""
    collection = ops_db(settings).job_runs
    names = sorted(set(jobs.registry()) | set(collection.distinct("job")))
    found = []
    for name in names:
        run = next(iter(collection.find({"job": name}).sort("started_at", -1).limit(1)), None)
        found.append(run or {"job": name})
    return found


def long_running_line(settings: Settings, job: str, now: datetime, mongo_ok: bool) -> str:
    holder = JobLock(settings.state_path, job).holder()
    try:  # the lock file keeps the pid of the last holder: check that this pid still is that job
        running = job in " ".join(psutil.Process(int(holder)).cmdline())
    except (ValueError, psutil.Error):
        running = False
    alive = f"running (pid {holder})" if running else "NOT running (no live process of it on this host)"
    beat = ops_db(settings).heartbeats.find_one({"_id": job}) if mongo_ok else None
    heartbeat = f"last micro-batch {age(beat.get('last_batch_at'), now)}" if beat else "no heartbeat recorded"
    return f"{job}: {alive}; {heartbeat}"


def report(settings: Settings) -> tuple[bool, list[str]]:
    now = utcnow()
    lines = ["services:"]
    checked = services(settings)
    for name, problem in checked:
        lines.append(f"  {name:<10} {'ok' if problem is None else 'DOWN: ' + problem}")
    down = {name for name, problem in checked if problem}

    lines.append("last runs:")
    if "mongodb" in down:
        lines.append("  (unknown: MongoDB does not answer)")
    else:
        lines.append(f"  {'job':<24} {'status':<10} {'started':<10} {'took':>8}  error")
        for run in last_runs(settings):
            if "status" not in run:
                lines.append(f"  {run['job']:<24} {'never':<10}")
                continue
            took = f"{run['duration_s']:.1f}s" if run.get("duration_s") is not None else "-"
            error = (run.get("error") or "").splitlines()[0][:80] if run.get("error") else ""
            lines.append(f"  {run['job']:<24} {run['status']:<10} {age(run['started_at'], now):<10} {took:>8}  {error}")

    lines.append("lake (files now):")
    if "lake" in down:
        lines.append("  (unknown: the lake does not answer)")
    else:
        found = census(open_lake(settings), zones=("landing", "quarantine"))
        if not found:
            lines.append("  landing and quarantine are empty")
        for (zone, source), counts in sorted(found.items()):
            oldest = age(counts["oldest_modified"], now)
            rejects = f", {counts['reject_files']} reject files" if counts["reject_files"] else ""
            lines.append(f"  {zone + '/' + source:<24} {counts['files']:>6} files {counts['bytes']:>12} bytes"
                         f"  oldest {oldest}{rejects}")

    lines.append("streaming:")
    for job in (job for job in jobs.registry().values() if job.long_running):
        lines.append("  " + long_running_line(settings, job.name, now, "mongodb" not in down))
    return not down, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/status", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    try:
        settings = load()
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    healthy, lines = report(settings)
    print("\n".join(lines))
    if not healthy:
        print("error: a service does not answer (see services above)", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
