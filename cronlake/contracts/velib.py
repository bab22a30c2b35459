"""The Velib pipeline's contracts: its settings, record types, processed datasets and MongoDB collections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cronlake.core.contracts import Collection, Dataset, Field, RecordType
from cronlake.core.settings import Settings, check_http_url, check_topic_name

DEFAULT_API_URL = "https://opendata.paris.fr/api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel"
DEFAULT_TOPIC = "velib.station_status"


def api_url(settings: Settings) -> str:
    """`CRONLAKE_VELIB_API_URL`: the Explore API v2.1 dataset the producer polls."""
    return settings.get("CRONLAKE_VELIB_API_URL", DEFAULT_API_URL, check_http_url)


def geo_dir(settings: Settings) -> Path | None:
    """`CRONLAKE_VELIB_GEO_DIR`: a folder of zone boundaries (GeoJSON) to use instead of the copy shipped in
    ingest/velib/geo (None: that copy)."""
    value = settings.get("CRONLAKE_VELIB_GEO_DIR", "")
    return Path(value) if value else None


def topic(settings: Settings) -> str:
    """`CRONLAKE_VELIB_TOPIC`: the Kafka topic of normalised station records."""
    return settings.get("CRONLAKE_VELIB_TOPIC", DEFAULT_TOPIC, check_topic_name)


# --- the station snapshot record: Kafka messages, landing CSV files, the stream's parsed rows ------------------

COUNTS = ("capacity", "bikes", "mechanical", "ebike", "docks_free")
FLAGS = ("is_installed", "is_renting", "is_returning")

STATION = RecordType("velib_station_snapshot", (
    Field("station_code", non_empty=True),
    Field("name"),
    *(Field(name, "int", minimum=0) for name in COUNTS),
    *(Field(name, "bool") for name in FLAGS),
    Field("reported_at", "timestamp"),  # ISO-8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`: when the station last reported
    Field("observed_at", "timestamp"),  # when the producer fetched it (the history: `snapshot_commit_time_utc`)
    Field("lat", "double", optional=True),
    Field("lon", "double", optional=True),
    Field("zone"),
    Field("insee_code", optional=True),
))

# What identifies a snapshot (docs/data-contracts.md, "Snapshot identity"): the station, its reported_at and its
# content, the counts and flags. The feed re-serves one reported_at with new counts (a real change, kept) and
# re-serves unchanged copies (the same identity, counted once: the copy observed first). `observed_at` is not
# part of it: it says when a copy was seen, and is the time axis of the statistics.
IDENTITY = ("station_code", "reported_at", *COUNTS, *FLAGS)


def snapshot_identity(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The identity of a station record (a dict with the STATION fields)."""
    return tuple(record[name] for name in IDENTITY)


def observation_order(record: Mapping[str, Any]) -> tuple[Any, Any]:
    """The order a station's records are sent and applied in: by observation, then report time."""
    return record["observed_at"], record["reported_at"]


# --- processed datasets --------------------------------------------------------------------------------------

# Distinct snapshots by IDENTITY (the copy observed first); `day` (the Europe/Paris date of observed_at) is the
# partition column, read back as a string.
STATUS = Dataset("velib_status", (*STATION.fields, Field("day")), produced_by="velib_daily", partition_by=("day",))

# --- MongoDB serving collections -------------------------------------------------------------------------------
# `_id` = the key values joined by "|" (`Collection.document_id`); in the daily keys the day goes last because
# nx-27017 does not match string ids that start with a date.

STATION_DAILY = Collection(
    "velib_station_daily", key=("station_code", "day"), produced_by="velib_daily", indexes=(("day",),),
    fields=("station_code", "day", "name", "zone", "capacity", "samples", "avg_bikes", "min_bikes", "max_bikes",
            "avg_mechanical", "avg_ebike", "avg_docks_free", "min_docks_free", "max_docks_free",
            "zero_bike_samples", "zero_dock_samples"))
ZONE_DAILY = Collection(
    "velib_zone_daily", key=("zone", "day"), produced_by="velib_daily", indexes=(("day",),),
    fields=("zone", "day", "stations", "samples", "avg_bikes", "avg_mechanical", "avg_ebike", "avg_docks_free",
            "fill_ratio"))
LIVE_STATION = Collection(
    "velib_live_station", key=("station_code",), produced_by="velib_stream", indexes=(("zone",),),
    fields=("station_code", "name", "zone", "lat", "lon", "capacity", "latest", "today", "last_hour", "updated_at"))
