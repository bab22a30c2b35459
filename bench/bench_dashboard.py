"""Latency of every dashboard page callback against the 300 ms target, on a MongoDB of realistic size.

Starts its own embedded MongoDB-wire server (nx-27017) on a free 127.0.0.1 port, seeds DAYS x STATIONS of
daily station statistics (default 30 x 1,500: the real 1,471 stations of the v2.1 export, plus numbered copies)
and every other collection the dashboard reads, creates the dashboard's indexes, then calls each page's layout
and callback functions directly (as Dash does for `/_dash-update-component`), including the JSON encoding of
their output, and prints p50 / p95 per callback. Then the live map's answers, for every zone and for one zone:
bytes and server ms of the whole page as every minute sent it before (totals, whole figure, station table) against
a page view's first answer and a minute's refresh now (only the changes), each encoded as Dash encodes its answer's
body, with ratios.

nx-27017 stores documents in SQLite: its query planner, index use and latencies are NOT those of mongod, so
read these numbers as "the dashboard's own cost plus a slow-ish store", not as a MongoDB measurement.

Then the Capacity page's callbacks for the default week and for 30 days, before and after its rollups: "before"
runs the same callbacks with the page's former reads of the station-day documents (`$group` sums over the day
range, the latest day's names, the subject's day documents by station or (zone, day) range), kept below as the
baseline; "after" reads the rollups `velib_capacity` writes (`velib_capacity_running`, `velib_zone_capacity`),
built here by the job's own `write_rollups` from the seeded station-days. `--capacity-only` seeds and times only
that page.

    python bench/bench_dashboard.py [--days 30] [--stations 1500] [--repeat 20] [--runs-per-day 24]
                                    [--capacity-repeat 5] [--capacity-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import plotly.utils

REPO = Path(__file__).resolve().parent.parent
EXPORT = REPO.parent / "shared" / "data" / "velib" / "api_v21_export_2024-05-28.json"
TARGET_MS = 300.0
JOBS = ("velib_produce", "velib_land", "velib_daily", "velib_train", "lake_census", "watchdog")



def stations(count: int) -> list[dict[str, Any]]:
    """`count` stations: the real ones of the v2.1 export first (zoned from their coordinates on the shipped
    boundaries, as the pipeline does), then numbered copies placed nearby."""
    from cronlake.contracts.velib_zones import ZoneMap

    zone_map = ZoneMap.from_folder()
    real = [{"station_code": r["stationcode"], "name": r["name"], "capacity": r["capacity"] or 20,
             "zone": zone_map.locate(r["coordonnees_geo"]["lat"], r["coordonnees_geo"]["lon"]).name,
             "lat": r["coordonnees_geo"]["lat"], "lon": r["coordonnees_geo"]["lon"]}
            for r in json.loads(EXPORT.read_text(encoding="utf-8"))]
    out = real[:count]
    for i in range(count - len(out)):
        base = real[i % len(real)]
        out.append({**base, "station_code": f"{90000 + i}", "name": f"{base['name']} (bench {i})",
                    "lat": base["lat"] + 0.002, "lon": base["lon"] + 0.002})
    return out


def seed(data: Any, ops: Any, sites: list[dict[str, Any]], days: list[str], runs_per_day: int, rng: random.Random
         ) -> None:
    now = datetime.now(UTC)
    daily, zone_days = [], {}
    for day in days:
        for s in sites:
            cap = s["capacity"]
            avg = rng.uniform(0, cap)
            doc = {"station_code": s["station_code"], "day": day, "name": s["name"], "zone": s["zone"], "capacity": cap,
                   "samples": 96, "avg_bikes": avg, "min_bikes": 0, "max_bikes": cap, "avg_mechanical": avg * 0.6,
                   "avg_ebike": avg * 0.4, "avg_docks_free": cap - avg, "min_docks_free": 0, "max_docks_free": cap,
                   "zero_bike_samples": rng.choice((0, 0, 0, rng.randint(1, 40))),
                   "zero_dock_samples": rng.choice((0, 0, 0, rng.randint(1, 40)))}
            daily.append(doc)
            z = zone_days.setdefault((s["zone"], day), {"stations": 0, "bikes": 0.0, "cap": 0})
            z["stations"] += 1
            z["bikes"] += avg
            z["cap"] += cap
    for start in range(0, len(daily), 5000):
        data.velib_station_daily.insert_many(daily[start:start + 5000], ordered=False)
    data.velib_zone_daily.insert_many([
        {"zone": zone, "day": day, "stations": z["stations"], "samples": 96 * z["stations"],
         "avg_bikes": z["bikes"] / z["stations"], "avg_mechanical": 0.6 * z["bikes"] / z["stations"],
         "avg_ebike": 0.4 * z["bikes"] / z["stations"], "avg_docks_free": (z["cap"] - z["bikes"]) / z["stations"],
         "fill_ratio": z["bikes"] / z["cap"]} for (zone, day), z in zone_days.items()])
    averages = {"samples": 60, "avg_mechanical": 5.0, "avg_ebike": 3.0, "avg_docks_free": 10.0}
    data.velib_live_station.insert_many([
        {"_id": s["station_code"], **s, "updated_at": now,
         "latest": {"reported_at": now - timedelta(seconds=rng.randint(0, 600)), "bikes": (b := rng.randint(0, 30)),
                    "mechanical": b // 2, "ebike": b - b // 2, "docks_free": rng.randint(0, 30), "is_installed": True,
                    "is_renting": True, "is_returning": True},
         "today": {"day": days[-1], **averages}, "last_hour": {**averages, "since": now - timedelta(hours=1)}}
        for s in sites])
    data.velib_live_zone.insert_many([
        {"_id": zone, "zone": zone, "stations": 10, "today": {"day": days[-1], **averages},
         "last_hour": averages, "updated_at": now} for zone in {s["zone"] for s in sites}])
    metrics = {"auc": 0.8, "precision": 0.6, "recall": 0.5, "f1": 0.55}
    data.velib_model_runs.insert_many([
        {"_id": f"v{i}", "version": f"v{i}", "trained_at": now - timedelta(days=i), "train_until": days[-2],
         "test_from": days[-1], "rows_train": 100000, "rows_test": 20000,
         "metrics": {"model": metrics, "baseline": metrics}, "path": f"models/velib/v{i}"} for i in range(len(days))])
    data.velib_predictions.insert_many([
        {"_id": s["station_code"], "station_code": s["station_code"], "name": s["name"], "zone": s["zone"],
         "at": now, "probability_full": rng.random(), "predicted_full": False, "model_version": "v0"}
        for s in sites])
    runs = []
    for job in JOBS:
        for i in range(len(days) * runs_per_day):
            started = now - timedelta(hours=24 * i / runs_per_day)
            failed = rng.random() < 0.02
            runs.append({"_id": f"{job}-{i}", "job": job, "args": [], "started_at": started,
                         "ended_at": started + timedelta(seconds=30), "status": "failed" if failed else "succeeded",
                         "rows_in": 1000, "rows_out": 1000, "error": "boom" if failed else None, "duration_s": 30.0})
    for start in range(0, len(runs), 5000):
        ops.job_runs.insert_many(runs[start:start + 5000], ordered=False)
    ops.lake_census.insert_many([
        {"_id": f"{zone}/velib", "zone": zone, "source": "velib", "files": 3, "bytes": 1000, "oldest_modified": now,
         "updated_at": now} for zone in ("landing", "archive", "quarantine")])
    ops.kafka_lag.insert_one({"_id": "g|t", "group": "g", "topic": "t", "lag": 5, "partitions": {"0": 5},
                              "updated_at": now})
    ops.heartbeats.insert_one({"_id": "velib_stream", "last_batch_at": now, "batch_id": 1, "pid": 1, "host": "h"})


def seed_capacity(data: Any, sites: list[dict[str, Any]], days: list[str], rng: random.Random) -> float:
    """velib_station_capacity: per station-day, hourly seconds observed (most of each hour), empty and full; then
    its rollups, built by the job's code. Returns the seconds that build took."""
    docs = []
    for day in days:
        for s in sites:
            observed = [rng.choice((3600, 3600, 3600, rng.randint(0, 3600))) for _ in range(24)]
            empty = [rng.choice((0, 0, 0, rng.randint(0, o))) for o in observed]
            full = [rng.choice((0, 0, 0, rng.randint(0, o - e))) for o, e in zip(observed, empty, strict=True)]
            docs.append({"_id": f"{s['station_code']}|{day}", "station_code": s["station_code"], "day": day,
                         "name": s["name"], "zone": s["zone"], "insee_code": None, "commune": s["zone"],
                         "capacity": s["capacity"], "max_gap_s": 7200, "observed_s": sum(observed),
                         "empty_s": sum(empty), "full_s": sum(full), "observed_by_hour": observed,
                         "empty_by_hour": empty, "full_by_hour": full})
    for start in range(0, len(docs), 5000):
        data.velib_station_capacity.insert_many(docs[start:start + 5000], ordered=False)
    from cronlake.contracts.velib import STATION_CAPACITY
    from cronlake.core import sink
    from process.velib.capacity import write_rollups

    sink.ensure_indexes(data, STATION_CAPACITY)  # as the job does before it reads the days back
    started = time.perf_counter()
    write_rollups(data, days)
    return time.perf_counter() - started


