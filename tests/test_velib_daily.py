"""The Velib batch job on real history slices: statistics checked against plain Python, DataFrame = SQL,
idempotent reruns and replays, malformed rows and wrong headers quarantined."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from statistics import mean
from zoneinfo import ZoneInfo

import pytest
from conftest import FIXTURES, run_cli

from cronlake.contracts import velib
from cronlake.core import settings as settings_module
from cronlake.core.mongo import data_db, ops_db
from process.velib import daily as velib_daily
from process.velib.stats import daily_stats

SLICES = [FIXTURES / "velib_batch" / "velib-history-part1.csv", FIXTURES / "velib_batch" / "velib-history-part2.csv"]
PARIS = ZoneInfo("Europe/Paris")


def lake_root(env: dict[str, str]) -> Path:
    return Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://"))


def land(env: dict[str, str], *files: Path, name: str | None = None) -> None:
    landing = lake_root(env) / "landing" / "velib"
    landing.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy(file, landing / (name or file.name))


def run_job(*args: str) -> None:
    assert velib_daily.JOB.main(list(args)) == 0


def identity(row: dict[str, str]) -> tuple[str, ...]:
    """A CSV row's snapshot identity: station, reported_at, counts and flags, as text."""
    return tuple(row[c] for c in ("station_code", "reported_at", "capacity", "bikes", "mechanical", "ebike",
                                  "docks_free", "is_installed", "is_renting", "is_returning"))


