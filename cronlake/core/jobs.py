"""The registry of runnable jobs: name → module. Each module has `main(argv) -> int` that goes through
`cronlake.core.runner.run_job`, and can also be run as `python -m <module>`."""

from __future__ import annotations

JOBS: dict[str, str] = {
    "land_file": "ingest.land_file",
    "retail_daily": "process.retail.daily",
    "velib_produce": "ingest.velib.producer",
    "velib_land": "ingest.velib.landing",
    "velib_stream": "process.velib.stream",
    "velib_stream_watchdog": "cronlake.ops.watchdog",
    "velib_daily": "process.velib.daily",
    "velib_train": "process.velib.model",
    "lake_census": "cronlake.ops.census",
    "replay": "cronlake.ops.replay",
}
