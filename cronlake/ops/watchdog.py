"""Keep the long-running jobs running (job `watchdog`, every minute under cron).

For each long-running job (every `Job` declared with `long_running=True`, or only those named by `--job`): if it
does not hold its lock (`<state>/locks/<job>.lock`: the kernel frees it when the process dies), start it detached in
a new session, `python -m cronlake.ops.run JOB [ARGS]`, logging to `<state>/log/<job>.log`; otherwise do nothing.
Either way, report the age of the job's heartbeat (`<ops db>.heartbeats`, `_id` = the job's name: `last_batch_at`
written each micro-batch, `alive_at` every trigger interval while idle).

    python -m cronlake.ops.run watchdog [--job NAME ...] [-- ARGS FOR THE STARTED JOB...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

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


def run(context: RunContext, args: argparse.Namespace) -> None:
    _, arguments = split_passthrough(args.job_args)
    for job in watched(args.job):
        lock = JobLock(context.settings.state_path, job.name)
        ages = heartbeat_ages(context, job.name)
        if lock.is_held():
            context.log("watchdog.running", target=job.name, pid=lock.holder(), **ages)
            continue
        pid = start(context, job.name, arguments)
        context.count("jobs_started")
        context.log("watchdog.started", target=job.name, pid=pid, args=arguments,
                    log=str(context.settings.state_path / "log" / f"{job.name}.log"), **ages)


JOB = Job("watchdog", build_parser, run)

if __name__ == "__main__":
    sys.exit(JOB.main())
