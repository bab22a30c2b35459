"""Shared pieces of the retail job benchmarks: a throwaway embedded stack with its own lake, running a job the way
a user does (a `cronlake.ops.run` subprocess, timed) or in this process on a fresh lake (timed apart from the Spark
session's start), and the line that says what machine the numbers come from.

Imported by the `bench/bench_*.py` scripts that run from the checkout (`python bench/bench_x.py`): it puts the
checkout first on `sys.path`, so the scripts import cronlake as it is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

from cronlake.core import settings as settings_module  # noqa: E402
from cronlake.core.jobs import Job  # noqa: E402
from cronlake.ops import embedded  # noqa: E402


@contextmanager
def throwaway_stack(prefix: str, master: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A temporary work folder and the settings of a private embedded stack (MongoDB, Kafka) with its lake under
    it, started for the block and removed after; yields (work folder, settings as environment variables)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    env = {**embedded.throwaway_stack_env(work / "stack"), "CRONLAKE_SPARK_MASTER": master,
           "CRONLAKE_LAKE_ROOT": (work / "lake").as_uri(), "CRONLAKE_STATE_DIR": str(work / "state")}
    stack = settings_module.load({**os.environ, **env})
    embedded.up(stack)
    try:
        yield work, env
    finally:
        embedded.down(stack)
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def in_process_stack(prefix: str) -> Iterator[Path]:
    """`throwaway_stack` on the settings' Spark master, its settings made this process's environment, so that jobs
    run here (`run_in_process`) use it; yields the work folder."""
    with throwaway_stack(prefix, settings_module.load().spark_master) as (work, env):
        os.environ.update(env)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        yield work


def run_in_process(job: Job, folder: Path, name: str, landing_file: str, data: bytes) -> float:
    """Land `data` as `landing_file` (a lake path under `landing/`) in a lake of its own, `folder/name`, with its
    own state folder and MongoDB databases, point this process's settings at them, and run `job` here; returns its
    wall seconds."""
    lake = folder / name
    target = lake / landing_file
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    os.environ.update({"CRONLAKE_LAKE_ROOT": lake.as_uri(), "CRONLAKE_STATE_DIR": str(folder / f"state-{name}"),
                       "CRONLAKE_MONGO_DB": f"bench_{name}", "CRONLAKE_MONGO_OPS_DB": f"bench_{name}_ops"})
    started = time.perf_counter()
    if job.main([]) != 0:
        raise SystemExit(f"{job.name} failed")
    return time.perf_counter() - started


def run_job(job: str, env: dict[str, str]) -> float:
    """Run `job` as cron does (its own process, so Spark's start is counted) and return its wall seconds."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cronlake.ops.run", job], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{job} failed: {done.stderr[-3000:]}")
    return time.monotonic() - started


def machine_line(master: str) -> str:
    return f"\n{os.cpu_count()} cores, master {master}, load average {os.getloadavg()[0]:.1f}"
