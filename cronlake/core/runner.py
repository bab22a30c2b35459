"""The job runner: every ingest script and Spark job starts here.

`run_job` parses the job's arguments (so `--help` never takes a lock), takes a per-job lock (a second
concurrent run exits at once with EXIT_LOCKED), records the run in MongoDB (`<ops db>.job_runs`), logs one
JSON line per step to stdout, and turns errors into one clear line and a non-zero exit code. SIGTERM (a watchdog,
`kill`, a container stop) ends the job like an error: the run is recorded `failed` with "terminated (SIGTERM)".
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cronlake.core import checks, sink
from cronlake.core import settings as settings_module
from cronlake.core.cli import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_SETTINGS
from cronlake.core.lake import Lake, LakeError, open_lake, spark_lake
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import COUNTERS, JOB_RUNS
from cronlake.core.settings import SettingError, Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cronlake.core.jobs import Job




class JobError(Exception):
    """A failure the job explains itself: logged as one line, no traceback."""


class Terminated(BaseException):
    """SIGTERM reached the job (a BaseException, so no `except Exception` in a job swallows it)."""


def raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(f"terminated ({signal.Signals(signum).name})")


def utcnow() -> datetime:
    return datetime.now(UTC)


def log_line(stream: IO[str], **fields: Any) -> None:
    stream.write(json.dumps({"ts": utcnow().isoformat(timespec="milliseconds"), **fields}, default=str) + "\n")
    stream.flush()


@dataclass
class RunContext:
    """What a running job sees: its settings, run id, counters, a step logger, and its lake and Spark session.

    The lake backend follows the job's declared needs, once: a Spark job reaches the lake through the Spark
    driver's Hadoop FileSystem (same files, same calls on file:// and hdfs://), any other job through plain Python.
    """

    job: str
    run_id: str
    settings: Settings
    needs: tuple[str, ...] = ()
    counters: Counter = field(default_factory=Counter)
    output: IO[str] = sys.stdout
    _spark: SparkSession | None = None
    _owns_spark: bool = False
    _lake: Lake | None = None

    def log(self, step: str, **fields: Any) -> None:
        log_line(self.output, job=self.job, run=self.run_id, step=step, **fields)

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    @property
    def run_uuid(self) -> str:
        """The run id as a UUID (derived, stable), for systems that need one, such as OpenLineage."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cronlake:{self.run_id}"))

    @property
    def spark(self) -> SparkSession:
        if "spark" not in self.needs:
            raise JobError(f"{self.job} does not declare the need 'spark' in its Job")
        if self._spark is None:
            from pyspark.sql import SparkSession

            from cronlake.core.spark import get_session

            self._owns_spark = SparkSession.getActiveSession() is None
            started = time.monotonic()
            self._spark = get_session(self.settings, f"cronlake-{self.job}")
            self.log("spark.started", master=self.settings.spark_master, seconds=round(time.monotonic() - started, 1))
        return self._spark

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            self._lake = spark_lake(self.spark, self.settings) if "spark" in self.needs else open_lake(self.settings)
        return self._lake

    def close(self) -> None:
        """Stop Spark if this run started it (a session handed in by a notebook or a test stays up)."""
        if self._spark is not None and self._owns_spark:
            self._spark.stop()
        self._spark = None
        self._lake = None


class JobLock:
    """An exclusive `flock` on `<state>/locks/<job>.lock`; the kernel drops it if the process dies."""

    def __init__(self, state_dir: Path, job: str):
        self.path = state_dir / "locks" / f"{job}.lock"
        self.handle: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return True

    def is_held(self) -> bool:
        """Whether a live process holds the lock now (probed without keeping it)."""
        if self.acquire():
            self.release()
            return False
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


