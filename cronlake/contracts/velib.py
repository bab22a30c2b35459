"""The Velib pipeline's contracts: its settings, record types, processed datasets and MongoDB collections."""

from __future__ import annotations

from cronlake.core.settings import Settings, check_http_url, check_topic_name

DEFAULT_API_URL = "https://opendata.paris.fr/api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel"
DEFAULT_TOPIC = "velib.station_status"


def api_url(settings: Settings) -> str:
    """`CRONLAKE_VELIB_API_URL`: the Explore API v2.1 dataset the producer polls."""
    return settings.get("CRONLAKE_VELIB_API_URL", DEFAULT_API_URL, check_http_url)


def topic(settings: Settings) -> str:
    """`CRONLAKE_VELIB_TOPIC`: the Kafka topic of normalised station records."""
    return settings.get("CRONLAKE_VELIB_TOPIC", DEFAULT_TOPIC, check_topic_name)
