"""The capacity job on the real two-night slice: time-weighted seconds observed / empty / full per station, local
day and hour, checked against plain Python; the Spark runner and a rerun leave every document unchanged."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
from test_velib_daily import SLICES, lake_root, land, run_job

from cronlake.contracts.velib import commune
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


def expected_seconds(stations: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], dict[str, list[int]]]:
    """Walk each held interval hour by local hour: {(station, day): {measure: 24 hourly seconds}}."""
    result: dict[tuple[str, str], dict[str, list[int]]] = {}
    for code, rows in stations.items():
        for row, following in zip(rows, rows[1:], strict=False):
            moment, until = instant(row), min(instant(following), instant(row) + CAP)
            while moment < until:
                local = moment.astimezone(PARIS)
                boundary = min(until, (local.replace(minute=0, second=0) + timedelta(hours=1)).astimezone(UTC))
                seconds = round((boundary - moment).total_seconds())
                hours = result.setdefault((code, local.date().isoformat()),
                                          {m: [0] * 24 for m in ("observed", "empty", "full")})
                if row["is_installed"] and row["capacity"] > 0:  # out of service: unobserved
                    hours["observed"][local.hour] += seconds
                    hours["empty"][local.hour] += seconds * (row["bikes"] == 0)
                    hours["full"][local.hour] += seconds * (row["docks_free"] == 0)
                moment = boundary
    return result


def test_commune_of_every_shipped_zone() -> None:
    """The contract's rule (INSEE code of an arrondissement → Paris) against the zone boundaries' own communes."""
    zones = ZoneMap.from_folder(DEFAULT_GEO_DIR).by_code.values()
    assert sum(zone.commune == "Paris" for zone in zones) == 20
    for zone in zones:
        assert commune(zone.name, zone.code) == zone.commune, zone


def documents() -> dict[str, dict[str, Any]]:
    return {d["_id"]: d for d in data_db(settings_module.load())[capacity.STATION_CAPACITY.name].find()}


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
    expected = expected_seconds(stored)
    gaps = [instant(b) - instant(a) for rows in stored.values() for a, b in zip(rows, rows[1:], strict=False)]
    assert any(gap > CAP for gap in gaps)  # the night gaps of the history: the cap matters on this slice
    docs = computed["documents"]
    assert {(d["station_code"], d["day"]) for d in docs.values()} == set(expected)
    assert {d["day"] for d in docs.values()} == {"2022-05-12", "2022-05-13"}
    for (code, day), hours in expected.items():
        doc = docs[f"{code}|{day}"]
        for measure, seconds in hours.items():
            assert doc[f"{measure}_by_hour"] == seconds, (code, day, measure)
            assert doc[f"{measure}_s"] == sum(seconds), (code, day, measure)
        assert doc["max_gap_s"] == CAP.total_seconds()
    # name, zone and capacity are those of the station's last snapshot of the day
    last = {}
    for code, rows in stored.items():
        for row in rows[:-1]:  # the very last snapshot holds nothing
            last[(code, instant(row).astimezone(PARIS).date().isoformat())] = row
    for (code, day), row in last.items():
        doc = docs[f"{code}|{day}"]
        assert (doc["name"], doc["zone"], doc["capacity"]) == (row["name"], row["zone"], row["capacity"])
        assert doc["commune"] == row["zone"]  # the slice's zones are communes (no INSEE code)
    full = sum(d["full_s"] for d in docs.values()) / sum(d["observed_s"] for d in docs.values())
    assert 0 < full < 1


def test_spark_runner_and_rerun_change_nothing(computed: dict[str, Any], spark: object) -> None:
    for argv in (["--runner", "spark", "--day", "2022-05-12", "--day", "2022-05-13"], ["--day", "2022-05-13"]):
        assert capacity.JOB.main(argv) == 0
        assert documents() == computed["documents"], argv
    runs = list(ops_db(settings_module.load()).job_runs.find({"job": "velib_capacity", "status": "succeeded"}))
    assert len(runs) == 3
