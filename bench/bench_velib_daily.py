"""Benchmark the Velib batch job (`velib_daily`) against baselines in one run, then its incremental cost.

1. One day of scaled snapshots (`--every-minutes 1`: 1,985,760) from landing CSV to processed Parquet and
   MongoDB documents, each engine as a subprocess on the same files, `--rounds` times (medians printed):
   `velib_daily` as a user runs it (`--runner auto`: DuckDB on a local master), the plain DuckDB script doing
   the same phases (`bench/baseline_velib_duckdb.py`), the plain Spark script read → groupBy → write
   (`bench/baseline_velib_spark.py`) and, with `--spark-runner`, `velib_daily --runner spark`. Ratios are
   against the DuckDB baseline.
2. Incremental cost: the processed lake holds 1, 7 or 30 days (the bench day plus time-shifted copies of it),
   one new 5-minute landing file for the last day arrives, `velib_daily` runs; ratios against the 1-day lake.

Peak memory is the largest sum of RSS over the process and all its children (the Spark JVM), CPU the user +
system seconds of that tree, both sampled every 0.1 s with psutil. MongoDB is the embedded stand-in on free
loopback ports.

    python bench/bench_velib_daily.py                          # ~200k snapshots (one day, every 10 minutes)
    python bench/bench_velib_daily.py --every-minutes 1 --rounds 3
    python bench/bench_velib_daily.py --scaled /tmp/velib-scaled --spark-runner   # files from make_velib_scaled
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
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


def tree_cpu(process: psutil.Process, seen: dict[int, float]) -> None:
    """Record the user + system CPU seconds of every live member of the tree (the last value seen per pid)."""
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
            seen[member.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass


def run_measured(args: list[str], env: dict[str, str]) -> dict:
    """Run a command; return its wall and CPU seconds, peak RSS of its process tree and its JSON log lines."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(args, env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=err, text=True)
        watched, peak, cpu = psutil.Process(child.pid), 0, {}
        while child.poll() is None:
            try:
                peak = max(peak, tree_rss(watched))
                tree_cpu(watched, cpu)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        child.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        lines = [json.loads(line) for line in out if line.startswith("{")]
        if child.returncode != 0:
            raise SystemExit(f"{args[1:4]} failed ({child.returncode}): {err.read()[-3000:]}")
        return {"wall_s": seconds, "cpu_s": sum(cpu.values()), "peak_mb": peak / 2**20, "lines": lines}


def land(source: Path, lake: Path) -> None:
    landing = lake / "landing" / "velib"
    landing.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.glob("*.csv")):
        os.link(file, landing / file.name)


def job_env(env: dict[str, str], lake: Path, name: str) -> dict[str, str]:
    return {**env, "CRONLAKE_LAKE_ROOT": lake.as_uri(), "CRONLAKE_MONGO_DB": f"bench_{name}",
            "CRONLAKE_MONGO_OPS_DB": f"bench_{name}_ops", "CRONLAKE_STATE_DIR": str(lake / "state")}


JOB = [sys.executable, "-m", "cronlake.ops.run", "velib_daily"]


