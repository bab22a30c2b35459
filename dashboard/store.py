"""Every MongoDB read the dashboard makes: projected queries, and validation of user inputs.

The dashboard only reads: collection names, fields and producing jobs come from the contracts
(`cronlake.contracts.velib`, and the ops collections of `cronlake.core` and `cronlake.ops`), and the indexes its
queries use are created by the jobs that fill the collections (`cronlake.core.sink`), so the dashboard's MongoDB
user needs no write right. The pages never touch pymongo themselves. Each query returns only the fields a page
shows, and filters with equality on values that were first checked against what the database offers (station
codes, zones, days), so nothing a user types becomes an operator, a regex or a `$where`. An empty collection
raises `NoData`, which names the job that fills it; the pages turn it into a message instead of a traceback.
"""

from __future__ import annotations

import re
import time
from datetime import date
from functools import lru_cache
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import PyMongoError

from cronlake.contracts import velib
from cronlake.contracts.velib import LIVE_STATION, LIVE_ZONE, MODEL_RUNS, PREDICTIONS, STATION_DAILY, ZONE_DAILY
from cronlake.core import settings as settings_module
from cronlake.core.contracts import Collection
from cronlake.core.mongo import data_db, ops_db
from cronlake.core.opsdb import HEARTBEATS, JOB_RUNS, KAFKA_LAG, LAKE_CENSUS
from cronlake.core.settings import Settings, mask_secret

RUN = "python -m cronlake.ops.run"

OPTIONS_TTL_S = 60.0
STATION_CODE = re.compile(r"[0-9A-Za-z_]{1,32}")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

EXTREME_FIELDS = ("station_code", "name", "zone", "capacity", "samples", "zero_bike_samples", "zero_dock_samples")
JOB_FIELDS = ("status", "started_at", "ended_at", "duration_s", "rows_in", "rows_out", "records_quarantined",
              "files_archived", "files_quarantined", "error")


class NoData(Exception):
    """A collection the page needs is empty or missing; each of `commands` runs a job that fills it."""

    def __init__(self, collection: Collection):
        super().__init__(f"{collection.name} is empty")
        self.collection = collection.name
        producers = velib.FILLS_OPS.get(collection.name, collection.produced_by)
        self.commands = [f"{RUN} {job}" for job in producers.split(", ")]


class InvalidInput(ValueError):
    """A query parameter or input value that is not one of the values the dashboard offers."""


def projection(fields: tuple[str, ...]) -> dict[str, int]:
    return {"_id": 0, **{name: 1 for name in fields}}


def parse_day(value: object) -> str:
    """A strict YYYY-MM-DD calendar day, returned in that same form."""
    if not isinstance(value, str) or not DAY.fullmatch(value):
        raise InvalidInput(f"not a day (YYYY-MM-DD): {str(value)[:40]!r}")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidInput(f"not a calendar day: {value!r}") from None


