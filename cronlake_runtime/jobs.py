"""The registry of runnable jobs: name → module. Each module has `main(argv) -> int` that goes through
`cronlake_runtime.runner.run_job`, and can also be run as `python -m <module>`."""

from __future__ import annotations

JOBS: dict[str, str] = {
    "land_file": "ingest.land_file",
    "retail_daily": "process.retail_daily",
    "velib_produce": "ingest.velib_producer",
    "velib_land": "ingest.velib_landing",
    "velib_stream": "process.velib_stream",
    "velib_stream_watchdog": "process.velib_stream_watchdog",
    "velib_daily": "process.velib_daily",
    "velib_train": "process.velib_model",
    "lake_census": "cronlake_runtime.census",
    "replay": "cronlake_runtime.replay",
}