def day_document_totals(s: Any, start: str, end: str) -> list[dict[str, Any]]:
    """Baseline: the page's former station totals, summed from the station-day documents of the period."""
    from dashboard.pages.velib import capacity_queries as queries
    from dashboard.store import NoData, projection

    collection = s.data[queries.STATION_CAPACITY.name]
    in_period = {"day": {"$gte": start, "$lte": end}}
    sums = {doc["_id"]: doc for doc in collection.aggregate([
        {"$match": in_period},
        {"$group": {"_id": "$station_code", **{m: {"$sum": f"${m}"} for m in queries.MEASURES}}}])}
    if not sums:
        raise NoData(queries.STATION_CAPACITY)
    latest = collection.find_one(in_period, {"_id": 0, "day": 1}, sort=[("day", -1)])["day"]
    about = {doc["station_code"]: doc for doc in collection.find({"day": latest}, projection(queries.ABOUT))}
    missing = [code for code in sums if code not in about]
    if missing:
        earlier = collection.find({**in_period, "station_code": {"$in": missing}}, projection(queries.ABOUT))
        for doc in earlier.sort("day", 1):
            about[doc["station_code"]] = doc
    return [queries.with_shares({**about[code], **{m: total[m] for m in queries.MEASURES}})
            for code, total in sums.items()]


