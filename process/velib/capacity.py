"""Velib capacity sizing: time-weighted seconds observed, empty and full per station, local day and hour.

The Paris metropole's question, "are the station capacities right?", needs how LONG a station spends empty
(no bike) or full (no free dock), not how many snapshots said so: the history is sampled every 30-60 min with
night gaps of hours, the live feed every minute. This job reads the processed snapshots (`velib_status`) of the
given local days and holds each snapshot's state until the station's next snapshot, for at most
`--max-gap-minutes` (default 120, as `velib_train` takes for a usable gap): beyond the cap, and after a station's
last known snapshot, the time counts as unobserved. Time while the station is out of service (not installed, or
capacity 0: a station being built or a relay point, with neither bikes nor docks) counts as unobserved too: it is
neither empty nor full for a planner. Each held interval is cut at UTC hour
boundaries (in Europe/Paris these are local hour boundaries too) and labelled with its local day and hour.

It upserts one `velib_station_capacity` document per (station, local day): the day's totals `observed_s`,
`empty_s`, `full_s` and the same per local hour (`*_by_hour`, 24 integers; the 25-hour autumn day adds its two
02:00-03:00 local hours into one). Seconds are additive: a page sums them over any period, by station,
zone or commune, by hour of the week, and divides. A day's documents are recomputed whole from the day before
(whose last snapshots hold into it) to the day after (whose first snapshots end it), so reruns change nothing
and the nightly `--day {yesterday}` run completes what the hourly `--day {today}` runs could not know yet.
Then the rollups the dashboard reads are rebuilt from the stored documents (`write_rollups`): running totals per
station through each day from the first computed day on, and per zone and computed day.

Two runners with one SQL text (`PIECES_SQL`): Spark, and DuckDB on one node, chosen by `velib_daily`'s rule
(`--runner auto`: DuckDB with a local Spark master and a `file://` lake).

    python -m cronlake.ops.run velib_capacity [--day today|yesterday|YYYY-MM-DD ...] [--runner auto|spark|duckdb]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from cronlake.contracts.velib import (
    CAPACITY_RUNNING,
    STATION_CAPACITY,
    STATUS,
    ZONE_CAPACITY,
    commune,
    running_document,
    running_rows,
)
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.lake import Lake, open_lake
from cronlake.core.mongo import data_db
from cronlake.core.runner import RunContext
from process.velib.daily import RUNNERS, chosen_runner, day_argument, resolve_day

# The instant a snapshot describes: when it was observed (the source re-serves an old `reported_at` with changed
# counts, so `reported_at` would stack several states on one instant).
TIME = "observed_at"
MAX_GAP_MINUTES = 120
HOURS = 24
COLUMNS = ("station_code", "name", "zone", "insee_code", "capacity", "bikes", "docks_free", "is_installed", TIME)

# One text for Spark SQL and DuckDB (which gets a `unix_seconds` macro). Per station in time order, a snapshot's
# state holds from t until the next snapshot, at most {max_gap_s} seconds; the last snapshot (no next) holds
# nothing. Each held interval is cut into the UTC hours it overlaps (the offsets table: enough hours for the cap).
PIECES_SQL = """
WITH snapshots AS (
    SELECT station_code, name, zone, insee_code, capacity, bikes, docks_free,
           is_installed AND capacity > 0 AS in_service, unix_seconds({time}) AS t
    FROM {status}),
held AS (
    SELECT *, least(coalesce(lead(t) OVER (PARTITION BY station_code ORDER BY t), t), t + {max_gap_s}) AS until
    FROM snapshots),
pieces AS (
    SELECT held.*, CAST(floor(t / 3600) AS BIGINT) + k AS utc_hour
    FROM held CROSS JOIN (VALUES {offsets}) AS offsets(k)
    WHERE until > t),
clipped AS (
    SELECT *, least(until, (utc_hour + 1) * 3600) - greatest(t, utc_hour * 3600) AS seconds
    FROM pieces)
SELECT station_code, utc_hour,
       sum(CASE WHEN in_service THEN seconds ELSE 0 END) AS observed_s,
       sum(CASE WHEN in_service AND bikes = 0 THEN seconds ELSE 0 END) AS empty_s,
       sum(CASE WHEN in_service AND docks_free = 0 THEN seconds ELSE 0 END) AS full_s,
       max_by(name, t) AS name, max_by(zone, t) AS zone, max_by(insee_code, t) AS insee_code,
       max_by(capacity, t) AS capacity
