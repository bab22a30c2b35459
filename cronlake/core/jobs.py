"""Jobs as declared objects, and the one registry every entry point reads.

A job module declares itself once, at module level:

    JOB = Job("orders_daily", build_parser, run, needs=("lake", "spark"), takes_day=True)

    if __name__ == "__main__":
        sys.exit(JOB.main())

`needs` names what the runner checks and provides before `run(context, args)` is called: "lake" (the lake
answers; `context.lake`), "spark" (a SparkSession, `context.spark`; the lake is then reached through the Spark
driver's Hadoop FileSystem, and `scripts/submit` goes through spark-submit), "kafka" (a broker answers).
MongoDB is always checked: the run record lives there. `takes_day` says the job accepts `--day YYYY-MM-DD`
(what `scripts/backfill` passes); `long_running` marks a streaming job (a heartbeat, a watchdog, its own line in
`scripts/status`). `kafka_topics(settings)` and `kafka_groups` name the Kafka topics and consumer groups the job
owns, which `scripts/reset` deletes.

`registry()` finds every `JOB` of the modules under the stage packages (`ingest`, `process`) and the ops
package, so a new pipeline registers its jobs by being a sibling folder; nothing lists them by hand.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cronlake.core.runner import RunContext
    from cronlake.core.settings import Settings

NEEDS = ("lake", "spark", "kafka")
JOB_PACKAGES = ("ingest", "process", "cronlake.ops")


def no_topics(_settings: Settings) -> tuple[str, ...]:
    return ()


class ArgumentsRejected(ValueError):
    """A job's parser refused these arguments; the message is argparse's one line."""


@dataclass(frozen=True)
class Job:
    """One runnable job: its name, its arguments, what it does and what it needs."""

    name: str
    build_parser: Callable[[], argparse.ArgumentParser]
    run: Callable[[RunContext, argparse.Namespace], None]
    needs: tuple[str, ...] = ()
    takes_day: bool = False
    long_running: bool = False
    kafka_topics: Callable[[Settings], tuple[str, ...]] = no_topics
    kafka_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"job {self.name}: unknown needs {sorted(unknown)} (known: {', '.join(NEEDS)})")

    @property
    def uses_spark(self) -> bool:
        return "spark" in self.needs

    @property
    def description(self) -> str:
        """The first line of the job's parser description."""
        text = (self.build_parser().description or "").strip()
        return text.splitlines()[0] if text else ""

    def check_arguments(self, argv: Sequence[str]) -> argparse.Namespace:
        """Parse `argv` with the job's own parser; raise ArgumentsRejected instead of printing and exiting."""
        if any(arg in ("-h", "--help") for arg in argv):
            raise ArgumentsRejected("the arguments ask for help instead of a run")
        parser = self.build_parser()

        def refuse(message: str) -> None:
            raise ArgumentsRejected(message)

        parser.error = refuse  # type: ignore[method-assign]
        return parser.parse_args(list(argv))

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the job through the runner (lock, run record, step logs) and return its exit code."""
        from cronlake.core.runner import run_job

        return run_job(self, argv)


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`[own args] -- [args for another program]` → (own, passed through); no `--` passes nothing through."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1:]


@cache
def registry() -> dict[str, Job]:
    """Every declared job by name, found in the modules of the job packages."""
    found: dict[str, Job] = {}
    for package_name in JOB_PACKAGES:
        package = importlib.import_module(package_name)
        for module_info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
            module = importlib.import_module(module_info.name)
            job = getattr(module, "JOB", None)
            if not isinstance(job, Job):
                continue
            if job.name in found and found[job.name] is not job:
                raise ValueError(f"job name {job.name!r} declared twice ({module_info.name})")
            found[job.name] = job
    return dict(sorted(found.items()))


def get(name: str) -> Job:
    """The job of that name; KeyError naming the known jobs otherwise."""
    jobs = registry()
    if name not in jobs:
        raise KeyError(f"unknown job {name!r} (known: {', '.join(jobs)})")
    return jobs[name]