LIVE_ZONE = Collection(
    "velib_live_zone", key=("zone",), produced_by="velib_stream",
    fields=("zone", "stations", "today", "last_hour", "updated_at"))
# The stream's own state (`_id` = station code), from which the two live collections are recomputed.
LIVE_BUCKETS = Collection(
    "velib_live_buckets", key=("_id",), produced_by="velib_stream",
    fields=("info", "latest", "day", "day_sums", "batch_id", "minutes", "seen"))
MODEL_RUNS = Collection(
    "velib_model_runs", key=("version",), produced_by="velib_train", indexes=(("-trained_at",),),
    fields=("version", "trained_at", "train_until", "test_from", "rows_train", "rows_test", "metrics", "path",
            "positives_train", "positives_test", "positive_rate_test", "classifier", "features", "class_weight",
            "threshold", "fit_until", "params", "pr_curve", "pr_curve_validation"))
PREDICTIONS = Collection(
    "velib_predictions", key=("station_code",), produced_by="velib_train", indexes=(("-probability_full",),),
    fields=("station_code", "name", "zone", "at", "probability_full", "predicted_full", "model_version"))
# Capacity sizing (`process/velib/capacity.py`): seconds observed / empty / full per station and local day, in total
# and per local hour (24 integers each), additive over any period; the page reads a period by (day), a zone's
# hours by (zone, day) and a station's by its key.
STATION_CAPACITY = Collection(
    "velib_station_capacity", key=("station_code", "day"), produced_by="velib_capacity",
    indexes=(("day",), ("zone", "day")),
    fields=("station_code", "day", "name", "zone", "insee_code", "commune", "capacity", "max_gap_s", "observed_s",
            "empty_s", "full_s", "observed_by_hour", "empty_by_hour", "full_by_hour"))
# Rollups of those documents, kept exact by the same job so the page reads a few documents per period, not one per
# station-day. Running totals: one document per calendar day from the first stored day, holding every station seen
# so far with its seconds and days summed from the first day through this one and its name, zone, commune and
# capacity of its latest day; a period's seconds are the difference of two days' totals. Stored as columns (one
# list per field, aligned by station): a fraction of the decoding cost of a list of station sub-documents.
RUNNING_COLUMNS = ("station_code", "days", "name", "zone", "commune", "capacity", "observed_s", "empty_s", "full_s")
CAPACITY_RUNNING = Collection(
    "velib_capacity_running", key=("day",), produced_by="velib_capacity", fields=("day", *RUNNING_COLUMNS))
# Per zone and local day: its stations' seconds summed, in total and per local hour (a zone's hour-of-week map).
ZONE_CAPACITY = Collection(
    "velib_zone_capacity", key=("zone", "day"), produced_by="velib_capacity",
    fields=("zone", "day", "stations", "observed_s", "empty_s", "full_s", "observed_by_hour", "empty_by_hour",
            "full_by_hour"))
PARIS_ARRONDISSEMENTS = frozenset(f"751{number:02d}" for number in range(1, 21))  # their INSEE codes


def running_rows(document: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A running-totals document's stations, one dict each (none for no document)."""
    if document is None:
        return []
    columns = [document[name] for name in RUNNING_COLUMNS]
    return [dict(zip(RUNNING_COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)]


def running_document(day: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The running-totals document of `day` for station rows (every field of `RUNNING_COLUMNS`)."""
    rows = list(rows)
    return {"day": day, **{name: [row[name] for row in rows] for name in RUNNING_COLUMNS}}


def commune(zone: str, insee_code: str | None) -> str:
    """A zone's commune, the second level: "Paris" for an arrondissement (INSEE 75101-75120), else the zone."""
    return "Paris" if insee_code in PARIS_ARRONDISSEMENTS else zone


COLLECTIONS = (STATION_DAILY, ZONE_DAILY, LIVE_STATION, LIVE_ZONE, LIVE_BUCKETS, MODEL_RUNS, PREDICTIONS,
               STATION_CAPACITY, CAPACITY_RUNNING, ZONE_CAPACITY)

# The Velib jobs that fill the kit's operations collections (what the health page tells an empty deployment to run).
FILLS_OPS = {"job_runs": "velib_daily", "heartbeats": "velib_stream", "kafka_lag": "velib_land"}


def topics(settings: Settings) -> tuple[str, ...]:
    """The Kafka topics the pipeline's jobs own (`Job.kafka_topics`)."""
    return (topic(settings),)
