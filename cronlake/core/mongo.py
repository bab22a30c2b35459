"""MongoDB access for jobs and the dashboard: one client per process, with short, explicit timeouts."""

from __future__ import annotations

from functools import lru_cache

from pymongo import MongoClient
from pymongo.database import Database

from cronlake.core.settings import Settings


@lru_cache(maxsize=8)
def _client(uri: str, timeout_ms: int) -> MongoClient:
    return MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        appname="cronlake",
    )


def client(settings: Settings, timeout_s: float = 5.0) -> MongoClient:
    return _client(settings.mongo_uri, int(timeout_s * 1000))


def data_db(settings: Settings) -> Database:
    """The database the pipelines feed and the dashboard reads."""
    return client(settings)[settings.mongo_db]


def ops_db(settings: Settings) -> Database:
    """The database of operations records (job runs)."""
    return client(settings)[settings.mongo_ops_db]
