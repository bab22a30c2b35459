"""Fail-fast reachability checks: each raises SettingError naming the setting whose server does not answer."""

from __future__ import annotations

import socket
import uuid

from cronlake.core.settings import SettingError, Settings, mask_secret

TIMEOUT_S = 3.0


def require_kafka(settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
    """A Kafka broker answers an API-versions request at one of the bootstrap servers."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            client_id="cronlake-check",
        )
        admin.close()
    except (KafkaError, OSError, ValueError) as exc:
        raise SettingError(
            f"CRONLAKE_KAFKA_BOOTSTRAP: no Kafka broker answers at {settings.kafka_bootstrap} ({type(exc).__name__})"
        ) from None


def require_mongo(settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
    """MongoDB answers a ping with these credentials."""
    from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

    from cronlake.core.mongo import client

    try:
        client(settings, timeout_s=timeout_s).admin.command("ping")
    except (ConfigurationError, OperationFailure) as exc:
        raise SettingError(f"CRONLAKE_MONGO_URI: {mask_secret(settings.mongo_uri)} refused: {exc}") from None
    except PyMongoError as exc:
        raise SettingError(
            f"CRONLAKE_MONGO_URI: no MongoDB answers at {mask_secret(settings.mongo_uri)} ({type(exc).__name__})"
        ) from None


def require_lake(settings: Settings, round_trip: bool = False) -> None:
    """The lake root answers a listing; with `round_trip`, also a write, read back and delete of a hidden file
    (the NameNode answering is not enough: writes go to DataNodes by the host names the NameNode gives)."""
    from cronlake.core.lake import open_lake

    setting = "CRONLAKE_WEBHDFS_URL" if settings.lake_scheme == "hdfs" else "CRONLAKE_LAKE_ROOT"
    try:
        lake = open_lake(settings)
        lake.list("landing")
    except Exception as exc:  # noqa: BLE001 - any failure here means the lake setting is unusable
        raise SettingError(f"{setting}: the lake at {settings.lake_root} does not answer ({exc})") from None
    if not round_trip:
        return
    probe, token = f"checkpoints/_check/{uuid.uuid4().hex}", uuid.uuid4().hex
    try:
        lake.put_text(probe, token)
        if lake.read_text(probe) != token:
            raise OSError("the file read back differs from the one written")
        lake.delete(probe)
    except Exception as exc:  # noqa: BLE001 - a lake that cannot take a write is unusable too
        raise SettingError(f"{setting}: the lake at {settings.lake_root} answers but a write and read back "
                           f"failed: {exc}") from None


def require_all(settings: Settings) -> None:
    require_lake(settings, round_trip=True)
    require_mongo(settings)
    require_kafka(settings)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
