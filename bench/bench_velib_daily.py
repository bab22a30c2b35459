"""Benchmark the Velib batch job (`velib_daily`) on scaled history: wall time, rows/s and peak memory, with
the input in 1 and 2 partitions, then a replay of the same files (all rows deduplicated against the lake).

Each configuration runs the real job as a subprocess (`python -m cronlake.ops.run velib_daily`) on a fresh
lake, against an embedded MongoDB started on free loopback ports. Peak memory is the largest sum of RSS over
the job process and all its children (the Spark JVM), sampled every 0.1 s with psutil.

    python bench/bench_velib_daily.py                       # ~200k snapshots (one day, every 10 minutes)
    python bench/bench_velib_daily.py --every-minutes 1     # one day at one-minute resolution, ~2 million
    python bench/bench_velib_daily.py --every-minutes 1 --days 7
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.make_velib_scaled import DATA, generate  # noqa: E402
from cronlake.core import settings as settings_module  # noqa: E402
from cronlake.ops import embedded  # noqa: E402


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, int, list[dict], str]:
    """Run a command; return wall seconds, peak RSS of its process tree, its JSON log lines and its stderr."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(args, env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=err, text=True)
        watched, peak = psutil.Process(child.pid), 0
        while child.poll() is None:
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        child.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        lines = [json.loads(line) for line in out if line.startswith("{")]
        if child.returncode != 0:
            raise SystemExit(f"job failed ({child.returncode}): {err.read()[-3000:]}")
        return seconds, peak, lines, err.read()


def step(lines: list[dict], name: str) -> dict:
    return next((line for line in lines if line.get("step") == name), {})


def land(source: Path, lake: Path) -> None:
    landing = lake / "landing" / "velib"
    landing.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.glob("*.csv")):
        os.link(file, landing / file.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_velib_daily", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=1, help="local days of scaled data (default 1)")
    parser.add_argument("--every-minutes", type=int, default=10,
                        help="snapshot interval of the scaled data; 1 = ~2 million snapshots a day (default 10)")
    parser.add_argument("--partitions", default="1,2", help="input partition counts to compare (default 1,2)")
    parser.add_argument("--engine", choices=("dataframe", "sql"), default="dataframe")
    parser.add_argument("--master", default="local[2]", help="Spark master for the job (default local[2])")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the shared velib data folder (default {DATA})")
    parser.add_argument("--no-replay", action="store_true", help="skip the replay (dedupe-only) run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-velib-daily-"))
    env = {**embedded.throwaway_stack_env(work / "stack"), "CRONLAKE_SPARK_MASTER": args.master}
    stack = settings_module.load({**os.environ, **env})
    try:
        started = time.monotonic()
        rows = generate(work / "scaled", args.days, args.every_minutes, data=args.data)
        print(f"scaled data: {rows} snapshots, {args.days} day(s) every {args.every_minutes} min, "
              f"generated in {time.monotonic() - started:.0f} s", flush=True)
        embedded.up(stack)
        results = []
        for count in [int(p) for p in args.partitions.split(",")]:
            lake = work / f"lake-p{count}"
            land(work / "scaled", lake)
            run_env = {**env, "CRONLAKE_LAKE_ROOT": lake.as_uri(), "CRONLAKE_MONGO_DB": f"bench_p{count}",
                       "CRONLAKE_MONGO_OPS_DB": f"bench_p{count}_ops", "CRONLAKE_STATE_DIR": str(lake / "state")}
            command = [sys.executable, "-m", "cronlake.ops.run", "velib_daily", "--engine", args.engine,
                       "--partitions", str(count)]
            runs = [("first load", command)]
            if not args.no_replay and count == 1:
                runs.append(("replay", command))
            for label, cmd in runs:
                if label == "replay":
                    land(work / "scaled", lake)
                seconds, peak, lines, _ = run_measured(cmd, run_env)
                parsed, end = step(lines, "process.parsed"), step(lines, "end")
                results.append({"run": label, "partitions": step(lines, "input").get("partitions"),
                                "rows_in": parsed.get("rows", 0), "rows_out": parsed.get("new", 0),
                                "job_s": end.get("seconds", 0.0), "wall_s": seconds, "peak_mb": peak / 2**20})
                print(f"  done: {label}, {count} partition(s): {seconds:.1f} s", flush=True)
        print_table(results)
    finally:
        embedded.down(stack)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(results: list[dict]) -> None:
    baseline = results[0]["wall_s"]
    header = (f"{'run':<11} {'partitions':>10} {'rows in':>10} {'rows new':>10} {'job s':>8} {'wall s':>8} "
              f"{'rows/s':>10} {'peak MB':>8} {'x first':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['run']:<11} {r['partitions']!s:>10} {r['rows_in']:>10} {r['rows_out']:>10} {r['job_s']:>8.1f} "
              f"{r['wall_s']:>8.1f} {r['rows_in'] / r['wall_s']:>10.0f} {r['peak_mb']:>8.0f} "
              f"{r['wall_s'] / baseline:>8.2f}")


if __name__ == "__main__":
    sys.exit(main())
