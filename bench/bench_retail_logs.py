"""Benchmark of `retail_logs` on the real zanbil Nginx log (70,000 lines) and on a scaled copy (resampled real
lines, 4x by default), against a plain-Python baseline doing the same parse (the same regex), duplicate drop,
bot flag and sessionisation (sort, then a 30-minute gap loop) in one process, no Spark, no lake, no MongoDB.

The job runs in-process on the settings' Spark master (`local[*]`) with a throwaway embedded MongoDB and a lake in a
temporary folder; its seconds include claim, Delta versions, quality rules, MongoDB upserts and archive. The scaled
copy draws real lines with replacement, so it has more exact duplicates than the real file (both sides drop them); hit
and session counts of job and baseline are printed side by side as a check.

    python bench/bench_retail_logs.py [--scale 4] [--seed 7]
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import DATA, in_process_stack, run_in_process

from cronlake.contracts.retail_logs import BOT_PATTERN, LINE_PATTERN, SESSION_GAP_MINUTES

ZANBIL = DATA / "logs" / "zanbil_nginx_access_2019-01-26_1945-2015.log.gz"


def baseline(lines: list[str]) -> dict[str, int]:
    """Parse, drop exact duplicates, flag bots and count sessions in plain Python."""
    pattern, bots = re.compile(LINE_PATTERN), re.compile(BOT_PATTERN)
    seen: set[str] = set()
    hits, malformed, bot_hits = [], 0, 0
    for line in lines:
        if line in seen:
            continue
        seen.add(line)
        match = pattern.match(line)
        if not match:
            malformed += 1
            continue
        ip, _user, when, *_request, agent, xff = match.groups()
        client = xff.split(",")[0].strip() if xff and xff != "-" else ip
        moment = datetime.strptime(when, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
        bot_hits += bots.search(agent) is not None
        hits.append((client, agent, moment))
    hits.sort()
    sessions, previous = 0, None
    for client, agent, moment in hits:
        if (previous is None or previous[:2] != (client, agent)
                or (moment - previous[2]).total_seconds() > SESSION_GAP_MINUTES * 60):
            sessions += 1
        previous = (client, agent, moment)
    return {"hits": len(hits), "sessions": sessions, "bots": bot_hits, "malformed": malformed}


def run_job(folder: Path, lines: list[str], name: str) -> tuple[float, dict[str, int]]:
    from cronlake.contracts.retail_logs import HITS, SESSIONS
    from cronlake.core import settings as settings_module
    from cronlake.core.lake import open_lake
    from process.retail import logs as retail_logs

    seconds = run_in_process(retail_logs.JOB, folder, name, f"landing/weblogs/zanbil_{name}.log.gz",
                             gzip.compress("\n".join(lines).encode() + b"\n"))
    opened = open_lake(settings_module.load())
    hits = HITS.read_arrow(opened)
    return seconds, {"hits": hits.num_rows, "sessions": SESSIONS.read_arrow(opened).num_rows,
                     "bots": sum(hits.column("is_bot").to_pylist())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_retail_logs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=4, help="size of the scaled copy, in copies of the real file")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    real = gzip.decompress(ZANBIL.read_bytes()).decode("utf-8").splitlines()
    scaled = random.Random(args.seed).choices(real, k=len(real) * args.scale)
    print(f"{'input':<30} {'lines':>8} {'job s':>7} {'python s':>9} {'job/python':>10}  hits job/py"
          "  sessions job/py  bots job/py", flush=True)
    with in_process_stack("bench-logs-") as folder:
        for label, lines in (("real zanbil", real), (f"resampled real lines x{args.scale}", scaled)):
            started = time.perf_counter()
            want = baseline(lines)
            python_seconds = time.perf_counter() - started
            job_seconds, got = run_job(folder, lines, label.split()[0] + str(len(lines)))
            # Printed as each input finishes: the scaled run can take long on a loaded machine.
            print(f"{label:<30} {len(lines):>8} {job_seconds:>7.1f} {python_seconds:>9.1f} "
                  f"{job_seconds / python_seconds:>10.2f}  {got['hits']}/{want['hits']}  "
                  f"{got['sessions']}/{want['sessions']}  {got['bots']}/{want['bots']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
