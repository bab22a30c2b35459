"""End-to-end latency of the Velib live pipeline: produce to Kafka → visible in MongoDB `velib_live_station`.

Starts its own embedded stack (tansu + nx-27017) on free ports in a temporary state folder, runs the real
`velib_stream` job as a subprocess (`--until-idle`), then for each rate produces station records for
`--seconds` seconds: `rate` stations (real stations of the 2024-05-28 export, copied with suffixed codes past
1,471), each sending one snapshot per second with `reported_at` = `observed_at` = the current second. A watcher
polls MongoDB every 100 ms; a record counts as delivered when its station's document shows a `latest.reported_at`
at least as new, and its latency is that observation time minus its send time. A few warm-up records go through
first, so the JVM and Python workers' start is not measured.

    python bench/bench_stream.py [--rates 25 2000] [--seconds 20] [--trigger-seconds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path

from cronlake.core import settings as settings_module
from cronlake.ops import embedded
from ingest.velib.records import normalise_api_record

REPO = Path(__file__).resolve().parent.parent

EXPORT = REPO.parent / "shared" / "data" / "velib" / "api_v21_export_2024-05-28.json"



def base_stations(count: int) -> list[dict]:
    real = []
    for raw in json.loads(EXPORT.read_text(encoding="utf-8")):
        try:
            real.append(normalise_api_record(raw))
        except ValueError:
            continue
    copies = []
    for i in range(count):
        station = real[i % len(real)]
        suffix = f"-{i // len(real)}" if i >= len(real) else ""
        copies.append({**station, "station_code": station["station_code"] + suffix})
    return copies


class Watcher(threading.Thread):
    """Polls `velib_live_station` and resolves the pending sends each station document now covers."""

    def __init__(self, collection):
        super().__init__(daemon=True)
        self.collection = collection
        self.pending: dict[str, deque] = defaultdict(deque)
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def sent(self, code: str, reported_at: datetime, at: float) -> None:
        with self.lock:
            self.pending[code].append((reported_at, at))

    def outstanding(self) -> int:
        with self.lock:
            return sum(len(queue) for queue in self.pending.values())

    def run(self) -> None:
        while not self.stop_event.is_set():
            docs = list(self.collection.find({}, {"latest": 1}))
            seen = time.time()
            with self.lock:
                for doc in docs:
                    queue = self.pending.get(doc["_id"])
                    while queue and queue[0][0] <= doc["latest"]["reported_at"]:
                        self.latencies.append(seen - queue.popleft()[1])
            time.sleep(0.1)


def produce(env: dict[str, str], watcher: Watcher, rate: int, seconds: float) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"], linger_ms=5)
    stations = base_stations(rate)
    sent = 0
    start = time.time()
    while time.time() - start < seconds:
        second = int(time.time())
        reported = datetime.fromtimestamp(second, UTC)
        for index, station in enumerate(stations):
            target = second + index / rate
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            stamp = reported.strftime("%Y-%m-%dT%H:%M:%SZ")
            record = {**station, "reported_at": stamp, "observed_at": stamp,
                      "mechanical": (station["mechanical"] + second) % (station["capacity"] + 1)}
            producer.send(env["CRONLAKE_VELIB_TOPIC"], key=station["station_code"].encode(),
                          value=json.dumps(record).encode())
            watcher.sent(station["station_code"], reported, time.time())
            sent += 1
        while int(time.time()) == second:
            time.sleep(0.001)
    producer.flush()
    return sent


def warm_up(env: dict[str, str], collection, stream: subprocess.Popen, state: Path) -> None:
    """Measure a warm stream: send a few records and wait until they are in MongoDB (JVM and Python workers up)."""
    watcher = Watcher(collection)
    watcher.start()
    produce(env, watcher, 5, 3)
    deadline = time.monotonic() + 180
    while watcher.outstanding():
        if time.monotonic() > deadline or stream.poll() is not None:
            raise SystemExit(f"the stream did not start; see {state / 'stream.log'}")
        time.sleep(0.5)
    watcher.stop_event.set()
    watcher.join()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[25, 2000], help="messages per second")
    parser.add_argument("--seconds", type=float, default=20, help="producing time per rate (default 20)")
    parser.add_argument("--trigger-seconds", type=float, default=1.0, help="stream micro-batch interval")
    parser.add_argument("--drain-seconds", type=float, default=90, help="max wait for the last records")
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    env = {**embedded.throwaway_stack_env(state), "CRONLAKE_VELIB_TOPIC": "velib.bench",
           "CRONLAKE_SPARK_MASTER": "local[2]"}
    os.environ.update(env)
    settings = settings_module.load()
    print("\n".join(embedded.up(settings)), file=sys.stderr)
    from kafka.admin import KafkaAdminClient, NewTopic
    from pymongo import MongoClient

    admin = KafkaAdminClient(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"])
    admin.create_topics([NewTopic(env["CRONLAKE_VELIB_TOPIC"], 2, 1)])
    admin.close()
    client = MongoClient(env["CRONLAKE_MONGO_URI"], tz_aware=True)
    log = open(state / "stream.log", "w")
    stream = subprocess.Popen(
        [sys.executable, "-m", "cronlake.ops.run", "velib_stream", "--trigger-seconds", str(args.trigger_seconds),
         "--until-idle", str(args.drain_seconds + 60)], cwd=REPO, env={**os.environ, **env}, stdout=log,
        stderr=subprocess.STDOUT)
    rows = []
    try:
        warm_up(env, client[settings.mongo_db].velib_live_station, stream, state)
        for rate in args.rates:
            watcher = Watcher(client[settings.mongo_db].velib_live_station)
            watcher.start()
            started = time.monotonic()
            sent = produce(env, watcher, rate, args.seconds)
            produced_in = time.monotonic() - started
            drain_deadline = time.monotonic() + args.drain_seconds
            while watcher.outstanding() and time.monotonic() < drain_deadline:
                time.sleep(0.2)
            watcher.stop_event.set()
            watcher.join()
            latencies = watcher.latencies
            rows.append((rate, sent, sent / produced_in, len(latencies),
                         statistics.median(latencies) if latencies else float("nan"),
                         percentile(latencies, 0.95) if latencies else float("nan"),
                         max(latencies) if latencies else float("nan")))
    finally:
        stream.terminate()
        stream.wait(timeout=60)
        embedded.down(settings)
    print(f"\nvelib_stream end-to-end latency (trigger {args.trigger_seconds:g} s, {args.seconds:g} s per rate, "
          f"embedded tansu + nx-27017, Spark local[2])")
    print(f"{'target msg/s':>12} {'sent':>8} {'sent msg/s':>10} {'delivered':>9} {'p50 s':>7} {'p95 s':>7} "
          f"{'max s':>7}")
    for rate, sent, actual, delivered, p50, p95, worst in rows:
        print(f"{rate:>12} {sent:>8} {actual:>10.0f} {delivered:>9} {p50:>7.2f} {p95:>7.2f} {worst:>7.2f}")
    print(f"(stream log: {state / 'stream.log'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