def one_day(work: Path, scaled: Path, env: dict[str, str], rounds: int, spark_runner: bool) -> list[dict]:
    """Each engine on the same landing files, `rounds` times, fresh outputs every time; medians."""
    engines = {
        "velib_daily (as run: --runner auto)": lambda lake: JOB,
        "DuckDB script, same phases": lambda lake: [sys.executable, "bench/baseline_velib_duckdb.py", "--input",
                                                    str(scaled), "--out", str(lake / "out")],
        "Spark script: CSV → groupBy → write": lambda lake: [sys.executable, "bench/baseline_velib_spark.py",
                                                             "--input", str(scaled), "--out", str(lake / "out")],
    }
    if spark_runner:
        engines["velib_daily --runner spark"] = lambda lake: [*JOB, "--runner", "spark"]
    measured: dict[str, list[dict]] = {name: [] for name in engines}
    for round_ in range(rounds):
        for index, (name, command) in enumerate(engines.items()):
            lake = work / f"day-{index}-{round_}"
            land(scaled, lake)
            measured[name].append(run_measured(command(lake), job_env(env, lake, f"day{index}_{round_}")))
            shutil.rmtree(lake, ignore_errors=True)
            print(f"  round {round_ + 1}: {name}: {measured[name][-1]['wall_s']:.1f} s", flush=True)
    return [{"engine": name, **{k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_mb")}}
            for name, runs in measured.items()]


def shift_days(dataset: Path, day: str, copies: int) -> None:
    """Add `copies` earlier days to the processed dataset: the bench day shifted back 1..copies days."""
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    source = dataset / f"day={day}"
    for back in range(1, copies + 1):
        folder = dataset / f"day={date.fromisoformat(day) - timedelta(days=back)}"
        folder.mkdir(parents=True)
        connection.execute(f"""COPY (SELECT * REPLACE (reported_at - INTERVAL {back} DAY AS reported_at,
                                                      observed_at - INTERVAL {back} DAY AS observed_at)
            FROM read_parquet('{source}/*.parquet')) TO '{folder}/part-history-00000.parquet' (FORMAT parquet)""")


def five_minutes(scaled: Path, target: Path) -> Path:
    """The first 5 minutes of the bench day's last hourly file, as one new landing file."""
    last = sorted(scaled.glob("*.csv"))[-1]
    with open(last, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    first = rows[1][10]
    cut = first[:14] + f"{int(first[14:16]) + 5:02d}" + first[16:]
    target.mkdir(parents=True, exist_ok=True)
    new = target / "velib-new-5-minutes.csv"
    with open(new, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([rows[0], *(r for r in rows[1:] if r[10] < cut)])
    return last


def incremental(work: Path, scaled: Path, env: dict[str, str], history: list[int], rounds: int) -> list[dict]:
    """One new 5-minute file into lakes holding 1, 7, 30 processed days; the job as a user runs it."""
    new = work / "new"
    last = five_minutes(scaled, new)
    results = []
    for days in history:
        lake = work / f"history-{days}"
        landing = lake / "landing" / "velib"
        landing.mkdir(parents=True)
        for file in sorted(scaled.glob("*.csv")):
            if file != last:
                os.link(file, landing / file.name)
        run_measured(JOB, job_env(env, lake, f"history{days}"))
        dataset = lake / "processed" / "velib_status"
        day = next(dataset.glob("day=*")).name.removeprefix("day=")
        shift_days(dataset, day, days - 1)
        runs = []
        for round_ in range(rounds):
            os.link(new / "velib-new-5-minutes.csv", landing / f"velib-new-{round_}.csv")
            runs.append(run_measured(JOB, job_env(env, lake, f"history{days}")))
        parsed = next(line for line in runs[-1]["lines"] if line.get("step") == "process.parsed")
        results.append({"days": days, "rows": parsed["rows"],
                        **{k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_mb")}})
        print(f"  incremental, {days} processed day(s): {results[-1]['wall_s']:.1f} s", flush=True)
        shutil.rmtree(lake, ignore_errors=True)
    return results


def count_rows(file: Path) -> int:
    with open(file, encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_velib_daily", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every-minutes", type=int, default=10,
                        help="snapshot interval of the scaled day; 1 = ~2 million snapshots (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each engine, medians printed (default 1)")
    parser.add_argument("--history", default="1,7,30", help="processed days for the incremental runs (default 1,7,30)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the shared velib data folder (default {DATA})")
    parser.add_argument("--scaled", type=Path, default=None,
                        help="reuse landing files written by make_velib_scaled.py (one day) instead of generating")
    parser.add_argument("--spark-runner", action="store_true",
                        help="also time velib_daily --runner spark (the cluster runner) on one node")
    parser.add_argument("--skip-day", action="store_true", help="only the incremental runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-velib-daily-"))
    env = {**embedded.throwaway_stack_env(work / "stack"), "CRONLAKE_SPARK_MASTER": args.master}
    stack = settings_module.load({**os.environ, **env})
    try:
        started = time.monotonic()
        scaled = args.scaled or work / "scaled"
        if args.scaled is None:
            generate(scaled, 1, args.every_minutes, data=args.data)
        rows = sum(count_rows(file) for file in scaled.glob("*.csv"))
        print(f"scaled data: {rows} snapshots in {scaled} ({time.monotonic() - started:.0f} s); "
              f"{os.cpu_count()} cores, master {args.master}, load average {os.getloadavg()[0]:.1f}", flush=True)
        embedded.up(stack)
        day = [] if args.skip_day else one_day(work, scaled, env, args.rounds, args.spark_runner)
        history = incremental(work, scaled, env, [int(d) for d in args.history.split(",")], args.rounds)
        print_tables(rows, args.rounds, day, history)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        embedded.down(stack)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_tables(rows: int, rounds: int, day: list[dict], history: list[dict]) -> None:
    if day:
        baseline = next(r for r in day if r["engine"].startswith("DuckDB"))
        print(f"\none day, {rows} snapshots, medians of {rounds} round(s)")
        header = f"{'engine':<38} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'x DuckDB':>9}"
        print(header + "\n" + "-" * len(header))
        for r in day:
            print(f"{r['engine']:<38} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['peak_mb']:>8.0f} "
                  f"{r['wall_s'] / baseline['wall_s']:>9.2f}")
    first = history[0]
    print(f"\none new 5-minute file ({first['rows']} snapshots) into a lake of N processed days, velib_daily as run")
    header = f"{'days':>5} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'x 1 day':>8}"
    print(header + "\n" + "-" * len(header))
    for r in history:
        print(f"{r['days']:>5} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['peak_mb']:>8.0f} "
              f"{r['wall_s'] / first['wall_s']:>8.2f}")


if __name__ == "__main__":
    sys.exit(main())
