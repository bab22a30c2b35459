"""Run one registered job by name: `python -m cronlake.ops.run <job> [job arguments]`.

This is the single entry point cron, the ops scripts and `spark-submit` use. Exit codes: 0 done,
1 failed, 2 bad settings or arguments, 75 skipped because another run of the same job holds its lock.
"""

from __future__ import annotations

import importlib
import sys

from cronlake.core.jobs import JOBS


def usage() -> str:
    names = "\n".join(f"  {name:<24} {module}" for name, module in sorted(JOBS.items()))
    return f"usage: python -m cronlake.ops.run <job> [--help | job arguments]\n\njobs:\n{names}\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(usage(), end="")
        return 0
    job, *arguments = argv
    if job not in JOBS:
        print(f"error: unknown job {job!r}\n{usage()}", file=sys.stderr, end="")
        return 2
    return importlib.import_module(JOBS[job]).main(arguments)


if __name__ == "__main__":
    sys.exit(main())
