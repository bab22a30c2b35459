"""Benchmark `velib_capacity` on the whole 21-day history, and print the planner's answer it gives.

The history is normalised with the replay reader (as `bench/bench_velib_model.py` does), landed as one file and
processed by `velib_daily` (runner auto); then `velib_capacity` computes every stored day with each runner, as a
subprocess into its own MongoDB database of the embedded stack: DuckDB (what `--runner auto` takes on one node)
and Spark (the cluster runner, here `local[2]`). Wall and CPU seconds and peak RSS of each process tree; ratios
against the DuckDB runner; both runners' documents compared.

Then the capacity figures over the whole period (the dashboard's own queries, stations observed ≥ 48 h): how
many stations were full (empty) at least 10 % of their observed time, the most often full ones, and for the same
stations the share of snapshots that were full (`velib_station_daily`), which weighs hours by how often they
were sampled.

    python bench/bench_velib_capacity.py [--history PATH] [--master local[2]]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_velib_daily import job_env, run_measured  # noqa: E402
from bench.bench_velib_model import HISTORY, normalise_history  # noqa: E402
from cronlake.contracts.velib import STATION, STATION_CAPACITY, STATION_DAILY  # noqa: E402
from cronlake.core import settings as settings_module  # noqa: E402
from cronlake.ops import embedded  # noqa: E402
from dashboard.pages.velib import capacity_queries as queries  # noqa: E402
from dashboard.store import Store  # noqa: E402

RUN = [sys.executable, "-m", "cronlake.ops.run"]
MIN_HOURS = 48


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_velib_capacity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=Path, default=HISTORY, help="the open-data CSV history (gzip)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    return parser


def land_history(history: Path, lake: Path) -> int:
    """The history as one normalised landing CSV (with its header); returns the rows landed."""
    landing = lake / "landing" / "velib"
    landing.mkdir(parents=True, exist_ok=True)
    body = lake / "records.csv"
    normalise_history(history, body)
    landed = 0
    with open(landing / "velib-history.csv", "w", encoding="utf-8", newline="") as out, \
            open(body, encoding="utf-8", newline="") as rows:
        writer = csv.writer(out)
        writer.writerow(STATION.csv_header())
        for row in csv.reader(rows):
            writer.writerow(row)
            landed += 1
    body.unlink()
    return landed


def phases(lines: list[dict]) -> tuple[float, float]:
    """Seconds from the job's `runner` step to `computed` (read + SQL + documents), then to `mongo.upserted`."""
    at = {line["step"]: datetime.fromisoformat(line["ts"]) for line in lines}
    return ((at["computed"] - at["runner"]).total_seconds(), (at["mongo.upserted"] - at["computed"]).total_seconds())


def documents(settings: settings_module.Settings) -> dict[str, dict]:
    return {d["_id"]: d for d in Store(settings).data[STATION_CAPACITY.name].find()}


def planner_answer(store: Store, daily: Store) -> None:
    """The whole period's figures from the capacity documents, with the sample-counted full share beside."""
    first, last = queries.day_bounds(store)
    rows = queries.observed_enough(queries.station_totals(store, first, last), MIN_HOURS)
    samples: dict[str, list[int]] = {}
    for doc in daily.data[STATION_DAILY.name].find({}, {"station_code": 1, "samples": 1, "zero_dock_samples": 1}):
        counted = samples.setdefault(doc["station_code"], [0, 0])
        counted[0] += doc["zero_dock_samples"]
        counted[1] += doc["samples"]
    often = queries.OFTEN
    print(f"\n{first} .. {last}: {len(rows)} stations observed >= {MIN_HOURS} h; "
          f"full >= {often:.0f} % of the time: {sum(r['full_pct'] >= often for r in rows)}, "
          f"empty >= {often:.0f} %: {sum(r['empty_pct'] >= often for r in rows)}")
    header = f"{'station':<44} {'capacity':>8} {'observed h':>10} {'full % time':>11} {'full % samples':>14}"
    print(header + "\n" + "-" * len(header))
    for row in queries.ranking(rows, "full_pct")[:10]:
        full, total = samples.get(row["station_code"], [0, 0])
        print(f"{(row['name'] or '')[:34] + ' (' + row['station_code'] + ')':<44} {row['capacity']:>8} "
              f"{row['observed_h']:>10.0f} {row['full_pct']:>11.1f} {100 * full / total if total else 0:>14.1f}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-velib-capacity-"))
    env = {**embedded.throwaway_stack_env(work / "stack"), "CRONLAKE_SPARK_MASTER": args.master}
    stack = settings_module.load({**os.environ, **env})
    lake = work / "lake"
    try:
        embedded.up(stack)
        started = time.monotonic()
        rows = land_history(args.history, lake)
        daily = run_measured([*RUN, "velib_daily"], job_env(env, lake, "daily"))
        print(f"history: {rows} records landed and processed by velib_daily "
              f"in {time.monotonic() - started:.0f} s "
              f"({daily['wall_s']:.0f} s for the job); {os.cpu_count()} cores, master {args.master}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        measured, found = {}, {}
        for runner in ("duckdb", "spark"):
            run_env = {**job_env(env, lake, "daily"), "CRONLAKE_MONGO_DB": f"bench_capacity_{runner}"}
            measured[runner] = run_measured([*RUN, "velib_capacity", "--runner", runner], run_env)
            found[runner] = documents(settings_module.load({**os.environ, **run_env}))
            print(f"  velib_capacity --runner {runner}: {measured[runner]['wall_s']:.1f} s, "
                  f"{len(found[runner])} documents", flush=True)
        header = (f"{'velib_capacity, every day':<30} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'x DuckDB':>9} "
                  f"{'compute s':>10} {'upsert s':>9}")
        print("\n" + header + "\n" + "-" * len(header))
        for runner, result in measured.items():
            compute, upsert = phases(result["lines"])
            print(f"{'--runner ' + runner:<30} {result['wall_s']:>8.1f} {result['cpu_s']:>8.1f} "
                  f"{result['peak_mb']:>8.0f} {result['wall_s'] / measured['duckdb']['wall_s']:>9.2f} "
                  f"{compute:>10.1f} {upsert:>9.1f}")
        print(f"documents: {len(found['duckdb'])}; identical for both runners: {found['duckdb'] == found['spark']}")
        daily_settings = settings_module.load({**os.environ, **job_env(env, lake, "daily")})
        planner_answer(Store(settings_module.load({**os.environ, **job_env(env, lake, "daily"),
                                                   "CRONLAKE_MONGO_DB": "bench_capacity_duckdb"})),
                       Store(daily_settings))
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        embedded.down(stack)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
