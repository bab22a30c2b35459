"""Benchmark: produce→MongoDB latency of the churn stream at 10 and 100 messages/s, printed as a table.

Starts its own embedded stack (tansu + nx-27017) on free ports in a temporary state folder, lands the customer CSV,
trains and promotes a forest (`churn_train --promote`), runs the real `churn_stream` job as a subprocess, warms it
up, then for each rate replays the next customers with the real `churn_replay` job at that rate. A watcher polls
MongoDB every 50 ms for the customers sent: latency = the time a prediction is first seen in MongoDB − its Kafka
timestamp (`produced_at`). The last column compares each rate's p95 to the first rate's (the baseline).

    python bench/bench_churn_stream.py [--rates 10 100] [--seconds 20] [--trigger-seconds 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cronlake.core import settings as settings_module
from cronlake.ops import embedded

REPO = Path(__file__).resolve().parent.parent
CSV = REPO.parent / "shared" / "data" / "churn" / "telco_customer_churn.csv"
WARM_UP = 20


def job(env: dict[str, str], *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "cronlake.ops.run", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=out, stderr=subprocess.STDOUT)


def watch(collection, customers: list[str], deadline: float) -> list[float]:
    """Seconds from produced_at to first sight in MongoDB, for each customer seen before `deadline`."""
    pending, latencies = set(customers), []
    while pending and time.monotonic() < deadline:
        seen_at = datetime.now(UTC)
        for doc in collection.find({"_id": {"$in": list(pending)}}, {"produced_at": 1}):
            latencies.append((seen_at - doc["produced_at"]).total_seconds())
            pending.discard(doc["_id"])
        time.sleep(0.05)
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[10, 100], help="messages per second")
    parser.add_argument("--seconds", type=float, default=20, help="replay time per rate (default 20)")
    parser.add_argument("--trigger-seconds", type=float, default=1.0, help="stream micro-batch interval")
    parser.add_argument("--drain-seconds", type=float, default=60, help="max wait for the last predictions")
    args = parser.parse_args(argv)
    with CSV.open(newline="", encoding="utf-8") as handle:
        ids = [row["customerID"] for row in csv.DictReader(handle)]
    if WARM_UP + sum(int(rate * args.seconds) for rate in args.rates) > len(ids):
        parser.error(f"rates × seconds exceed the {len(ids)} customers of the CSV")

    state = Path(tempfile.mkdtemp(prefix="bench-churn-"))
    env = {**embedded.throwaway_stack_env(state), "CRONLAKE_CHURN_TOPIC": "churn.bench",
           "CRONLAKE_SPARK_MASTER": "local[2]"}
    os.environ.update(env)
    settings = settings_module.load()
    print("\n".join(embedded.up(settings)), file=sys.stderr)
    from pymongo import MongoClient

    collection = MongoClient(env["CRONLAKE_MONGO_URI"], tz_aware=True)[settings.mongo_db].churn_predictions
    rows, stream = [], None
    try:
        for setup in (["land_file", "--source", "churn", str(CSV)], ["churn_train", "--trees", "30", "--promote"]):
            if job(env, *setup, log=state / f"{setup[0]}.log").wait() != 0:
                raise SystemExit(f"{setup[0]} failed: see {state / (setup[0] + '.log')}")
        stream = job(env, "churn_stream", "--trigger-seconds", str(args.trigger_seconds), log=state / "stream.log")
        first = 0
        for rate in [0, *args.rates]:  # rate 0: the warm-up (session, model load, first batches)
            count = WARM_UP if rate == 0 else int(rate * args.seconds)
            replay = job(env, "churn_replay", str(CSV), "--rate", str(rate), "--skip", str(first),
                         "--limit", str(count), "--partitions", "2")
            latencies = watch(collection, ids[first:first + count], time.monotonic() + args.seconds + 300)
            replay.wait()
            if rate:
                rows.append((rate, count, len(latencies),
                             statistics.median(latencies), percentile(latencies, 0.95), max(latencies)))
            first += count
    finally:
        if stream is not None:
            stream.terminate()
            stream.wait(timeout=60)
        embedded.down(settings)
    print(f"\nchurn_stream produce→MongoDB latency (trigger {args.trigger_seconds:g} s, {args.seconds:g} s per rate, "
          "embedded tansu + nx-27017, Spark local[2])")
    print(f"{'target msg/s':>12} {'sent':>6} {'delivered':>9} {'p50 s':>7} {'p95 s':>7} {'max s':>7} "
          f"{'p95 / p95@' + str(rows[0][0]):>12}")
    for rate, sent, delivered, p50, p95, worst in rows:
        print(f"{rate:>12} {sent:>6} {delivered:>9} {p50:>7.2f} {p95:>7.2f} {worst:>7.2f} {p95 / rows[0][4]:>12.2f}")
    print(f"(logs: {state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
