"""Benchmark the retail transaction jobs (`retail_daily`, `retail_olist`) against a DuckDB script doing the same
cleaning, on scaled copies of the real data, in one run; ratios printed as a table.

Scaled data, labelled so: the UCI file is **resampled real rows** (drawn with replacement, seed 13, from the
28,491 real lines, split in files of 50,000); the Olist export is the real subset repeated `--olist-copies` times
with the order and customer ids suffixed `-<copy>` (real rows, relabelled ids so that the keys stay unique).
Each engine reads the same landing files; the jobs run as a user runs them (a subprocess, embedded MongoDB
stand-in), the DuckDB script in this process (read → clean → join → Parquet → the same daily aggregates).

    python bench/bench_retail_transactions.py                         # 200,000 UCI rows, 5 Olist copies
    python bench/bench_retail_transactions.py --uci-rows 1000000 --olist-copies 20
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import time
from pathlib import Path

import duckdb
from _common import DATA, machine_line, run_job, throwaway_stack

UCI = DATA / "ecommerce" / "online_retail_2010-12-01_to_2010-12-13.csv"
OLIST = DATA / "ecommerce" / "olist_subset_2017"
OLIST_FILES = {"orders": "orders.csv", "order_items": "order_items.csv", "customers": "customers.csv",
               "products": "products.csv", "sellers": "olist_sellers_dataset.csv",
               "category_translation": "product_category_name_translation.csv"}
RELABELLED = {"orders": ("order_id", "customer_id"), "order_items": ("order_id",), "customers": ("customer_id",)}


def scale_uci(target: Path, rows: int, per_file: int = 50_000) -> None:
    with open(UCI, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header, real = next(reader), list(reader)
    drawn = random.Random(13).choices(real, k=rows)
    target.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, rows, per_file)):
        with open(target / f"retail_scaled_{part:03d}.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows([header, *drawn[start:start + per_file]])


def scale_olist(target: Path, copies: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for table, name in OLIST_FILES.items():
        with open(OLIST / name, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header, real = next(reader), list(reader)
        relabel = [header.index(c) for c in RELABELLED.get(table, ())]
        rows = real if not relabel else [
            [f"{v}-{copy}" if i in relabel else v for i, v in enumerate(row)] for copy in range(copies) for row in real]
        with open(target / f"scaled.{table}.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows([header, *rows])


def duckdb_uci(landing: Path, out: Path) -> float:
    """The retail_daily cleaning in SQL: typed, UTC times, flags, negative prices out, net revenue per day/country."""
    started = time.monotonic()
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    db.execute(f"""CREATE TABLE lines AS SELECT InvoiceNo AS invoice_no, StockCode AS stock_code,
        TRY_CAST(Quantity AS INTEGER) AS quantity, TRY_CAST(UnitPrice AS DOUBLE) AS unit_price, CustomerID, Country,
        timezone('Europe/London', try_strptime(InvoiceDate, '%m/%d/%y %H:%M')) AS invoice_time,
        strftime(try_strptime(InvoiceDate, '%m/%d/%y %H:%M'), '%Y-%m-%d') AS invoice_day
        FROM read_csv('{landing}/*.csv', header = true, all_varchar = true)""")
    db.execute("""CREATE TABLE clean AS SELECT *, quantity * unit_price AS amount,
        invoice_no LIKE 'C%' AS is_cancellation, quantity < 0 AS is_return, unit_price = 0 AS is_free FROM lines
        WHERE invoice_time IS NOT NULL AND quantity IS NOT NULL AND unit_price >= 0""")
    db.execute(f"COPY clean TO '{out}/uci' (FORMAT parquet, PARTITION_BY (invoice_day))")
    db.execute("""SELECT invoice_day, Country, count(DISTINCT invoice_no), count(*), round(sum(amount), 2),
        sum(is_cancellation::INT) FROM clean GROUP BY ALL""").fetchall()
    return time.monotonic() - started


def duckdb_olist(landing: Path, out: Path) -> float:
    """The retail_olist join in SQL: order lines with customer, English category, seller; UTC times."""
    started = time.monotonic()
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")

    def table(name: str) -> str:
        return f"read_csv('{landing}/scaled.{name}.csv', header = true, all_varchar = true)"

    def utc(column: str) -> str:
        return f"timezone('America/Sao_Paulo', try_strptime({column}, '%Y-%m-%d %H:%M:%S'))"

    db.execute(f"""CREATE TABLE lines AS SELECT i.order_id, TRY_CAST(TRY_CAST(i.order_item_id AS DOUBLE) AS INTEGER)
        AS order_item_id, i.product_id, coalesce(t.product_category_name_english, p.product_category_name) AS category,
        i.seller_id, s.seller_state, c.customer_unique_id, c.customer_city, c.customer_state,
        lpad(c.customer_zip_code_prefix, 5, '0') AS customer_zip_prefix, TRY_CAST(i.price AS DOUBLE) AS price,
        TRY_CAST(i.freight_value AS DOUBLE) AS freight, o.order_status,
        {utc('o.order_purchase_timestamp')} AS purchase_time, {utc('o.order_approved_at')} AS approved_time,
        {utc('o.order_delivered_customer_date')} AS delivered_time,
        date_diff('day', TRY_CAST(o.order_estimated_delivery_date AS DATE),
                  TRY_CAST(o.order_delivered_customer_date AS DATE)) AS delivery_delay_days,
        o.order_status IN ('canceled', 'unavailable') AS is_cancelled,
        left(o.order_purchase_timestamp, 10) AS purchase_day
        FROM {table('order_items')} i JOIN {table('orders')} o USING (order_id)
        JOIN {table('customers')} c USING (customer_id) JOIN {table('products')} p USING (product_id)
        JOIN {table('sellers')} s USING (seller_id)
        LEFT JOIN {table('category_translation')} t USING (product_category_name)""")
    db.execute(f"COPY (SELECT *, round(price + freight, 2) AS revenue FROM lines) TO '{out}/olist' "
               "(FORMAT parquet, PARTITION_BY (purchase_day))")
    db.execute("""SELECT purchase_day, customer_state, category, count(DISTINCT order_id), count(*),
        round(sum(CASE WHEN is_cancelled THEN 0 ELSE price + freight END), 2) FROM lines GROUP BY ALL""").fetchall()
    return time.monotonic() - started


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_retail_transactions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uci-rows", type=int, default=200_000, help="resampled UCI rows (default 200,000)")
    parser.add_argument("--olist-copies", type=int, default=5, help="copies of the Olist export (default 5)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with throwaway_stack("bench-retail-tx-", args.master) as (work, env):
        scale_uci(work / "scaled" / "retail", args.uci_rows)
        scale_olist(work / "scaled" / "olist", args.olist_copies)
        items = args.olist_copies * (sum(1 for _ in open(OLIST / "order_items.csv", encoding="utf-8")) - 1)
        (work / "out").mkdir()
        baseline = {"retail_daily": duckdb_uci(work / "scaled" / "retail", work / "out"),
                    "retail_olist": duckdb_olist(work / "scaled" / "olist", work / "out")}
        measured = {}
        for job, source in (("retail_daily", "retail"), ("retail_olist", "olist")):
            shutil.copytree(work / "scaled" / source, work / "lake" / "landing" / source)
            measured[job] = run_job(job, env)
        print(machine_line(args.master))
        header = f"{'job':<14} {'rows (scaled real data)':<42} {'job s':>8} {'DuckDB s':>9} {'x DuckDB':>9}"
        print(header + "\n" + "-" * len(header))
        labels = {"retail_daily": f"{args.uci_rows} resampled real UCI rows",
                  "retail_olist": f"{items} Olist items ({args.olist_copies} relabelled copies)"}
        for job, seconds in measured.items():
            print(f"{job:<14} {labels[job]:<42} {seconds:>8.1f} {baseline[job]:>9.2f} "
                  f"{seconds / baseline[job]:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