FROM clipped
WHERE seconds > 0
GROUP BY station_code, utc_hour
"""
MEASURES = ("observed_s", "empty_s", "full_s")
ABOUT = ("name", "zone", "commune", "capacity")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velib_capacity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", action="append", default=[], metavar="DAY", type=day_argument,
                        help="a local day to compute: YYYY-MM-DD, today or yesterday (repeatable; default: every "
                             "day of processed/velib_status)")
    parser.add_argument("--runner", choices=RUNNERS, default="auto",
                        help="spark, duckdb (one node, file:// lake) or auto, as velib_daily (same outputs)")
    parser.add_argument("--max-gap-minutes", type=minutes, default=MAX_GAP_MINUTES, metavar="N",
                        help=f"a snapshot's state holds at most N minutes (default {MAX_GAP_MINUTES}); "
                             "the rest of a longer gap is unobserved")
    return parser


def minutes(value: str) -> int:
    """A --max-gap-minutes value: a whole number of minutes, at least 1."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of minutes >= 1, got {value!r}")
    return int(value)


def pieces_sql(status: str, max_gap_s: int) -> str:
    offsets = ", ".join(f"({k})" for k in range(math.ceil(max_gap_s / 3600) + 1))
    return PIECES_SQL.format(status=status, time=TIME, max_gap_s=max_gap_s, offsets=offsets)


def neighbours(days: Iterable[str]) -> list[str]:
    """The days to read for `days`: each with the day before and the day after."""
    around = {(date.fromisoformat(d) + timedelta(days=shift)).isoformat() for d in days for shift in (-1, 0, 1)}
    return sorted(around)


def stored_days(lake: Lake) -> list[str]:
    """Every local day with Parquet files in processed/velib_status."""
    return sorted({part.removeprefix("day=") for f in lake.list(STATUS.path, recursive=True)
                   if f.path.endswith(".parquet") for part in f.path.split("/") if part.startswith("day=")})


def documents(rows: Iterable[Mapping[str, Any]], days: Iterable[str], context: RunContext, max_gap_s: int
              ) -> list[dict[str, Any]]:
    """Per (station, local day) of `days`: totals and hourly seconds; name, zone, commune and capacity of the
    station's last snapshot that day."""
    wanted, tz = set(days), context.settings.tz
    found: dict[tuple[str, str], dict[str, Any]] = {}
    latest: dict[tuple[str, str], int] = {}
    for row in rows:
        start = datetime.fromtimestamp(row["utc_hour"] * 3600, tz)
        day = start.date().isoformat()
        if day not in wanted:
            continue
        key = (row["station_code"], day)
        doc = found.setdefault(key, {"station_code": key[0], "day": day, "max_gap_s": max_gap_s,
                                     **{m: 0 for m in MEASURES}, **{by_hour(m): [0] * HOURS for m in MEASURES}})
        for measure in MEASURES:
            seconds = int(row[measure])
            doc[measure] += seconds
            doc[by_hour(measure)][start.hour] += seconds
        if row["utc_hour"] >= latest.get(key, row["utc_hour"]):
            latest[key] = row["utc_hour"]
            doc.update(name=row["name"], zone=row["zone"], capacity=row["capacity"], insee_code=row["insee_code"],
                       commune=commune(row["zone"], row["insee_code"]))
    return list(found.values())


def by_hour(measure: str) -> str:
    """`observed_s` → `observed_by_hour`."""
    return measure.removesuffix("_s") + "_by_hour"