def day_document_hours(s: Any, start: str, end: str, _collection: Any, subject: dict[str, str]
                       ) -> dict[str, list[list[float | None]]]:
    """Baseline: the page's former hour-of-week sums, over the subject's station-day documents of the period."""
    from dashboard.pages.velib import capacity_queries as queries
    from dashboard.store import projection

    return queries.weekday_shares(s.data[queries.STATION_CAPACITY.name].find(
        {**subject, "day": {"$gte": start, "$lte": end}}, projection(queries.HOUR_FIELDS)))


def day_document_options(s: Any, day: str) -> list[dict[str, str]]:
    """Baseline: the page's former heat map subjects, from the station-day documents of `day`."""
    docs = list(s.data["velib_station_capacity"].find({"day": day}, {"_id": 0, "station_code": 1, "name": 1,
                                                                      "zone": 1}))
    zones = sorted({d["zone"] for d in docs if isinstance(d.get("zone"), str)})
    stations = sorted(docs, key=lambda d: (str(d.get("name")), d["station_code"]))
    return ([{"label": f"zone: {z}", "value": f"zone:{z}"} for z in zones]
            + [{"label": f"{d.get('name')} ({d['station_code']})", "value": f"station:{d['station_code']}"}
               for d in stations])


def capacity_before_after(days: list[str], zone_names: list[str], repeat: int, rng: random.Random) -> None:
    """The Capacity callbacks for the default week and for 30 days: p50 with the former reads, with the
    rollups, and the ratio; the same outputs asserted first."""
    from unittest import mock

    from dashboard.pages.velib import capacity
    from dashboard.pages.velib import capacity_queries as queries

    def before() -> Any:
        return mock.patch.multiple(queries, station_totals=day_document_totals, hour_of_week=day_document_hours)

    month = (days[max(0, len(days) - 30)], days[-1])
    cases: list[tuple[str, Callable[[], Any]]] = [("layout (week)", capacity.layout)]
    for label, (first, last) in (("week", (None, None)), (f"{len(days[-30:])} days", month)):
        zone = rng.choice(zone_names)
        cases += [
            (f"render ({label})", lambda first=first, last=last: capacity.render(first, last, 12)),
            (f"heatmap default ({label})", lambda first=first, last=last: capacity.heatmap(first, last, None, 12)),
            (f"heatmap zone ({label})",
             lambda first=first, last=last, zone=zone: capacity.heatmap(first, last, f"zone:{zone}", 12)),
            (f"download ({label})", lambda first=first, last=last: capacity.download(1, first, last, 12)),
        ]
    print(f"\n{'capacity callback':<32} {'before ms':>10} {'after ms':>9} {'ratio':>7}   (p50, nx-27017)")
    p50: dict[str, tuple[float, float]] = {}
    for name, function in cases:
        after_output = json.dumps(function(), cls=plotly.utils.PlotlyJSONEncoder, sort_keys=True)
        with before(), mock.patch.object(capacity, "focus_options", day_document_options):
            before_output = json.dumps(function(), cls=plotly.utils.PlotlyJSONEncoder, sort_keys=True)
            before_ms = median(measure(function, repeat))
        if "render" not in name:  # render's scatter lists stations in the order the reads return them
            assert before_output == after_output, name
        after_ms = median(measure(function, repeat))
        p50[name] = (before_ms, after_ms)
        print(f"{name:<32} {before_ms:>10.1f} {after_ms:>9.1f} {before_ms / after_ms:>6.1f}x")
    for label in ("week", f"{len(days[-30:])} days"):  # a visit: the page's two callbacks on one period
        before_ms, after_ms = (sum(p50[f"{c} ({label})"][i] for c in ("render", "heatmap default")) for i in (0, 1))
        print(f"{'visit: render+heatmap (' + label + ')':<32} {before_ms:>10.1f} {after_ms:>9.1f} "
              f"{before_ms / after_ms:>6.1f}x")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def measure(function: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds per call, the output JSON-encoded as Dash does before answering."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        json.dumps(function(), cls=plotly.utils.PlotlyJSONEncoder)
        times.append(1000 * (time.perf_counter() - started))
    return times


def whole_page(zone: str | None) -> list[Any]:
    """The live page's answer to every refresh before a refresh sent only the changes: the totals, the whole figure
    and the station table (rows of every chosen station) in one `children`."""
    from dash import dcc

    from dashboard import ui
    from dashboard.pages.velib import live

    view = live.render(zone, "fill")
    fields = [field for field, _ in live.TABLE_COLUMNS]
    rows = [dict(zip(fields, values, strict=False)) for trace in view.figure["data"]
            if trace["meta"][0] == "stations" for values in trace["customdata"]]
    return [view.summary, dcc.Graph(id="live-map", figure=view.figure),
            ui.section(view.title, ui.table("live-table", rows, live.TABLE_COLUMNS, page_size=15))]


def live_refresh_table(zone: str, repeat: int) -> None:
    """Bytes and server ms of the live map's answers: the whole page as every refresh sent it before, a page
    view's first answer now, and a refresh now; each encoded as Dash encodes the body of its answer."""
    from dash import no_update
    from dash._callback import GLOBAL_CALLBACK_MAP
    from dash._utils import to_json

    from dashboard.pages.velib import live

    outputs = next(key for key in GLOBAL_CALLBACK_MAP if "live-map.figure" in key).strip(".").split("...")

    def body(response: dict[str, Any]) -> dict[str, Any]:
        return {"multi": True, "response": response}

    def answer(zone: str | None, drawn: str | None) -> tuple[dict[str, Any], int]:
        response: dict[str, Any] = {}
        for target, value in zip(outputs, live.refresh(zone, "fill", 1, drawn), strict=True):
            if value is not no_update:  # Dash leaves those out of its answer
                component, prop = target.split(".")
                response.setdefault(component, {})[prop] = value
        return response, len(to_json(body(response)).encode())

    def before(zone: str | None) -> tuple[None, int]:
        return None, len(to_json(body({"live-content": {"children": whole_page(zone)}})).encode())

    print(f"\n{'live map answer':<34} {'bytes':>9} {'ratio':>6} {'p50 ms':>8} {'ratio':>6} {'cpu ms':>7} {'ratio':>6}"
          "   (ratios against before; cpu = this process: the dashboard's side, not nx-27017's)")
    for label, chosen in (("every zone", None), (f"one zone ({zone})", zone)):
        drawn = answer(chosen, None)[0]["live-drawn"]["data"]
        rows = []
        for kind, call, args in (("before: whole page every minute", before, (chosen,)),
                                 ("now: first answer of a page view", answer, (chosen, None)),
                                 ("now: refresh (changes only)", answer, (chosen, drawn))):
            sizes, times, cpu = [], [], []
            for _ in range(repeat):
                started, started_cpu = time.perf_counter(), time.process_time()
                sizes.append(call(*args)[1])
                times.append(1000 * (time.perf_counter() - started))
                cpu.append(1000 * (time.process_time() - started_cpu))
            rows.append((kind, median(sizes), median(times), median(cpu)))
        print(label)
        base = rows[0]
        for kind, size, ms, cpu_ms in rows:
            print(f"  {kind:<32} {size:>9,.0f} {size / base[1]:>6.3f} {ms:>8.1f} {ms / base[2]:>6.3f} {cpu_ms:>7.1f} "
                  f"{cpu_ms / base[3]:>6.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--stations", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=20, help="calls per callback (default 20)")
    parser.add_argument("--runs-per-day", type=int, default=24, help="job_runs per job and day (default 24)")
    parser.add_argument("--capacity-repeat", type=int, default=5,
                        help="calls per Capacity callback, before and after (default 5)")
    parser.add_argument("--capacity-only", action="store_true", help="seed and time only the Capacity page")
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    sys.path.insert(0, str(REPO))
    from cronlake.ops import embedded

    os.environ.update({**embedded.throwaway_stack_env(state), "CRONLAKE_MONGO_DB": "bench",
                       "CRONLAKE_MONGO_OPS_DB": "bench_ops"})
    from cronlake.core.mongo import data_db, ops_db
    from cronlake.core.settings import load

    settings = load()
    mongo = next(s for s in embedded.services(settings) if s.name == "mongo")
    print(embedded.start(mongo, settings))
    try:
        rng = random.Random(17)
        last = date(2024, 5, 28)
        days = [(last - timedelta(days=n)).isoformat() for n in range(args.days - 1, -1, -1)]
        sites = stations(args.stations)
        started = time.perf_counter()
        if not args.capacity_only:
            seed(data_db(settings), ops_db(settings), sites, days, args.runs_per_day, rng)
        rollups_s = seed_capacity(data_db(settings), sites, days, rng)
        runs = 0 if args.capacity_only else len(JOBS) * len(days) * args.runs_per_day
        print(f"seeded {len(days)} days x {len(sites)} stations ({len(days) * len(sites)} station-days, "
              f"{runs} job runs) in {time.perf_counter() - started:.1f} s, of which velib_capacity's "
              f"write_rollups of every day {rollups_s:.1f} s")
        zone_names = sorted({s["zone"] for s in sites})
        if args.capacity_only:
            from dashboard.app import app  # noqa: F401 - registers the pages and their callbacks

            capacity_before_after(days, zone_names, args.capacity_repeat, rng)
            return 0

        from cronlake.contracts import velib
        from cronlake.core import sink
        from cronlake.core.opsdb import OPS_COLLECTIONS
        from dashboard import store
        from dashboard.app import app  # noqa: F401 - registers the pages and their callbacks
        from dashboard.pages import health
        from dashboard.pages.velib import capacity, extremes, live, model, station, zones

        for collection in (*velib.COLLECTIONS, *OPS_COLLECTIONS):  # as the jobs do
            sink.ensure_indexes(sink.database(settings, collection), collection)

        def forget_options() -> None:
            store.current()._options = (0.0, [])  # what a visit costs once a minute, when the cache expires

        codes = [s["station_code"] for s in sites]
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("live.layout", live.layout),
            ("live.refresh (all stations)", lambda: live.refresh(None, "fill", None, None)),
            ("live.refresh (one zone)", lambda: live.refresh(rng.choice(zone_names), rng.choice(list(live.METRICS)),
                                                            None, None)),
            ("station.layout (cached)", station.layout),
            ("station.layout (uncached)", lambda: (forget_options(), station.layout())[1]),
            ("station.render", lambda: station.render(rng.choice(codes))),
            ("zones.layout", zones.layout),
            ("zones.render", lambda: zones.render(rng.choice(days))),
            ("extremes.layout", extremes.layout),
            ("extremes.render", lambda: extremes.render(rng.choice(days))),
            ("  query: live_stations", lambda: store.current().live_stations()),
            ("  query: station_options", lambda: (forget_options(), store.current().station_options())[1]),
            ("  query: extremes", lambda: store.current().extremes(rng.choice(days))),
            ("capacity.layout", capacity.layout),
            ("capacity.render (7 days)", lambda: capacity.render(None, None, 12)),
            ("capacity.render (30 days)", lambda: capacity.render(days[0], days[-1], 12)),
            ("capacity.heatmap (zone, 7 d)", lambda: capacity.heatmap(None, None, f"zone:{rng.choice(zone_names)}",
                                                                      12)),
            ("capacity.heatmap (30 days)", lambda: capacity.heatmap(days[0], days[-1], None, 12)),
            ("capacity.download (7 days)", lambda: capacity.download(1, None, None, 12)),
            ("model.render", model.render),
            ("health.render", health.render),
        ]
        print(f"\n{'callback':<28} {'p50 ms':>8} {'p95 ms':>8} {'target':>7}  verdict   (nx-27017, SQLite-backed)")
        worst = 0.0
        for name, function in cases:
            function()  # warm caches and the connection pool
            times = measure(function, args.repeat)
            p50, p95 = median(times), quantiles(times, n=20)[-1]
            worst = max(worst, p95)
            verdict = "ok" if p95 <= TARGET_MS else "OVER"
            print(f"{name:<28} {p50:>8.1f} {p95:>8.1f} {TARGET_MS:>7.0f}  {verdict}")
        print(f"\nworst p95 {worst:.1f} ms = {worst / TARGET_MS:.2f} x the {TARGET_MS:.0f} ms target; "
              f"load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        capacity_before_after(days, zone_names, args.capacity_repeat, rng)
        live_refresh_table(max(zone_names, key=[s["zone"] for s in sites].count), args.repeat)
    finally:
        print(embedded.stop(mongo, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
