"""The capacity job on the real two-night slice: time-weighted seconds observed / empty / full per station, local
day and hour, and the rollups the page reads (running totals per day, zone-days), checked against plain Python;
the Spark runner and a rerun leave every document unchanged, and reprocessing a day rebuilds its later totals."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
from test_velib_daily import SLICES, lake_root, land, run_job

from cronlake.contracts.velib import commune, running_rows
from cronlake.contracts.velib_zones import DEFAULT_GEO_DIR, ZoneMap
from cronlake.core import settings as settings_module
from cronlake.core.mongo import data_db, ops_db
from process.velib import capacity

PARIS = ZoneInfo("Europe/Paris")
CAP = timedelta(minutes=capacity.MAX_GAP_MINUTES)


def snapshots(lake: Path) -> dict[str, list[dict[str, Any]]]:
    """Per station, the snapshots velib_daily stored in processed/velib_status (its Parquet files read with
    pyarrow), in the order of the job's time column. The job's input, whatever velib_daily's dedup rule."""
    stations: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for file in sorted((lake / "processed" / "velib_status").rglob("*.parquet")):
        for row in pq.read_table(file, columns=list(capacity.COLUMNS)).to_pylist():
            stations[row["station_code"]].append(row)
    return {code: sorted(rows, key=instant) for code, rows in stations.items()}


def instant(row: dict[str, Any]) -> datetime:
    return row[capacity.TIME].astimezone(UTC)


Key = tuple[str, str]  # (station, local day)


def expected_seconds(stations: dict[str, list[dict[str, Any]]]
                     ) -> tuple[dict[Key, dict[str, list[int]]], dict[Key, dict[str, Any]]]:
    """Walk each held interval hour by local hour: {(station, day): {measure: 24 hourly seconds}}, and per
    (station, day) the last snapshot holding time in it (whose name, zone and capacity the day takes)."""
    result: dict[Key, dict[str, list[int]]] = {}
    holder: dict[Key, dict[str, Any]] = {}
    for code, rows in stations.items():
        for row, following in zip(rows, rows[1:], strict=False):
            moment, until = instant(row), min(instant(following), instant(row) + CAP)
            while moment < until:
                local = moment.astimezone(PARIS)
                boundary = min(until, (local.replace(minute=0, second=0) + timedelta(hours=1)).astimezone(UTC))
                seconds = round((boundary - moment).total_seconds())
                key = (code, local.date().isoformat())
                hours = result.setdefault(key, {m: [0] * 24 for m in ("observed", "empty", "full")})
                holder[key] = row
                if row["is_installed"] and row["capacity"] > 0:  # out of service: unobserved
                    hours["observed"][local.hour] += seconds
                    hours["empty"][local.hour] += seconds * (row["bikes"] == 0)
                    hours["full"][local.hour] += seconds * (row["docks_free"] == 0)
                moment = boundary
    return result, holder


def test_commune_of_every_shipped_zone() -> None:
    """The contract's rule (INSEE code of an arrondissement → Paris) against the zone boundaries' own communes."""
    zones = ZoneMap.from_folder(DEFAULT_GEO_DIR).by_code.values()
    assert sum(zone.commune == "Paris" for zone in zones) == 20
    for zone in zones:
        assert commune(zone.name, zone.code) == zone.commune, zone


def documents() -> dict[str, dict[str, Any]]:
    """Every document the job writes, by collection and `_id`."""
    data = data_db(settings_module.load())
    return {f"{collection.name}/{d['_id']}": d
            for collection in (capacity.STATION_CAPACITY, capacity.CAPACITY_RUNNING, capacity.ZONE_CAPACITY)
            for d in data[collection.name].find()}


