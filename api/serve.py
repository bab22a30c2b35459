"""Serve the lake API with uvicorn worker processes, on 127.0.0.1 unless told otherwise.

    python -m api.serve [--host 127.0.0.1] [--port 8060] [--workers 2]

Host, port and workers default to CRONLAKE_API_HOST (127.0.0.1; the compose service listens on 0.0.0.0 inside
its container, published on the host's 127.0.0.1 only), CRONLAKE_API_PORT (8060) and CRONLAKE_API_WORKERS (2).
Each worker builds the app from the settings (`app_from_settings`); the page-token secret is CRONLAKE_API_SECRET
or one kept in the state dir.
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from api.app import check_positive, create_app, server_secret
from cronlake.core import settings as settings_module
from cronlake.core.cli import EXIT_OK, one_line_errors
from cronlake.core.settings import SettingError


def app_from_settings() -> FastAPI:
    """The uvicorn factory each worker calls."""
    return create_app(settings_module.load())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", help="address to listen on (default CRONLAKE_API_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default CRONLAKE_API_PORT, 8060)")
    parser.add_argument("--workers", type=int, help="worker processes (default CRONLAKE_API_WORKERS, 2)")
    return parser


@one_line_errors(SettingError)
def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    settings = settings_module.load()
    host = args.host or settings.get("CRONLAKE_API_HOST", "127.0.0.1")
    port = args.port or int(settings.get("CRONLAKE_API_PORT", "8060", check_positive))
    workers = args.workers or int(settings.get("CRONLAKE_API_WORKERS", "2", check_positive))
    server_secret(settings)  # made once here, before the workers start, so they all sign with the same one
    uvicorn.run("api.serve:app_from_settings", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
