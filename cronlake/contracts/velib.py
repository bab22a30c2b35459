"""The Velib pipeline's contracts: its settings, record types, processed datasets and MongoDB collections."""

from __future__ import annotations

from pathlib import Path

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
    Field("reported_at", "timestamp"),  # ISO-8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`
    Field("lat", "double", optional=True),
    Field("lon", "double", optional=True),
    Field("zone"),
    Field("insee_code", optional=True),
))

# --- processed datasets --------------------------------------------------------------------------------------

# Deduplicated snapshots by (station_code, reported_at); `day` (the Europe/Paris date of reported_at) is the
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
    fields=("info", "latest", "day", "day_sums", "batch_id", "minutes"))
MODEL_RUNS = Collection(
    "velib_model_runs", key=("version",), produced_by="velib_train", indexes=(("-trained_at",),),
    fields=("version", "trained_at", "train_until", "test_from", "rows_train", "rows_test", "metrics", "path",
            "positives_train", "positives_test", "positive_rate_test", "classifier", "features", "class_weight",
            "threshold", "fit_until", "params", "pr_curve", "pr_curve_validation"))
PREDICTIONS = Collection(
    "velib_predictions", key=("station_code",), produced_by="velib_train", indexes=(("-probability_full",),),
    fields=("station_code", "name", "zone", "at", "probability_full", "predicted_full", "model_version"))
COLLECTIONS = (STATION_DAILY, ZONE_DAILY, LIVE_STATION, LIVE_ZONE, LIVE_BUCKETS, MODEL_RUNS, PREDICTIONS)

# The Velib jobs that fill the kit's operations collections (what the health page tells an empty deployment to run).
FILLS_OPS = {"job_runs": "velib_daily", "heartbeats": "velib_stream", "kafka_lag": "velib_land"}


def topics(settings: Settings) -> tuple[str, ...]:
    """The Kafka topics the pipeline's jobs own (`Job.kafka_topics`)."""
    return (topic(settings),)
