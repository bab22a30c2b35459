"""Every MongoDB read the dashboard makes: index creation, projected queries, and validation of user inputs.

The pages never touch pymongo themselves. Each query returns only the fields a page shows, and filters with
equality on values that were first checked against what the database offers (station codes, zones, days),
so nothing a user types becomes an operator, a regex or a `$where`. An empty collection raises `NoData`,
which names the command that fills it; the pages turn it into a message instead of a traceback.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import date
from functools import lru_cache
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import PyMongoError

from cronlake.core import settings as settings_module
from cronlake.core.mongo import data_db, ops_db
from cronlake.core.settings import Settings, mask_secret

log = logging.getLogger(__name__)

RUN = "python -m cronlake.ops.run"
FILLED_BY = {
    "velib_live_station": f"{RUN} velib_stream",
    "velib_live_zone": f"{RUN} velib_stream",
    "velib_station_daily": f"{RUN} velib_daily",
    "velib_zone_daily": f"{RUN} velib_daily",
    "velib_model_runs": f"{RUN} velib_train",
    "velib_predictions": f"{RUN} velib_train",
    "churn_predictions": f"{RUN} churn_stream",
    "churn_model_runs": f"{RUN} churn_train",
    "job_runs": f"{RUN} velib_daily",
    "lake_census": f"{RUN} lake_census",
    "kafka_lag": f"{RUN} velib_land",
    "heartbeats": f"{RUN} velib_stream",
}

OPTIONS_TTL_S = 60.0
STATION_CODE = re.compile(r"[0-9A-Za-z_]{1,32}")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

DAILY_FIELDS = ("day", "samples", "avg_bikes", "min_bikes", "max_bikes", "avg_mechanical", "avg_ebike",
                "avg_docks_free", "min_docks_free", "max_docks_free", "zero_bike_samples", "zero_dock_samples")
ZONE_DAILY_FIELDS = ("zone", "stations", "samples", "avg_bikes", "avg_mechanical", "avg_ebike", "avg_docks_free",
                     "fill_ratio")
EXTREME_FIELDS = ("station_code", "name", "zone", "capacity", "samples", "zero_bike_samples", "zero_dock_samples")
JOB_FIELDS = ("status", "started_at", "ended_at", "duration_s", "rows_in", "rows_out", "records_quarantined",
              "files_archived", "files_quarantined", "error")


class NoData(Exception):
    """A collection the page needs is empty or missing."""

    def __init__(self, collection: str):
        super().__init__(f"{collection} is empty")
        self.collection = collection
        self.command = FILLED_BY[collection]


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

    def ensure_indexes(self) -> None:
        """Create the indexes the pages' queries use; idempotent, and the unique ones match the job contracts."""
        data, ops = self.data, self.ops
        data.velib_live_station.create_index([("zone", ASCENDING)])
        data.velib_station_daily.create_index([("station_code", ASCENDING), ("day", ASCENDING)], unique=True)
        data.velib_station_daily.create_index([("day", ASCENDING)])
        data.velib_zone_daily.create_index([("zone", ASCENDING), ("day", ASCENDING)], unique=True)
        data.velib_zone_daily.create_index([("day", ASCENDING)])
        data.velib_model_runs.create_index([("trained_at", DESCENDING)])
        data.velib_predictions.create_index([("probability_full", DESCENDING)])
        ops.job_runs.create_index([("job", ASCENDING), ("started_at", DESCENDING)])
        ops.job_runs.create_index([("status", ASCENDING), ("started_at", DESCENDING)])

    # --- validation against the values offered -------------------------------------------------------------

    def check_station(self, code: object) -> str:
        if not isinstance(code, str) or not STATION_CODE.fullmatch(code):
            raise InvalidInput(f"not a station code: {str(code)[:40]!r}")
        known = (self.data.velib_live_station.find_one({"_id": code}, {"_id": 1})
                 or self.data.velib_station_daily.find_one({"station_code": code}, {"_id": 1}))
        if known is None:
            raise InvalidInput(f"unknown station code {code!r}")
        return code

    def check_zone(self, zone: object) -> str:
        if not isinstance(zone, str) or zone not in self.live_zones():
            raise InvalidInput(f"unknown zone {str(zone)[:80]!r}")
        return zone

    def check_day(self, collection: str, day: object) -> str:
        parsed = parse_day(day)
        if self.data[collection].find_one({"day": parsed}, {"_id": 1}) is None:
            raise InvalidInput(f"no {collection} data for {parsed}")
        return parsed

    # --- live ----------------------------------------------------------------------------------------------

    def live_zones(self) -> list[str]:
        return sorted(z for z in self.data.velib_live_station.distinct("zone") if isinstance(z, str))

    def live_stations(self, zone: str | None = None) -> list[dict[str, Any]]:
        query = {} if zone is None else {"zone": self.check_zone(zone)}
        fields = ("station_code", "name", "zone", "lat", "lon", "capacity", "latest")
        rows = list(self.data.velib_live_station.find(query, projection(fields)))
        if not rows and zone is None:
            raise NoData("velib_live_station")
        return rows

    def live_zone_rows(self) -> list[dict[str, Any]]:
        fields = ("zone", "stations", "today", "last_hour", "updated_at")
        return list(self.data.velib_live_zone.find({}, projection(fields)).sort("_id", ASCENDING))

    # --- stations ------------------------------------------------------------------------------------------

    def latest_day(self, collection: str) -> str:
        doc = self.data[collection].find_one({}, {"_id": 0, "day": 1}, sort=[("day", DESCENDING)])
        if doc is None:
            raise NoData(collection)
        return doc["day"]

    def days(self, collection: str) -> list[str]:
        days = sorted((d for d in self.data[collection].distinct("day") if isinstance(d, str)), reverse=True)
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
            day = self.latest_day("velib_station_daily")
            for doc in self.data.velib_station_daily.find({"day": day}, projection(fields)):
                stations[doc["station_code"]] = doc
        except NoData:
            pass
        for doc in self.data.velib_live_station.find({}, projection(fields)):
            stations[doc["station_code"]] = doc
        if not stations:
            raise NoData("velib_station_daily")
        return sorted(stations.values(), key=lambda d: (str(d.get("name") or ""), d["station_code"]))

    def station_history(self, code: str) -> list[dict[str, Any]]:
        fields = ("name", "zone", "capacity", *DAILY_FIELDS)
        query = {"station_code": self.check_station(code)}
        return list(self.data.velib_station_daily.find(query, projection(fields)).sort("day", ASCENDING))

    def station_live(self, code: str) -> dict[str, Any] | None:
        fields = ("name", "zone", "capacity", "latest", "today", "last_hour")
        return self.data.velib_live_station.find_one({"_id": code}, projection(fields))

    def station_prediction(self, code: str) -> dict[str, Any] | None:
        fields = ("at", "probability_full", "predicted_full", "model_version")
        return self.data.velib_predictions.find_one({"_id": code}, projection(fields))

    # --- daily summaries -----------------------------------------------------------------------------------

    def zone_daily(self, day: str) -> list[dict[str, Any]]:
        query = {"day": self.check_day("velib_zone_daily", day)}
        return list(self.data.velib_zone_daily.find(query, projection(ZONE_DAILY_FIELDS)).sort("zone", ASCENDING))

    def extremes(self, day: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Stations that ran empty and stations that ran full on `day`, most often first.

        One equality query on the (day) index; the filtering is done here, which keeps to plain equality on a
        validated value and reads each station-day once for both lists.
        """
        day = self.check_day("velib_station_daily", day)
        rows = list(self.data.velib_station_daily.find({"day": day}, projection(EXTREME_FIELDS)))

        def ranked(counter: str) -> list[dict[str, Any]]:
            hits = [r for r in rows if (r.get(counter) or 0) > 0]
            return sorted(hits, key=lambda r: (-r[counter], r["station_code"]))

        return ranked("zero_bike_samples"), ranked("zero_dock_samples")

    # --- model ---------------------------------------------------------------------------------------------

    def latest_model_run(self) -> dict[str, Any]:
        fields = ("version", "trained_at", "train_until", "test_from", "rows_train", "rows_test", "metrics")
        doc = self.data.velib_model_runs.find_one({}, projection(fields), sort=[("trained_at", DESCENDING)])
        if doc is None:
            raise NoData("velib_model_runs")
        return doc

    def top_predictions(self, limit: int = 30) -> list[dict[str, Any]]:
        fields = ("station_code", "name", "zone", "at", "probability_full", "predicted_full", "model_version")
        cursor = self.data.velib_predictions.find({}, projection(fields))
        rows = list(cursor.sort("probability_full", DESCENDING).limit(limit))
        if not rows:
            raise NoData("velib_predictions")
        return rows

    # --- operations ----------------------------------------------------------------------------------------

    def job_status(self) -> list[dict[str, Any]]:
        """The latest run of every job: one index-backed (job, started_at) lookup per job name."""
        rows = []
        for job in sorted(j for j in self.ops.job_runs.distinct("job") if isinstance(j, str)):
            latest = self.ops.job_runs.find_one({"job": job}, projection(JOB_FIELDS), sort=[("started_at", DESCENDING)])
            rows.append({"job": job, **latest})
        if not rows:
            raise NoData("job_runs")
        return rows

    def recent_failures(self, limit: int = 10) -> list[dict[str, Any]]:
        query = {"status": {"$in": ["failed", "died"]}}
        fields = ("job", "status", "started_at", "error")
        return list(self.ops.job_runs.find(query, projection(fields)).sort("started_at", DESCENDING).limit(limit))

    def lake_census(self) -> list[dict[str, Any]]:
        fields = ("zone", "source", "files", "bytes", "oldest_modified", "updated_at")
        rows = list(self.ops.lake_census.find({}, projection(fields)).sort("_id", ASCENDING))
        if not rows:
            raise NoData("lake_census")
        return rows

    def kafka_lag(self) -> list[dict[str, Any]]:
        fields = ("group", "topic", "lag", "partitions", "updated_at")
        rows = list(self.ops.kafka_lag.find({}, projection(fields)).sort("_id", ASCENDING))
        if not rows:
            raise NoData("kafka_lag")
        return rows

    def heartbeats(self) -> list[dict[str, Any]]:
        fields = {"last_batch_at": 1, "alive_at": 1, "batch_id": 1, "pid": 1, "host": 1}
        rows = list(self.ops.heartbeats.find({}, fields).sort("_id", ASCENDING))
        if not rows:
            raise NoData("heartbeats")
        return rows


@lru_cache(maxsize=1)
def current() -> Store:
    """The store of this process's settings (one MongoDB client per process, shared by all requests)."""
    return Store(settings_module.load())


def ensure_indexes(store: Store) -> None:
    """Create the indexes at app start; a MongoDB that is down or refuses only costs a warning."""
    try:
        store.ensure_indexes()
    except PyMongoError as exc:
        log.warning("dashboard: could not create indexes (%s); pages will still load", store.describe_failure(exc))


def ensure_indexes_in_background(store: Store) -> None:
    """Index creation off the start path: `--help` and a gunicorn worker boot never wait for MongoDB."""
    threading.Thread(target=ensure_indexes, args=(store,), name="ensure-indexes", daemon=True).start()
