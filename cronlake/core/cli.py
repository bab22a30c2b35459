"""What every command-line entry point of the kit shares: its exit codes, and bad input or settings ending in one
line on stderr (`error: …`) with exit code 2, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SETTINGS = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; cron simply tries again next time

Main = Callable[[list[str] | None], int]


def one_line_errors(*errors: type[Exception]) -> Callable[[Main], Main]:
    """Make `main(argv) -> int` report any of `errors` as `error: <message>` on stderr and return EXIT_SETTINGS."""

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def guarded(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except errors as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_SETTINGS

        return guarded

    return decorate
