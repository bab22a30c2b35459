"""Benchmark of `retail_ads` on the real KAG file (800 ads) and on a scaled copy (resampled real rows, 250x by
default: real rows drawn with replacement, each given a new ad id so that they are distinct ads), against a plain
DuckDB script doing the same work in one process: read the JSON lines, refuse invalid events, keep one row per ad,
sum impressions, clicks, spent and conversions per campaign and by age, gender and interest (overall and within
each campaign). No Spark, no lake protocol, no Delta version, no MongoDB.

The landing files are written exactly as the landing consumer writes them (each event checked against the
`retail_ad_event` contract, one JSON object per line). The job runs in-process on the settings' Spark master
(`local[*]`) with a throwaway embedded MongoDB and a lake in a temporary folder, in a Spark session started
beforehand (its start is printed apart); its seconds include claim, quality rules, the Delta version, MongoDB
upserts and archive. Ads, groups and total clicks of job and baseline are printed side by side as a check.

    python bench/bench_retail_ads.py [--scale 250] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from _common import DATA, in_process_stack, run_in_process

from cronlake.contracts.retail_ads import AD_EVENT, AGES, GENDERS, PERFORMANCE
from cronlake.core.kafka_landing import parse_message
from ingest.retail.ads_replay import event, read_rows

KAG = DATA / "ads" / "kag_conversion_data_rows_0001-0800.csv"
GROUPS = """
    SELECT 'all' AS campaign, 'total' AS dimension, 'all' AS value, * FROM ads
    UNION ALL SELECT CAST(xyz_campaign_id AS VARCHAR), 'total', 'all', * FROM ads
    UNION ALL SELECT 'all', 'campaign', CAST(xyz_campaign_id AS VARCHAR), * FROM ads
""" + "".join(f"""
    UNION ALL SELECT 'all', '{d}', CAST({d} AS VARCHAR), * FROM ads
    UNION ALL SELECT CAST(xyz_campaign_id AS VARCHAR), '{d}', CAST({d} AS VARCHAR), * FROM ads""" for d in (
    "age", "gender", "interest"))


def landing_lines(scale: int, seed: int) -> list[str]:
    """The real rows (scale 1) or resampled real rows with new ad ids, as landed JSON lines."""
    rows = read_rows(KAG)
    chosen = rows if scale == 1 else random.Random(seed).choices(rows, k=len(rows) * scale)
    lines = []
    for index, (number, cells) in enumerate(chosen):
        values = event(KAG.name, number, cells if scale == 1 else {**cells, "ad_id": str(10_000_000 + index)})
        lines.append(json.dumps(parse_message(AD_EVENT, json.dumps(values).encode()), separators=(",", ":")))
    return lines


def baseline(path: Path) -> dict[str, int]:
    """DuckDB: read, refuse invalid events, one row per ad, group sums."""
    import duckdb

    columns = {f.name: {"long": "BIGINT", "int": "INTEGER", "double": "DOUBLE"}.get(f.kind, "VARCHAR")
               for f in AD_EVENT.fields}
    con = duckdb.connect()
    con.execute(f"""
        CREATE TABLE ads AS SELECT * EXCLUDE (_n) FROM (
            SELECT *, round(spent, 2) AS spent_cents, row_number() OVER (PARTITION BY ad_id ORDER BY replayed_at,
                   source_row) AS _n
            FROM read_json('{path}', format='newline_delimited', columns={columns})
            WHERE clicks <= impressions AND approved_conversion <= total_conversion
              AND age IN {tuple(AGES)} AND gender IN {tuple(GENDERS)}) WHERE _n = 1""")
    groups = con.execute(f"""
        SELECT campaign, dimension, value, count(*) AS ads, sum(impressions), sum(clicks) AS clicks,
               sum(spent_cents), sum(total_conversion), sum(approved_conversion),
               sum(CASE WHEN clicks = 0 AND total_conversion > 0 THEN 1 ELSE 0 END)
        FROM ({GROUPS}) GROUP BY ALL""").fetchall()
    total = next(g for g in groups if g[:3] == ("all", "total", "all"))
    return {"ads": total[3], "groups": len(groups), "clicks": total[5]}


def run_job(folder: Path, lines: list[str], name: str) -> tuple[float, dict[str, int]]:
    from cronlake.contracts.retail_ads import EVENTS
    from cronlake.core import settings as settings_module
    from cronlake.core.lake import open_lake
    from cronlake.core.mongo import data_db
    from process.retail import ads as retail_ads

    seconds = run_in_process(retail_ads.JOB, folder, name, f"landing/ads/ads_{name}.jsonl",
                             ("\n".join(lines) + "\n").encode())
    settings = settings_module.load()
    collection = data_db(settings)[PERFORMANCE.name]
    total = collection.find_one({"campaign": "all", "dimension": "total"})
    return seconds, {"ads": EVENTS.read_arrow(open_lake(settings)).num_rows,
                     "groups": collection.count_documents({}), "clicks": total["clicks"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_retail_ads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=250, help="size of the scaled copy, in copies of the real file")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    from cronlake.core import settings as settings_module

    print(f"{'input':<34} {'ads':>8} {'job s':>7} {'duckdb s':>9} {'job/duckdb':>10}  ads job/db  groups job/db"
          "  clicks job/db", flush=True)
    with in_process_stack("bench-ads-") as folder:
        started = time.perf_counter()
        from cronlake.core.spark import get_session

        get_session(settings_module.load(), "bench-retail-ads")
        print(f"(Spark session start, not counted in the job seconds: {time.perf_counter() - started:.1f} s)",
              flush=True)
        for label, scale in (("real KAG rows", 1), (f"resampled real rows x{args.scale}", args.scale)):
            lines = landing_lines(scale, args.seed)
            name = f"x{scale}"
            path = folder / f"{name}.jsonl"
            path.write_text("\n".join(lines) + "\n")
            started = time.perf_counter()
            want = baseline(path)
            duck_seconds = time.perf_counter() - started
            job_seconds, got = run_job(folder, lines, name)
            print(f"{label:<34} {len(lines):>8} {job_seconds:>7.1f} {duck_seconds:>9.2f} "
                  f"{job_seconds / duck_seconds:>10.1f}  {got['ads']}/{want['ads']}  "
                  f"{got['groups']}/{want['groups']}  {got['clicks']}/{want['clicks']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