def expected_from_csv(files: list[Path]) -> dict[str, dict]:
    """The statistics recomputed with the csv module: one sample per distinct identity (station, reported_at,
    counts, flags), the copy observed first; day = the Paris date of observed_at."""
    snapshots: dict[tuple[str, ...], dict] = {}
    for file in files:
        with open(file, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                key = identity(row)
                if key not in snapshots or row["observed_at"] < snapshots[key]["observed_at"]:
                    snapshots[key] = row
    by_station, by_zone = defaultdict(list), defaultdict(list)
    for row in snapshots.values():
        moment = datetime.fromisoformat(row["observed_at"].replace("Z", "+00:00"))
        day = moment.astimezone(PARIS).date().isoformat()
        by_station[(row["station_code"], day)].append(row)
        by_zone[(row["zone"], day)].append(row)

    def ints(rows: list[dict], column: str) -> list[int]:
        return [int(r[column]) for r in rows]

    stations = {
        key: {"samples": len(rows), "avg_bikes": mean(ints(rows, "bikes")), "min_bikes": min(ints(rows, "bikes")),
              "max_bikes": max(ints(rows, "bikes")), "avg_mechanical": mean(ints(rows, "mechanical")),
              "avg_ebike": mean(ints(rows, "ebike")), "avg_docks_free": mean(ints(rows, "docks_free")),
              "zero_bike_samples": ints(rows, "bikes").count(0), "zero_dock_samples": ints(rows, "docks_free").count(0)}
        for key, rows in by_station.items()
    }
    zones = {
        key: {"stations": len({r["station_code"] for r in rows}), "samples": len(rows),
              "avg_bikes": mean(ints(rows, "bikes")),
              "fill_ratio": mean(ints(rows, "bikes")) / mean(ints(rows, "capacity"))}
        for key, rows in by_zone.items()
    }
    last = {}
    for row in sorted(snapshots.values(), key=lambda r: r["observed_at"]):
        last[(row["station_code"], datetime.fromisoformat(row["observed_at"].replace("Z", "+00:00")).astimezone(
            PARIS).date().isoformat())] = row
    for key, values in stations.items():
        values.update(name=last[key]["name"], capacity=int(last[key]["capacity"]))
    empty = {(day, code) for (code, day), values in stations.items() if values["zero_bike_samples"]}
    return {"stations": stations, "zones": zones, "empty": empty, "rows": len(snapshots)}


def test_the_slices_hold_the_feeds_real_reserve_pattern():
    """The real slices re-serve one (station, reported_at) with changed counts and re-serve unchanged copies:
    the identity keeps every change once and drops every unchanged copy."""
    rows = [row for file in SLICES for row in csv.DictReader(open(file, newline="", encoding="utf-8"))]
    by_time: dict[tuple[str, str], set] = defaultdict(set)
    for row in rows:
        by_time[(row["station_code"], row["reported_at"])].add(identity(row))
    changed = [key for key, identities in by_time.items() if len(identities) > 1]
    assert len(changed) > 50  # 92 of the 730 (station, reported_at) come back with other counts
    assert len(rows) > len({identity(r) for r in rows}) > len(by_time)
    assert expected_from_csv(SLICES)["rows"] == len({identity(r) for r in rows})


def mongo_state() -> dict[str, list[dict]]:
    database = data_db(settings_module.load())
    return {name: sorted(database[name].find({}, {"_id": 0}), key=lambda d: sorted(d.items()))
            for name in (c.name for c in velib_daily.TABLES)}


def parquet_rows(spark, env: dict[str, str]) -> int:
    dataset = env["CRONLAKE_LAKE_ROOT"] + "/processed/velib_status"
    return spark.read.schema(velib.STATUS.spark_schema()).parquet(dataset).count()


def test_daily_statistics_match_plain_python_and_reruns_change_nothing(spark, cronlake_env):
    expected = expected_from_csv(SLICES)
    assert {day for _, day in expected["stations"]} == {"2022-05-12", "2022-05-13"}  # the slice spans local midnight

    land(cronlake_env, *SLICES)
    run_job()

    state = mongo_state()
    stations = {(d["station_code"], d["day"]): d for d in state["velib_station_daily"]}
    assert stations.keys() == expected["stations"].keys()
    for key, values in expected["stations"].items():
        for column, value in values.items():
            assert stations[key][column] == pytest.approx(value, abs=1e-6), (key, column)
    zones = {(d["zone"], d["day"]): d for d in state["velib_zone_daily"]}
    assert zones.keys() == expected["zones"].keys()
    for key, values in expected["zones"].items():
        for column, value in values.items():
            assert zones[key][column] == pytest.approx(value, abs=1e-6), (key, column)
    assert {(d["day"], d["station_code"]) for d in stations.values() if d["zero_bike_samples"]} == expected["empty"]
    assert parquet_rows(spark, cronlake_env) == expected["rows"]
    archived = sorted(p.name for p in (lake_root(cronlake_env) / "archive" / "velib").iterdir())
    assert archived == sorted(p.name for p in SLICES)

    # A rerun of both days with no new file, then a replayed file (same content, new name) through the command
    # line with the SQL engine: nothing added, nothing changed.
    run_job("--day", "2022-05-12", "--day", "2022-05-13")
    assert mongo_state() == state
    land(cronlake_env, SLICES[1], name="velib-replayed.csv")
    result = run_cli([sys.executable, "-m", "cronlake.ops.run", "velib_daily", "--engine", "sql",
                      "--day", "2022-05-12"], cronlake_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert parquet_rows(spark, cronlake_env) == expected["rows"]
    assert mongo_state() == state
    run = ops_db(settings_module.load()).job_runs.find_one({"job": "velib_daily"}, sort=[("started_at", -1)])
    assert run["status"] == "succeeded" and run["rows_out"] == 0 and run["files_archived"] == 1


def test_dataframe_and_sql_statistics_are_identical(spark):
    from pyspark.sql import functions as F

    status = (
        spark.read.option("header", True).schema(velib_daily.CSV_SCHEMA).csv([str(p) for p in SLICES])
        .withColumns({name: F.to_timestamp(name) for name in velib_daily.TIMES}).drop("_corrupt_record")
        .withColumn("day", velib_daily.local_day(F.col("observed_at"), "Europe/Paris"))
        .dropDuplicates(velib_daily.KEY)
    )
    by_dataframe, by_sql = daily_stats(status, "dataframe"), daily_stats(status, "sql")
    for frame, sql in zip(by_dataframe, by_sql, strict=True):
        assert frame.columns == sql.columns
        rows_frame, rows_sql = sorted(frame.collect()), sorted(sql.collect())
        assert len(rows_frame) > 0
        assert len(rows_frame) == len(rows_sql)
        for a, b in zip(rows_frame, rows_sql, strict=True):
            assert a.asDict() == pytest.approx(b.asDict())


def test_malformed_rows_and_wrong_header_are_quarantined(spark, cronlake_env, tmp_path):
    with open(SLICES[0], newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, good = rows[0], rows[1:41]
    broken = [list(good[0]), list(good[1]), list(good[2]), list(good[3])]
    broken[0][3] = "many"                # bikes not an integer
    broken[1][7] = "OUI"                 # is_installed not true/false
    broken[2][10] = "yesterday"          # reported_at not a time
    broken[3][3] = "-2"                  # negative bikes
    mixed = tmp_path / "velib-mixed.csv"
    with open(mixed, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *good[4:], *broken])
    wrong = tmp_path / "velib-wrong-header.csv"
    wrong.write_text("stationcode,numbikesavailable\n16107,3\n", encoding="utf-8")
    land(cronlake_env, mixed, wrong)

    run_job()

    quarantine = lake_root(cronlake_env) / "quarantine" / "velib"
    assert (quarantine / "velib-wrong-header.csv").exists()
    assert "unexpected header" in (quarantine / "velib-wrong-header.csv.reason.json").read_text()
    rejects_file = quarantine / "velib-mixed.csv.velib_daily.rejects.jsonl"
    rejects = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    reasons = sorted(r["reason"].split(" (")[0] for r in rejects)
    assert reasons == ["negative count", "reported_at is not an ISO-8601 UTC time", "unparseable row",
                       "unparseable row"]
    assert sorted(r["record"]["station_code"] for r in rejects) == sorted(row[0] for row in broken)
    run = ops_db(settings_module.load()).job_runs.find_one({"job": "velib_daily"})
    assert run["records_quarantined"] == len(broken) and run["files_quarantined"] == 1
    assert parquet_rows(spark, cronlake_env) == len({(r[0], *r[2:11]) for r in good[4:]})  # distinct identities


def test_spark_and_duckdb_runners_give_identical_outputs(spark, cronlake_env, tmp_path, monkeypatch):
    """The same landing files (two real slices across local midnight, a replayed copy, malformed rows and a wrong
    header) through each runner into its own lake and database: same Parquet rows, rejects and documents."""
    with open(SLICES[0], newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    broken = [list(row) for row in rows[1:5]]
    broken[0][3], broken[1][7], broken[2][10], broken[3][3] = "many", "OUI", "yesterday", "-2"
    mixed = tmp_path / "velib-mixed.csv"
    with open(mixed, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([rows[0], *rows[5:200], *broken])
    wrong = tmp_path / "velib-wrong-header.csv"
    wrong.write_text("stationcode,numbikesavailable\n16107,3\n", encoding="utf-8")

    outputs = {}
    for runner in ("spark", "duckdb"):
        env = {**cronlake_env, "CRONLAKE_LAKE_ROOT": (tmp_path / runner).as_uri(),
               "CRONLAKE_MONGO_DB": f"{cronlake_env['CRONLAKE_MONGO_DB']}_{runner}"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        land(env, *SLICES, mixed, wrong)
        run_job("--runner", runner)
        land(env, SLICES[1], name="velib-replayed.csv")  # a second run: deduplicated against the processed days
        run_job("--runner", runner, "--day", "2022-05-12")
        dataset = env["CRONLAKE_LAKE_ROOT"] + "/processed/velib_status"
        snapshots = spark.read.schema(velib.STATUS.spark_schema()).parquet(dataset)
        rejects = (lake_root(env) / "quarantine" / "velib" / "velib-mixed.csv.velib_daily.rejects.jsonl").read_text()
        outputs[runner] = {"snapshots": sorted(snapshots.collect()), "mongo": mongo_state(),
                           "rejects": sorted(rejects.splitlines())}

    assert len(outputs["spark"]["snapshots"]) > 500 and len(outputs["spark"]["rejects"]) == len(broken)
    for name in ("snapshots", "rejects", "mongo"):
        assert outputs["duckdb"][name] == outputs["spark"][name], name


def test_averages_are_the_exact_mean_rounded_half_even():
    """An exact tie at the 7th decimal goes to the even neighbour, whatever side of it the binary float lies on;
    any other average is its exact mean rounded to 6 decimals; a ratio is rounded as before."""
    for total, samples, stored in [(3, 640, 0.004688), (1, 640, 0.001562), (7, 640, 0.010938), (5, 640, 0.007812)]:
        row = {"samples": samples, "avg_bikes": total / samples}
        assert velib_daily.document_value(row, "avg_bikes") == stored, (total, samples)
    assert round(3 / 640, 6) == 0.004687  # what rounding the float gave
    for bikes in ([8, 9, 9], [0, 1], [3] * 7 + [4]):
        row = {"samples": len(bikes), "avg_bikes": sum(bikes) / len(bikes)}
        exact = (Decimal(sum(bikes)) / len(bikes)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN)
        assert velib_daily.document_value(row, "avg_bikes") == float(exact)
    assert velib_daily.document_value({"samples": 3, "fill_ratio": 2 / 3}, "fill_ratio") == 0.666667
