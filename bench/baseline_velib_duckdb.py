"""Baseline for `bench_velib_daily`: the phases of `velib_daily` written directly in DuckDB, no job around them.

Parse the landing CSV files with their types, validate in one pass (counting rejects), deduplicate on the
snapshot identity (station_code, reported_at, counts, flags; the copy observed first), write Parquet partitioned
by the local day of observed_at, compute the station, zone and
empty-station statistics, and upsert them into MongoDB by `_id` (MongoDB from the settings, as the job).
What a user could write in an afternoon: the floor the job is measured against.

    python bench/baseline_velib_duckdb.py --input landing/velib --out /tmp/velib-parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb
from pymongo import UpdateOne

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cronlake.core import settings as settings_module  # noqa: E402
from cronlake.core.mongo import data_db  # noqa: E402

COLUMNS = {"station_code": "VARCHAR", "name": "VARCHAR", "capacity": "INTEGER", "bikes": "INTEGER",
           "mechanical": "INTEGER", "ebike": "INTEGER", "docks_free": "INTEGER", "is_installed": "BOOLEAN",
           "is_renting": "BOOLEAN", "is_returning": "BOOLEAN", "reported_at": "VARCHAR", "observed_at": "VARCHAR",
           "lat": "DOUBLE",
           "lon": "DOUBLE", "zone": "VARCHAR", "insee_code": "VARCHAR"}
STATION = """SELECT station_code, day, max_by(name, observed_at) AS name, max_by(zone, observed_at) AS zone,
    max_by(capacity, observed_at) AS capacity, count(*) AS samples, avg(bikes) AS avg_bikes,
    min(bikes) AS min_bikes, max(bikes) AS max_bikes, avg(mechanical) AS avg_mechanical, avg(ebike) AS avg_ebike,
    avg(docks_free) AS avg_docks_free, min(docks_free) AS min_docks_free, max(docks_free) AS max_docks_free,
    count(*) FILTER (bikes = 0) AS zero_bike_samples, count(*) FILTER (docks_free = 0) AS zero_dock_samples
    FROM fresh GROUP BY ALL"""
ZONE = """SELECT zone, day, count(DISTINCT station_code) AS stations, count(*) AS samples, avg(bikes) AS avg_bikes,
    avg(mechanical) AS avg_mechanical, avg(ebike) AS avg_ebike, avg(docks_free) AS avg_docks_free,
    avg(bikes) / avg(capacity) AS fill_ratio FROM fresh GROUP BY ALL"""
EMPTY = "SELECT day, station_code, name, zone, zero_bike_samples, samples FROM station WHERE zero_bike_samples > 0"


def upsert(collection, rows: list[tuple], names: list[str], key: list[str]) -> int:
    operations = [UpdateOne({"_id": "|".join(str(document[k]) for k in key)},
                            {"$set": {n: round(v, 6) if isinstance(v, float) else v for n, v in document.items()}},
                            upsert=True)
                  for document in (dict(zip(names, row, strict=True)) for row in rows)]
    if operations:
        collection.bulk_write(operations, ordered=False)
    return len(operations)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baseline_velib_duckdb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="folder of landing CSV files")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the Parquet dataset into")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    settings = settings_module.load()
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    db.execute(f"""CREATE TABLE raw AS SELECT *, try_strptime(regexp_replace(reported_at, 'Z$', '+00'),
        '%Y-%m-%dT%H:%M:%S%z') AS ts, try_strptime(regexp_replace(observed_at, 'Z$', '+00'),
        '%Y-%m-%dT%H:%M:%S%z') AS seen FROM read_csv('{args.input}/*.csv', header = true, auto_detect = false,
        columns = {{{columns}}}, ignore_errors = true)""")
    invalid = """ts IS NULL OR seen IS NULL OR station_code IS NULL OR bikes < 0 OR docks_free < 0 OR capacity < 0
        OR mechanical < 0 OR ebike < 0"""
    rejected = db.execute(f"SELECT count(*) FROM raw WHERE {invalid}").fetchone()[0]
    db.execute(f"""CREATE TABLE fresh AS SELECT * EXCLUDE (reported_at, observed_at, ts, seen), ts AS reported_at,
        seen AS observed_at, strftime(seen AT TIME ZONE '{settings.timezone}', '%Y-%m-%d') AS day FROM raw
        WHERE NOT ({invalid})
        QUALIFY row_number() OVER (PARTITION BY station_code, ts, capacity, bikes, mechanical, ebike, docks_free,
                                   is_installed, is_renting, is_returning ORDER BY seen) = 1""")
    args.out.mkdir(parents=True, exist_ok=True)
    db.execute(f"COPY fresh TO '{args.out}' (FORMAT parquet, PARTITION_BY (day), OVERWRITE_OR_IGNORE)")
    db.execute(f"CREATE TABLE station AS {STATION}")
    mongo = data_db(settings)
    written = 0
    for name, query, key in (("velib_station_daily", "SELECT * FROM station", ["station_code", "day"]),
                             ("velib_zone_daily", ZONE, ["zone", "day"]),
                             ("velib_empty_stations", EMPTY, ["station_code", "day"])):
        result = db.execute(query)
        written += upsert(mongo[name], result.fetchall(), [d[0] for d in result.description], key)
    rows = db.execute("SELECT count(*) FROM fresh").fetchone()[0]
    print(f"{rows} snapshots ({rejected} rejected) -> {args.out}, {written} documents, "
          f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
