"""Run one registered job by name: `python -m cronlake.ops.run <job> [job arguments]`.

This is the single entry point cron, the ops scripts and `spark-submit` use. Exit codes: 0 done,
1 failed, 2 bad settings or arguments, 75 skipped because another run of the same job holds its lock.
"""

from __future__ import annotations

import sys

from cronlake.core import jobs
from cronlake.core.cli import EXIT_SETTINGS


def usage() -> str:
    names = "\n".join(f"  {job.name:<24} {job.description}" for job in jobs.registry().values())
    return f"usage: python -m cronlake.ops.run <job> [--help | job arguments]\n\njobs:\n{names}\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(usage(), end="")
        return 0
    name, *arguments = argv
    try:
        job = jobs.get(name)
    except KeyError:
        print(f"error: unknown job {name!r}\n{usage()}", file=sys.stderr, end="")
        return EXIT_SETTINGS
    return job.main(arguments)


if __name__ == "__main__":
    sys.exit(main())
