"""Keep the long-running jobs running (job `watchdog`, every minute under cron).

For each long-running job (every `Job` declared with `long_running=True`, or only those named by `--job`): if it
does not hold its lock (`<state>/locks/<job>.lock`: the kernel frees it when the process dies), start it detached in
a new session, `python -m cronlake.ops.run JOB [ARGS]`, logging to `<state>/log/<job>.log`. If it holds the lock
but shows no sign of life for `--stale-after` seconds (default 300) — its heartbeat (`<ops db>.heartbeats`, `_id` =
the job's name: `last_batch_at` written each micro-batch, `alive_at` every trigger interval while idle) and the
lock's acquisition (the lock file's time, so a job that just started gets its grace) are all older — it is hung:
send the holder SIGTERM, SIGKILL after `--kill-wait` seconds if it still holds the lock, then start it again
(`watchdog.hung`, counted in `jobs_killed`). Otherwise do nothing. Every line reports the heartbeat's ages.

    python -m cronlake.ops.run watchdog [--job NAME ...] [-- ARGS FOR THE STARTED JOB...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from cronlake.core import jobs
from cronlake.core.jobs import Job, split_passthrough
from cronlake.core.mongo import ops_db
from cronlake.core.runner import JobError, JobLock, RunContext, utcnow
from cronlake.core.settings import CHECKOUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchdog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", action="append", default=[], metavar="NAME",
                        help="a long-running job to keep alive (repeatable; default: all of them)")
    parser.add_argument("--stale-after", type=float, default=300.0, metavar="SECONDS",
                        help="restart a job holding its lock whose last sign of life is older (default 300)")
    parser.add_argument("--kill-wait", type=float, default=30.0, metavar="SECONDS",
                        help="how long a hung job gets to exit after SIGTERM before SIGKILL (default 30)")
    parser.add_argument("job_args", nargs=argparse.REMAINDER,
                        help="arguments for the job when it has to be started (after --)")
    return parser


def watched(names: list[str]) -> list[Job]:
    long_running = [job for job in jobs.registry().values() if job.long_running]
    if not names:
        return long_running
    unknown = sorted(set(names) - {job.name for job in long_running})
    if unknown:
        raise JobError(f"not long-running jobs: {', '.join(unknown)} "
                       f"(long-running: {', '.join(job.name for job in long_running)})")
    return [job for job in long_running if job.name in names]


def start(context: RunContext, job: str, arguments: list[str]) -> int:
    log_file = context.settings.state_path / "log" / f"{job}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "cronlake.ops.run", job, *arguments],
                                   cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process.pid


def heartbeat_ages(context: RunContext, job: str) -> dict[str, float | None]:
    beat = ops_db(context.settings).heartbeats.find_one({"_id": job}) or {}
    now = utcnow()
    return {f"{name}_age_s": round((now - beat[name]).total_seconds(), 1) if beat.get(name) else None
            for name in ("last_batch_at", "alive_at")}


def silent_for(lock: JobLock, ages: dict[str, float | None]) -> float:
    """Seconds since the holder's last sign of life: its newest heartbeat or, if newer, its taking the lock."""
    try:
        locked_age = (utcnow() - datetime.fromtimestamp(lock.path.stat().st_mtime, UTC)).total_seconds()
    except OSError:
        locked_age = 0.0
    return min([locked_age, *(age for age in ages.values() if age is not None)])


def stop(lock: JobLock, pid: int, wait_s: float) -> bool:
    """SIGTERM the holder, SIGKILL it if it still holds the lock after `wait_s`; True once the lock is free."""
    for sent, grace in ((signal.SIGTERM, wait_s), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sent)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not lock.is_held():
                return True
            time.sleep(0.2)
    return not lock.is_held()


def run(context: RunContext, args: argparse.Namespace) -> None:
    _, arguments = split_passthrough(args.job_args)
    for job in watched(args.job):
        lock = JobLock(context.settings.state_path, job.name)
        ages = heartbeat_ages(context, job.name)
        if lock.is_held():
            silent = silent_for(lock, ages)
            holder = lock.holder()
            if silent <= args.stale_after or not holder.isdigit():
                context.log("watchdog.running", target=job.name, pid=holder, **ages)
                continue
            context.log("watchdog.hung", target=job.name, pid=holder, silent_s=round(silent, 1), **ages)
            if not stop(lock, int(holder), args.kill_wait):
                raise JobError(f"{job.name} (pid {holder}) still holds its lock after SIGKILL")
            context.count("jobs_killed")
        pid = start(context, job.name, arguments)
        context.count("jobs_started")
        context.log("watchdog.started", target=job.name, pid=pid, args=arguments,
                    log=str(context.settings.state_path / "log" / f"{job.name}.log"), **ages)


JOB = Job("watchdog", build_parser, run)

if __name__ == "__main__":
    sys.exit(JOB.main())
