"""Benchmark of the Velib producer: wall time and peak RSS of `velib_produce` runs (each a new process, as
under cron) replaying the real v2.1 export (~1,470 stations) into the embedded broker this script starts on
free ports with a temporary state dir.

Columns: wall seconds of the process, seconds inside the job (the runner's own measure, without interpreter
start, imports and the MongoDB run record), peak RSS (VmHWM), records sent.
Cases: `baseline` (`velib_produce --help`: interpreter and imports, no work), `first run` (every station is
sent), `second run` (same snapshot again: everything is skipped as a duplicate). Ratios are against the
baseline of the same invocation.

    python bench/bench_producer.py [--copies K] [--repeat R]

`--copies K` replays K copies of the export with distinct station codes (K × ~1,470 stations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPORT = REPO.parent / "shared" / "data" / "velib" / "api_v21_export_2024-05-28.json"
sys.path.insert(0, str(REPO))



def high_water_mib(pid: int) -> float | None:
    """VmHWM of a running process: its peak RSS since its exec (rusage's ru_maxrss would also count the
    bench's own memory, copied into the child at fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def timed_run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; return (seconds, peak RSS in MiB sampled every 5 ms, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        process = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=err, text=True)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, high_water_mib(process.pid) or 0.0)
            time.sleep(0.005)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({process.returncode}):\n{err.read()[-2000:]}")
        return seconds, peak, out.read()


def job_summary(stdout: str) -> tuple[int, float]:
    """(records sent, seconds inside the job as the runner measured them) from the producer's end line."""
    for line in reversed(stdout.splitlines()):
        entry = json.loads(line)
        if entry.get("step") == "end":
            return int(entry["rows_out"]), float(entry["seconds"])
    raise SystemExit("no end line in the producer output")


def write_replay(path: Path, copies: int) -> int:
    stations = json.loads(EXPORT.read_text(encoding="utf-8"))
    records = [{**raw, "stationcode": raw["stationcode"] + (f"-{copy}" if copy else "")}
               for copy in range(copies) for raw in stations]
    path.write_text(json.dumps(records), encoding="utf-8")
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=1, help="copies of the export to replay (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="measure each case R times, report the median")
    args = parser.parse_args(argv)

    from cronlake.core import settings
    from cronlake.ops import embedded

    with tempfile.TemporaryDirectory(prefix="bench-producer-") as folder:
        root = Path(folder)
        stack_env = embedded.throwaway_stack_env(root)
        configured = settings.load({**os.environ, **stack_env})
        embedded.up(configured)
        try:
            replay = root / "replay.json"
            stations = write_replay(replay, args.copies)
            command = [sys.executable, "-m", "cronlake.ops.run", "velib_produce"]
            results: dict[str, list[tuple[float, float, int, float]]] = {}
            for attempt in range(args.repeat):
                env = {**os.environ, **stack_env, "CRONLAKE_STATE_DIR": str(root / f"state-{attempt}"),
                       "CRONLAKE_VELIB_TOPIC": f"velib.bench{attempt}"}
                seconds, peak, _ = timed_run([*command, "--help"], env)
                results.setdefault("baseline (--help)", []).append((seconds, peak, 0, 0.0))
                for case in ("first run", "second run"):
                    seconds, peak, stdout = timed_run([*command, "--source", "replay", "--replay-file", str(replay)],
                                                      env)
                    results.setdefault(case, []).append((seconds, peak, *job_summary(stdout)))
        finally:
            embedded.down(configured)

    base_s = statistics.median(r[0] for r in results["baseline (--help)"])
    base_mb = statistics.median(r[1] for r in results["baseline (--help)"])
    print(f"velib_produce, replay of {stations} stations, median of {args.repeat} (each run a new process)")
    print(f"{'case':<20} {'seconds':>8} {'x base':>7} {'in job s':>9} {'peak RSS MiB':>13} {'x base':>7} {'sent':>6}")
    for case, rows in results.items():
        seconds = statistics.median(r[0] for r in rows)
        in_job = statistics.median(r[3] for r in rows)
        peak = statistics.median(r[1] for r in rows)
        sent = rows[-1][2]
        print(f"{case:<20} {seconds:>8.2f} {seconds / base_s:>7.2f} {in_job:>9.2f} {peak:>13.1f} "
              f"{peak / base_mb:>7.2f} {sent:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
