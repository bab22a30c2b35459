"""Keep the Velib streaming job running (job `velib_stream_watchdog`, every minute under cron).

If `velib_stream` does not hold its lock (`<state>/locks/velib_stream.lock`: the kernel frees it when the process
dies), start it detached in a new session, `python -m cronlake.ops.run velib_stream [ARGS]`, logging to
`<state>/log/velib_stream.log`; otherwise do nothing. Either way, report the age of the stream's heartbeat
(`<ops db>.heartbeats`, written each micro-batch, and `alive_at` every trigger interval while idle).

    python -m cronlake.ops.run velib_stream_watchdog [-- STREAM ARGS...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from cronlake.core.mongo import ops_db
from cronlake.core.runner import JobLock, RunContext, run_job, utcnow
from cronlake.core.settings import CHECKOUT

STREAM_JOB = "velib_stream"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velib_stream_watchdog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stream_args", nargs=argparse.REMAINDER,
                        help="arguments for velib_stream when it has to be started (after --)")
    return parser


def stream_is_running(context: RunContext) -> tuple[bool, str]:
    """Probe the stream's lock without keeping it: taken means a live process holds it."""
    lock = JobLock(context.settings.state_path, STREAM_JOB)
    if lock.acquire():
        lock.release()
        return False, ""
    return True, lock.holder()


def start_stream(context: RunContext, arguments: list[str]) -> int:
    log_file = context.settings.state_path / "log" / f"{STREAM_JOB}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "cronlake.ops.run", STREAM_JOB, *arguments],
                                   cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process.pid


def heartbeat_ages(context: RunContext) -> dict[str, float | None]:
    beat = ops_db(context.settings).heartbeats.find_one({"_id": STREAM_JOB}) or {}
    now = utcnow()
    return {f"{name}_age_s": round((now - beat[name]).total_seconds(), 1) if beat.get(name) else None
            for name in ("last_batch_at", "alive_at")}


def run(context: RunContext, args: argparse.Namespace) -> None:
    arguments = [a for a in args.stream_args if a != "--"]
    running, holder = stream_is_running(context)
    ages = heartbeat_ages(context)
    if running:
        context.log("watchdog.running", pid=holder, **ages)
        return
    pid = start_stream(context, arguments)
    context.count("streams_started")
    context.log("watchdog.started", pid=pid, args=arguments,
                log=str(context.settings.state_path / "log" / f"{STREAM_JOB}.log"), **ages)


def main(argv: list[str] | None = None) -> int:
    return run_job("velib_stream_watchdog", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