class RunRecords:
    """`job_runs` documents: one per run, inserted at start, completed at the end."""

    def __init__(self, settings: Settings):
        self.collection = ops_db(settings)[JOB_RUNS.name]

    def ensure_indexes(self) -> None:
        sink.ensure_indexes(self.collection.database, JOB_RUNS)

    @staticmethod
    def new_record(job: str, run_id: str, arguments: list[str], status: str, error: str | None) -> dict[str, Any]:
        now = utcnow()
        return {
            "_id": run_id, "job": job, "args": arguments, "host": socket.gethostname(), "pid": os.getpid(),
            "started_at": now, "ended_at": None if status == "running" else now, "status": status,
            **{name: 0 for name in COUNTERS}, "error": error,
        }

    def start(self, job: str, run_id: str, arguments: list[str]) -> None:
        self.collection.insert_one(self.new_record(job, run_id, arguments, "running", None))

    def mark_dead_runs(self, job: str, current_run: str) -> int:
        """Runs of `job` still 'running' while we hold its lock died without ending (killed, host crash)."""
        result = self.collection.update_many(
            {"job": job, "status": "running", "_id": {"$ne": current_run}},
            {"$set": {"status": "died", "ended_at": utcnow(), "error": "process ended without recording an end"}},
        )
        return result.modified_count

    def finish(self, run_id: str, status: str, counters: Counter, error: str | None, started: float) -> None:
        self.collection.update_one(
            {"_id": run_id},
            {
                "$set": {
                    "status": status,
                    "ended_at": utcnow(),
                    "duration_s": round(time.monotonic() - started, 3),
                    "error": error,
                    **{name: int(counters.get(name, 0)) for name in COUNTERS},
                    "extra": {k: v for k, v in counters.items() if k not in COUNTERS},
                }
            },
        )

    def record_skip(self, job: str, run_id: str, arguments: list[str], holder: str) -> None:
        error = f"another run (pid {holder}) holds the lock"
        self.collection.insert_one(self.new_record(job, run_id, arguments, "skipped", error))


def run_job(job: Job, argv: Sequence[str] | None = None) -> int:
    """Run one declared job end to end and return the process exit code.

    The services the job needs are checked before it starts (MongoDB always: the run record lives there).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parsed = job.build_parser().parse_args(arguments)
    run_id = f"{job.name}-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    try:
        settings = settings_module.load()
        checks.require_mongo(settings)
        if {"lake", "spark"} & set(job.needs):
            checks.require_lake(settings)
        if "kafka" in job.needs:
            checks.require_kafka(settings)
    except SettingError as exc:
        log_line(sys.stdout, job=job.name, run=run_id, step="error", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETTINGS

    records = RunRecords(settings)
    lock = JobLock(settings.state_path, job.name)
    if not lock.acquire():
        holder = lock.holder()
        records.record_skip(job.name, run_id, arguments, holder)
        log_line(sys.stdout, job=job.name, run=run_id, step="skipped", reason="locked", holder=holder)
        print(f"{job.name}: another run is in progress (pid {holder}); this one exits without doing anything",
              file=sys.stderr)
        return EXIT_LOCKED

    context = RunContext(job=job.name, run_id=run_id, settings=settings, needs=job.needs)
    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        records.ensure_indexes()
        records.start(job.name, run_id, arguments)
        dead = records.mark_dead_runs(job.name, run_id)
        context.log("start", args=arguments, host=socket.gethostname(), pid=os.getpid(), dead_runs_closed=dead)
        job.run(context, parsed)
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then reported in one line
        one_line = JobError | SettingError | LakeError | Terminated
        message = str(exc) if isinstance(exc, one_line) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        if not isinstance(exc, one_line | KeyboardInterrupt):
            traceback.print_exc(file=sys.stderr)
        context.log("failed", error=message, **dict(context.counters))
        records.finish(run_id, "failed", context.counters, message, started)
        print(f"{job.name}: failed: {message}", file=sys.stderr)
        return EXIT_SETTINGS if isinstance(exc, SettingError) else EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        context.close()
        lock.release()
    records.finish(run_id, "succeeded", context.counters, None, started)
    context.log("end", status="succeeded", seconds=round(time.monotonic() - started, 3), **dict(context.counters))
    return EXIT_OK
