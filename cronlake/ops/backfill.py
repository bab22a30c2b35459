"""Backfill a day-based job over a range of days: one runner run per day, resumable.

    python -m cronlake.ops.backfill velib_daily --from 2024-04-01 --to 2024-04-30 [-- other job args]

Each day D runs `python -m cronlake.ops.run JOB [args] --day D` in its own process (its own Spark driver,
lock and run record), oldest day first, its output appended to `<state>/log/backfill/<key>.log`. A day is
written to the progress file `<state>/backfill/<key>.json` only once its run succeeded, so after a failure,
Ctrl-C or kill, the same command continues with the first day not done; `--redo` starts the range over.
A progress bar goes to stderr. Exit codes: 0 all days done, 1 a day failed, 2 bad arguments, 75 the job's
lock is held by another run, 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from types import FrameType

from cronlake.core import jobs
from cronlake.core.cli import EXIT_LOCKED
from cronlake.core.files import JsonState
from cronlake.core.jobs import ArgumentsRejected, split_passthrough
from cronlake.core.runner import utcnow
from cronlake.core.settings import SettingError, load
from cronlake.ops.replay import day

BAR_WIDTH = 30
EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the backfill."""


class BackfillError(Exception):
    """A bad request: unknown job, a job without --day, an inverted range."""


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def check_job(name: str, job_args: list[str], sample: date) -> None:
    """The job exists, takes a day, and its own parser accepts `args --day D`."""
    try:
        job = jobs.get(name)
    except KeyError as exc:
        raise BackfillError(str(exc.args[0])) from None
    arguments = [*job_args, "--day", sample.isoformat()]
    if not job.takes_day:
        raise BackfillError(f"job {name} does not accept {' '.join(arguments)!r}: it takes no day (day-based jobs: "
                            f"{', '.join(j.name for j in jobs.registry().values() if j.takes_day)})")
    try:
        job.check_arguments(arguments)
    except ArgumentsRejected as exc:
        raise BackfillError(f"job {name} does not accept {' '.join(arguments)!r}: {exc}") from None


def key(job: str, first: date, last: date, job_args: list[str]) -> str:
    digest = hashlib.sha1("\0".join(job_args).encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job}-{first}-{last}-{digest}")


class Progress:
    """The days of one backfill that succeeded, in a small JSON state file rewritten atomically."""

    def __init__(self, path: Path, job: str, job_args: list[str]):
        self.state = JsonState(path, {"job": job, "args": job_args, "done": [], "started_at": utcnow().isoformat()})

    @property
    def done(self) -> set[str]:
        return set(self.state.value["done"])

    def mark(self, done_day: date) -> None:
        self.state.value["done"] = sorted(self.done | {done_day.isoformat()})
        self.state.value["updated_at"] = utcnow().isoformat()
        self.state.save()


def bar(done: int, total: int) -> str:
    filled = BAR_WIDTH * done // total if total else BAR_WIDTH
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_day(job: str, job_args: list[str], the_day: date, log: Path) -> int:
    """Run the job for one day in a child process; on interruption stop the child cleanly and re-raise."""
    command = [sys.executable, "-m", "cronlake.ops.run", job, *job_args, "--day", the_day.isoformat()]
    with open(log, "ab") as output:
        output.write(f"# {utcnow().isoformat()} backfill runs: {' '.join(command)}\n".encode())
        output.flush()
        # Own session: a Ctrl-C reaches only the backfill, which then stops the child exactly once.
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            return child.wait()
        except Interrupted:
            child.send_signal(signal.SIGINT)  # the runner records the run as failed: "interrupted"
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise


def backfill(job: str, first: date, last: date, job_args: list[str], redo: bool) -> int:
    if last < first:
        raise BackfillError(f"--to {last} is before --from {first}")
    check_job(job, job_args, first)
    settings = load()
    name = key(job, first, last, job_args)
    progress_file = settings.state_path / "backfill" / f"{name}.json"
    log = settings.state_path / "log" / "backfill" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if redo:
        progress_file.unlink(missing_ok=True)
    progress = Progress(progress_file, job, job_args)
    days = days_between(first, last)
    todo = [d for d in days if d.isoformat() not in progress.done]
    finished = len(days) - len(todo)
    say = sys.stderr
    if not todo:
        print(f"backfill {job}: all {len(days)} days already done ({progress_file}; --redo runs them again)",
              file=say)
        return 0
    if finished:
        print(f"backfill {job}: resuming, {finished} of {len(days)} days already done", file=say)
    print(f"backfill {job}: log {log}", file=say)
    for the_day in todo:
        print(f"\r{bar(finished, len(days))} {the_day} running...", end="", file=say, flush=True)
        started = time.monotonic()
        code = run_day(job, job_args, the_day, log)
        if code == EXIT_LOCKED:
            print(f"\nerror: another run of {job} holds its lock; rerun this backfill to continue at {the_day}",
                  file=say)
            return EXIT_LOCKED
        if code != 0:
            print(f"\nerror: {job} --day {the_day} failed (exit {code}); see {log} and job_runs; "
                  f"rerun this backfill to continue at {the_day}", file=say)
            return 1
        progress.mark(the_day)
        finished += 1
        print(f"\r{bar(finished, len(days))} {the_day} done in {time.monotonic() - started:.1f}s", file=say)
    print(f"backfill {job}: all {len(days)} days done", file=say)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/backfill", description=__doc__,
                                     usage="%(prog)s JOB --from DAY --to DAY [--redo] [-- OTHER JOB ARGS]",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", help="a job taking --day YYYY-MM-DD, e.g. velib_daily")
    parser.add_argument("--from", dest="first", required=True, type=day, metavar="DAY")
    parser.add_argument("--to", dest="last", required=True, type=day, metavar="DAY", help="inclusive")
    parser.add_argument("--redo", action="store_true", help="forget the progress of this range and start over")
    return parser


def main(argv: list[str] | None = None) -> int:
    own, job_args = split_passthrough(sys.argv[1:] if argv is None else argv)  # after `--`: for every run
    args = build_parser().parse_args(own)
    signal.signal(signal.SIGTERM, raise_interrupted)
    signal.signal(signal.SIGINT, raise_interrupted)
    try:
        return backfill(args.job, args.first, args.last, job_args, args.redo)
    except (BackfillError, SettingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"\nbackfill {args.job}: interrupted ({exc}); the same command continues where it stopped",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
