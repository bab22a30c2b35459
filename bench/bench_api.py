"""p95 latency of a 100-row page of the lake API, against reading the same page in-process.

Starts a private embedded stack (MongoDB-wire server for keys, catalog and audit), publishes a versioned dataset
of resampled real rows (the retail CSV slices' invoice lines, copied with numbered invoice suffixes up to
`--rows`, in one Delta version), serves the API with `python -m api.serve` (one uvicorn worker) and times over
HTTP: the first page, a page deep in the table through its page token, and the catalog version document. The
baselines read the same 100 rows in this process: delta-rs to Arrow then sort (the naive way), and DuckDB over the
delta-rs dataset (the API's own query, without HTTP, key check and audit).

    python bench/bench_api.py [--rows 200000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from statistics import median, quantiles
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
SLICES = ("retail_part1.csv", "retail_part2.csv", "retail_part3.csv")
PAGE = 100


def resampled(rows: int) -> list[dict[str, Any]]:
    real = []
    for name in SLICES:
        with open(REPO / "tests" / "fixtures" / "retail" / name, newline="") as handle:
            real += list(csv.DictReader(handle))
    out = []
    for i in range(rows):
        row = real[i % len(real)]
        moment = datetime.strptime(row["InvoiceDate"], "%m/%d/%y %H:%M").replace(tzinfo=UTC)
        out.append({"invoice_no": f"{row['InvoiceNo']}-{i // len(real):05d}", "stock_code": row["StockCode"],
                    "quantity": int(row["Quantity"]), "unit_price": float(row["UnitPrice"]), "invoice_time": moment,
                    "country": row["Country"], "invoice_day": moment.strftime("%Y-%m-%d")})
    return out


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, float]:
    action()  # warm up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return median(samples), quantiles(samples, n=20)[18]


def get(url: str, key: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.read()


def main() -> int:
    import json

    import duckdb
    from deltalake import DeltaTable
    from test_api import publish
    from test_governance import LINES

    from api import access
    from cronlake.core import settings as settings_module
    from cronlake.core import versioned
    from cronlake.core.lake import open_lake
    from cronlake.ops import embedded

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    env = {**embedded.throwaway_stack_env(folder), "CRONLAKE_MONGO_DB": "bench", "CRONLAKE_MONGO_OPS_DB": "bench_ops",
           "CRONLAKE_API_RATE_PER_MINUTE": "1000000"}
    os.environ.update(env)
    local = settings_module.load(dict(env))
    embedded.up(local)
    server = None
    try:
        publish(env, LINES, resampled(args.rows))
        key, _ = access.create_key(local, "bench", ["*"])
        port = embedded.free_port()
        server = subprocess.Popen([sys.executable, "-m", "api.serve", "--port", str(port), "--workers", "1"],
                                  cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        first = f"{url}/datasets/{LINES.name}/rows?page_size={PAGE}"
        token = json.loads(get(first, key))["next_page_token"]
        for _ in range(20):  # walk 20 pages in: a page after a real cursor
            token = json.loads(get(f"{first}&page_token={token}", key))["next_page_token"]
        deep = f"{url}/datasets/{LINES.name}/rows?page_size={PAGE}&page_token={token}"

        lake = open_lake(local)
        uri = versioned.table_uri(lake, LINES)

        def naive() -> list[dict[str, Any]]:
            table = DeltaTable(uri).to_pyarrow_table()
            return table.sort_by([("invoice_no", "ascending"), ("stock_code", "ascending")]).slice(0, PAGE).to_pylist()

        def duck() -> list[dict[str, Any]]:
            connection = duckdb.connect()
            connection.register("snapshot", DeltaTable(uri).to_pyarrow_dataset())
            rows = connection.sql(f"SELECT * FROM snapshot ORDER BY invoice_no, stock_code LIMIT {PAGE}"
                                  ).to_arrow_table().to_pylist()
            connection.close()
            return rows

        results = [
            ("API first page (HTTP)", *timed(lambda: get(first, key), args.repeat)),
            ("API deep page, token (HTTP)", *timed(lambda: get(deep, key), args.repeat)),
            ("API catalog version (HTTP)", *timed(lambda: get(f"{url}/catalog/datasets/{LINES.name}/versions/0", key),
                                                  args.repeat)),
            ("baseline delta-rs + sort", *timed(naive, args.repeat)),
            ("baseline DuckDB in-process", *timed(duck, args.repeat)),
        ]
        base = results[-1][2]
        print(f"\n{args.rows:,} resampled real rows, one Delta version, {PAGE}-row pages, {args.repeat} repeats")
        print(f"{'case':32} {'p50 ms':>9} {'p95 ms':>9} {'p95 / DuckDB':>13}")
        for name, p50, p95 in results:
            print(f"{name:32} {p50:9.1f} {p95:9.1f} {p95 / base:13.2f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        embedded.down(local)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