class Store:
    """The dashboard's view of the data db and the ops db of one deployment."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.data: Database = data_db(settings)
        self.ops: Database = ops_db(settings)
        self._options: tuple[float, list[dict[str, str]]] = (0.0, [])

    def describe_failure(self, exc: PyMongoError) -> str:
        """One line naming the setting to check."""
        uri = mask_secret(self.settings.mongo_uri)
        return f"CRONLAKE_MONGO_URI: MongoDB at {uri} does not answer ({type(exc).__name__})"

    def ping(self) -> None:
        """Fail once, fast, before a page runs several queries that would each wait for the server timeout."""
        self.data.client.admin.command("ping")

    # --- validation against the values offered -------------------------------------------------------------

    def check_station(self, code: object) -> str:
        if not isinstance(code, str) or not STATION_CODE.fullmatch(code):
            raise InvalidInput(f"not a station code: {str(code)[:40]!r}")
        known = (self.data[LIVE_STATION.name].find_one({"_id": code}, {"_id": 1})
                 or self.data[STATION_DAILY.name].find_one({"station_code": code}, {"_id": 1}))
        if known is None:
            raise InvalidInput(f"unknown station code {code!r}")
        return code

    def check_zone(self, zone: object) -> str:
        if not isinstance(zone, str) or zone not in self.live_zones():
            raise InvalidInput(f"unknown zone {str(zone)[:80]!r}")
        return zone

    def check_day(self, collection: Collection, day: object) -> str:
        parsed = parse_day(day)
        if self.data[collection.name].find_one({"day": parsed}, {"_id": 1}) is None:
            raise InvalidInput(f"no {collection.name} data for {parsed}")
        return parsed

    # --- live ----------------------------------------------------------------------------------------------

    def live_zones(self) -> list[str]:
        return sorted(z for z in self.data[LIVE_STATION.name].distinct("zone") if isinstance(z, str))

    def live_stations(self) -> list[dict[str, Any]]:
        """Every live station: the map colours all zones whichever zone is chosen, so the page filters itself."""
        fields = ("station_code", "name", "zone", "lat", "lon", "capacity", "latest")
        rows = list(self.data[LIVE_STATION.name].find({}, projection(fields)))
        if not rows:
            raise NoData(LIVE_STATION)
        return rows

    def live_zone_rows(self) -> list[dict[str, Any]]:
        fields = ("zone", "stations", "today", "last_hour", "updated_at")
        return list(self.data[LIVE_ZONE.name].find({}, projection(fields)).sort("_id", ASCENDING))

    # --- stations ------------------------------------------------------------------------------------------

    def latest_day(self, collection: Collection) -> str:
        doc = self.data[collection.name].find_one({}, {"_id": 0, "day": 1}, sort=[("day", DESCENDING)])
        if doc is None:
            raise NoData(collection)
        return doc["day"]

    def days(self, collection: Collection) -> list[str]:
        days = sorted((d for d in self.data[collection.name].distinct("day") if isinstance(d, str)), reverse=True)
        if not days:
            raise NoData(collection)
        return days

    def station_options(self) -> list[dict[str, str]]:
        """Every station known live or in the latest daily summary, as (code, name, zone).

        Cached for OPTIONS_TTL_S: the station list changes a few times a year, and every visit of the station
        page needs it (1,500 documents).
        """
        expires, options = self._options
        if time.monotonic() < expires:
            return options
        options = self._station_options()
        self._options = (time.monotonic() + OPTIONS_TTL_S, options)
        return options

    def _station_options(self) -> list[dict[str, str]]:
        fields = ("station_code", "name", "zone")
        stations = {}
        try:
            day = self.latest_day(STATION_DAILY)
            for doc in self.data[STATION_DAILY.name].find({"day": day}, projection(fields)):
                stations[doc["station_code"]] = doc
        except NoData:
            pass
        for doc in self.data[LIVE_STATION.name].find({}, projection(fields)):
            stations[doc["station_code"]] = doc
        if not stations:
            raise NoData(STATION_DAILY)
        return sorted(stations.values(), key=lambda d: (str(d.get("name") or ""), d["station_code"]))

    def station_history(self, code: str) -> list[dict[str, Any]]:
        fields = tuple(f for f in STATION_DAILY.fields if f != "station_code")
        query = {"station_code": self.check_station(code)}
        return list(self.data[STATION_DAILY.name].find(query, projection(fields)).sort("day", ASCENDING))

    def station_live(self, code: str) -> dict[str, Any] | None:
        fields = ("name", "zone", "capacity", "latest", "today", "last_hour")
        return self.data[LIVE_STATION.name].find_one({"_id": code}, projection(fields))

    def station_prediction(self, code: str) -> dict[str, Any] | None:
        fields = ("at", "probability_full", "predicted_full", "model_version")
        return self.data[PREDICTIONS.name].find_one({"_id": code}, projection(fields))

    # --- daily summaries -----------------------------------------------------------------------------------

    def zone_daily(self, day: str) -> list[dict[str, Any]]:
        query = {"day": self.check_day(ZONE_DAILY, day)}
        return list(self.data[ZONE_DAILY.name].find(query, projection(ZONE_DAILY.fields)).sort("zone", ASCENDING))

    def extremes(self, day: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Stations that ran empty and stations that ran full on `day`, most often first.

        One equality query on the (day) index; the filtering is done here, which keeps to plain equality on a
        validated value and reads each station-day once for both lists.
        """
        day = self.check_day(STATION_DAILY, day)
        rows = list(self.data[STATION_DAILY.name].find({"day": day}, projection(EXTREME_FIELDS)))

        def ranked(counter: str) -> list[dict[str, Any]]:
            hits = [r for r in rows if (r.get(counter) or 0) > 0]
            return sorted(hits, key=lambda r: (-r[counter], r["station_code"]))

        return ranked("zero_bike_samples"), ranked("zero_dock_samples")

    # --- model ---------------------------------------------------------------------------------------------

    def latest_model_run(self) -> dict[str, Any]:
        fields = ("version", "trained_at", "train_until", "test_from", "rows_train", "rows_test", "metrics",
                  "pr_curve", "threshold")
        doc = self.data[MODEL_RUNS.name].find_one({}, projection(fields), sort=[("trained_at", DESCENDING)])
        if doc is None:
            raise NoData(MODEL_RUNS)
        return doc

    def top_predictions(self, limit: int = 30) -> list[dict[str, Any]]:
        fields = ("station_code", "name", "zone", "at", "probability_full", "predicted_full", "model_version")
        cursor = self.data[PREDICTIONS.name].find({}, projection(fields))
        rows = list(cursor.sort("probability_full", DESCENDING).limit(limit))
        if not rows:
            raise NoData(PREDICTIONS)
        return rows

    # --- operations ----------------------------------------------------------------------------------------

    def job_status(self) -> list[dict[str, Any]]:
        """The latest run of every job: one index-backed (job, started_at) lookup per job name."""
        rows = []
        for job in sorted(j for j in self.ops[JOB_RUNS.name].distinct("job") if isinstance(j, str)):
            latest = self.ops[JOB_RUNS.name].find_one({"job": job}, projection(JOB_FIELDS),
                                                      sort=[("started_at", DESCENDING)])
            rows.append({"job": job, **latest})
        if not rows:
            raise NoData(JOB_RUNS)
        return rows

    def recent_failures(self, limit: int = 10) -> list[dict[str, Any]]:
        query = {"status": {"$in": ["failed", "died"]}}
        fields = ("job", "status", "started_at", "error")
        return list(self.ops[JOB_RUNS.name].find(query, projection(fields)).sort("started_at", DESCENDING).limit(limit))

    def lake_census(self) -> list[dict[str, Any]]:
        fields = ("zone", "source", "files", "bytes", "oldest_modified", "updated_at")
        rows = list(self.ops[LAKE_CENSUS.name].find({}, projection(fields)).sort("_id", ASCENDING))
        if not rows:
            raise NoData(LAKE_CENSUS)
        return rows

    def kafka_lag(self) -> list[dict[str, Any]]:
        fields = ("group", "topic", "lag", "partitions", "updated_at")
        rows = list(self.ops[KAFKA_LAG.name].find({}, projection(fields)).sort("_id", ASCENDING))
        if not rows:
            raise NoData(KAFKA_LAG)
        return rows

    def heartbeats(self) -> list[dict[str, Any]]:
        fields = {"last_batch_at": 1, "alive_at": 1, "batch_id": 1, "pid": 1, "host": 1}
        rows = list(self.ops[HEARTBEATS.name].find({}, fields).sort("_id", ASCENDING))
        if not rows:
            raise NoData(HEARTBEATS)
        return rows


@lru_cache(maxsize=1)
def current() -> Store:
    """The store of this process's settings (one MongoDB client per process, shared by all requests)."""
    return Store(settings_module.load())