def station_days(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The `velib_station_capacity` documents of `documents()`, by their `_id`."""
    prefix = f"{capacity.STATION_CAPACITY.name}/"
    return {key.removeprefix(prefix): d for key, d in docs.items() if key.startswith(prefix)}


@pytest.fixture(scope="module")
def computed(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both slices through velib_daily, then velib_capacity for every stored day (runner auto: DuckDB here)."""
    root = tmp_path_factory.mktemp("capacity")
    env = {**stack, "CRONLAKE_STATE_DIR": str(root / "state"), "CRONLAKE_LAKE_ROOT": (root / "lake").as_uri(),
           "CRONLAKE_MONGO_DB": f"cap_{root.name[-8:]}", "CRONLAKE_MONGO_OPS_DB": f"cap_{root.name[-8:]}_ops"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        land(env, *SLICES)
        run_job()
        assert capacity.JOB.main([]) == 0
        yield {"env": env, "documents": documents(), "stored": snapshots(lake_root(env))}


def test_seconds_match_plain_python(computed: dict[str, Any]) -> None:
    stored = computed["stored"]
    expected, holder = expected_seconds(stored)
    gaps = [instant(b) - instant(a) for rows in stored.values() for a, b in zip(rows, rows[1:], strict=False)]
    assert any(gap > CAP for gap in gaps)  # the night gaps of the history: the cap matters on this slice
    docs = station_days(computed["documents"])
    assert {(d["station_code"], d["day"]) for d in docs.values()} == set(expected)
    assert {d["day"] for d in docs.values()} == {"2022-05-12", "2022-05-13"}
    for (code, day), hours in expected.items():
        doc = docs[f"{code}|{day}"]
        for measure, seconds in hours.items():
            assert doc[f"{measure}_by_hour"] == seconds, (code, day, measure)
            assert doc[f"{measure}_s"] == sum(seconds), (code, day, measure)
        assert doc["max_gap_s"] == CAP.total_seconds()
    # name, zone and capacity are those of the station's last snapshot holding time that day
    for (code, day), row in holder.items():
        doc = docs[f"{code}|{day}"]
        assert (doc["name"], doc["zone"], doc["capacity"]) == (row["name"], row["zone"], row["capacity"])
        assert doc["commune"] == row["zone"]  # the slice's zones are communes (no INSEE code)
    full = sum(d["full_s"] for d in docs.values()) / sum(d["observed_s"] for d in docs.values())
    assert 0 < full < 1


def test_rollups_match_plain_python(computed: dict[str, Any]) -> None:
    """Running totals: per day, each station's seconds and days from the first day through that day, named as on
    its latest day; zone-days: the hourly seconds of the stations the day's last snapshot put in the zone."""
    stored = computed["stored"]
    expected, holder = expected_seconds(stored)
    docs = computed["documents"]
    for day in ("2022-05-12", "2022-05-13"):
        totals: dict[str, dict[str, Any]] = {}
        for (code, seen), hours in sorted(expected.items(), key=lambda item: item[0][1]):
            if seen <= day:
                row = totals.setdefault(code, {"days": 0, "observed": 0, "empty": 0, "full": 0})
                row["days"] += 1
                row.update({measure: row[measure] + sum(seconds) for measure, seconds in hours.items()})
                row["zone"] = holder[(code, seen)]["zone"]
        running = running_rows(docs[f"{capacity.CAPACITY_RUNNING.name}/{day}"])
        assert {r["station_code"]: (r["days"], r["observed_s"], r["empty_s"], r["full_s"], r["zone"])
                for r in running} == {code: (r["days"], r["observed"], r["empty"], r["full"], r["zone"])
                                      for code, r in totals.items()}, day
    zones: dict[tuple[str, str], dict[str, list[int]]] = {}
    for (code, day), hours in expected.items():
        zone = zones.setdefault((holder[(code, day)]["zone"], day), {m: [0] * 24 for m in hours})
        for measure, seconds in hours.items():
            zone[measure] = [a + b for a, b in zip(zone[measure], seconds, strict=True)]
    stored_zones = {(d["zone"], d["day"]): d for key, d in docs.items()
                    if key.startswith(capacity.ZONE_CAPACITY.name)}
    assert set(stored_zones) == set(zones)
    for key, hours in zones.items():
        for measure, seconds in hours.items():
            assert stored_zones[key][f"{measure}_by_hour"] == seconds, (key, measure)
            assert stored_zones[key][f"{measure}_s"] == sum(seconds), (key, measure)


def test_spark_runner_and_rerun_change_nothing(computed: dict[str, Any], spark: object) -> None:
    for argv in (["--runner", "spark", "--day", "2022-05-12", "--day", "2022-05-13"], ["--day", "2022-05-13"]):
        assert capacity.JOB.main(argv) == 0
        assert documents() == computed["documents"], argv
    runs = list(ops_db(settings_module.load()).job_runs.find({"job": "velib_capacity", "status": "succeeded"}))
    assert len(runs) == 3


def test_reprocessed_day_rebuilds_its_later_rollups(computed: dict[str, Any]) -> None:
    """A day's documents changed behind the job's back (and a zone-day of its own) are put right by reprocessing
    that day, and the next day's running totals, which carry it, with them."""
    data = data_db(settings_module.load())
    data[capacity.STATION_CAPACITY.name].update_many({"day": "2022-05-12"}, {"$inc": {"full_s": 3600}})
    assert capacity.write_rollups(data, ["2022-05-12"]) > 0
    assert documents() != computed["documents"]
    data[capacity.ZONE_CAPACITY.name].insert_one({"_id": "nowhere|2022-05-12", "zone": "nowhere", "day": "2022-05-12"})
    assert capacity.JOB.main(["--day", "2022-05-12"]) == 0
    assert documents() == computed["documents"]


def test_rollups_missing_are_built_for_every_stored_day(computed: dict[str, Any]) -> None:
    """A collection filled before the rollups existed: the next run of one day builds them for every day."""
    data = data_db(settings_module.load())
    for collection in (capacity.CAPACITY_RUNNING, capacity.ZONE_CAPACITY):
        data[collection.name].delete_many({})
    assert capacity.JOB.main(["--day", "2022-05-13"]) == 0
    assert documents() == computed["documents"]