def write_rollups(db: Database, days: Iterable[str]) -> int:
    """Rebuild the rollups of `days` from the stored `velib_station_capacity` documents; returns the rollup
    documents written.

    Each of `days` gets its zone documents anew (a zone no station of the day has any more is deleted). The running
    totals are rewritten from the first of `days` to the last stored day, each day's being the day before's plus
    that day's documents, so a day reprocessed later carries into every later total; without the day before's
    total (never built: a collection filled before the rollups existed), both rollups of every stored day."""
    stored = db[STATION_CAPACITY.name]
    first = stored.find_one({}, {"_id": 0, "day": 1}, sort=[("day", ASCENDING)])
    last = stored.find_one({}, {"_id": 0, "day": 1}, sort=[("day", DESCENDING)])
    wanted = set(days)
    if first is None or last is None or not wanted:
        return 0
    start = date.fromisoformat(max(min(wanted), first["day"]))
    before, previous = (start - timedelta(days=1)).isoformat(), None
    if before >= first["day"]:
        previous = db[CAPACITY_RUNNING.name].find_one({"_id": before})
        if previous is None:
            start, wanted = date.fromisoformat(first["day"]), set(stored.distinct("day"))
    totals = {row["station_code"]: row for row in running_rows(previous)}
    projection = {"_id": 0, "station_code": 1, **dict.fromkeys(ABOUT, 1), **dict.fromkeys(MEASURES, 1),
                  **{by_hour(m): 1 for m in MEASURES}}
    written, day = 0, start
    while (name := day.isoformat()) <= last["day"]:
        docs = list(stored.find({"day": name}, projection))
        for doc in docs:
            row = totals.setdefault(doc["station_code"], {"station_code": doc["station_code"], "days": 0,
                                                          **dict.fromkeys(MEASURES, 0)})
            row.update({field: doc.get(field) for field in ABOUT}, days=row["days"] + 1)
            for measure in MEASURES:
                row[measure] += doc[measure]
        running = running_document(name, (totals[code] for code in sorted(totals)))
        written += sink.upsert(db, CAPACITY_RUNNING, [running], replace=True)
        if name in wanted:
            written += write_zone_days(db, name, docs)
        day += timedelta(days=1)
    return written


def write_zone_days(db: Database, day: str, docs: list[dict[str, Any]]) -> int:
    """The zone documents of one day: its stations' seconds summed per zone, in total and per local hour."""
    zones: dict[str, dict[str, Any]] = {}
    for doc in docs:
        zone = zones.setdefault(doc["zone"], {"zone": doc["zone"], "day": day, "stations": 0,
                                              **dict.fromkeys(MEASURES, 0), **{by_hour(m): [0] * HOURS
                                                                               for m in MEASURES}})
        zone["stations"] += 1
        for measure in MEASURES:
            zone[measure] += doc[measure]
            zone[by_hour(measure)] = [a + b for a, b in zip(zone[by_hour(measure)], doc[by_hour(measure)],
                                                            strict=True)]
    db[ZONE_CAPACITY.name].delete_many({"day": day, "zone": {"$nin": list(zones)}})
    return sink.upsert(db, ZONE_CAPACITY, zones.values(), replace=True)


def spark_pieces(context: RunContext, days: list[str], max_gap_s: int) -> list[dict[str, Any]]:
    status = STATUS.read(context.spark, context.lake, {"day": days}).select(*COLUMNS)
    view = f"velib_capacity_{id(status):x}"
    status.createOrReplaceTempView(view)
    return [row.asDict() for row in context.spark.sql(pieces_sql(view, max_gap_s)).collect()]


def duckdb_pieces(context: RunContext, lake: Lake, days: list[str], max_gap_s: int) -> list[dict[str, Any]]:
    from process.velib import embedded

    files = embedded.day_files(lake, STATUS.name, days)
    if not files:
        return []
    connection = embedded.connect(context.settings.timezone, context.settings.state_path / "duckdb")
    try:
        connection.execute("CREATE MACRO unix_seconds(t) AS CAST(epoch(t) AS BIGINT)")
        result = connection.execute(pieces_sql(embedded.status_relation(files, list(COLUMNS)), max_gap_s))
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    finally:
        connection.close()


def run(context: RunContext, args: argparse.Namespace) -> None:
    runner = chosen_runner(args.runner, context.settings)
    lake = open_lake(context.settings) if runner == "duckdb" else context.lake
    days = sorted({resolve_day(value, context.settings) for value in args.day}) or stored_days(lake)
    max_gap_s = 60 * args.max_gap_minutes
    context.log("runner", runner=runner, days=days, max_gap_s=max_gap_s)
    if not days:
        return
    read = neighbours(days)
    rows = duckdb_pieces(context, lake, read, max_gap_s) if runner == "duckdb" \
        else spark_pieces(context, read, max_gap_s)
    context.count("rows_in", len(rows))
    docs = documents(rows, days, context, max_gap_s)
    context.log("computed", station_hours=len(rows), documents=len(docs))
    db = data_db(context.settings)
    written = sink.upsert(db, STATION_CAPACITY, docs)
    context.count("rows_out", written)
    context.log("mongo.upserted", collection=STATION_CAPACITY.name, documents=written, days=days)
    context.log("rollups.written", documents=write_rollups(db, days))


JOB = Job("velib_capacity", build_parser, run, needs=("lake", "spark"), takes_day=True)


if __name__ == "__main__":
    sys.exit(JOB.main())
