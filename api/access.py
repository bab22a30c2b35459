"""Access control: hashed API keys with per-dataset read scopes, expiry and revocation; a per-key rate limit;
the audit trail of every request.

A key is `<key id>.<secret>`; the ops database keeps only the secret's SHA-256 (a random 256-bit secret needs no
slow hash), compared in constant time. Scopes are dataset names, or `*` for every dataset.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cronlake.core import sink
from cronlake.core.mongo import ops_db
from cronlake.core.opsdb import API_AUDIT, API_KEYS
from cronlake.core.runner import utcnow
from cronlake.core.settings import Settings

ALL_DATASETS = "*"
@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate_per_minute: int

    def may_read(self, dataset: str) -> bool:
        return ALL_DATASETS in self.scopes or dataset in self.scopes


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(settings: Settings, name: str, scopes: Iterable[str], expires_in: timedelta | None = None,
               rate_per_minute: int | None = None) -> tuple[str, dict[str, Any]]:
    """A new key: the token to hand over (shown once, never stored) and its stored document."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = utcnow()
    document = {"_id": key_id, "name": name, "secret_sha256": digest(secret), "scopes": sorted(set(scopes)),
                "created_at": now, "expires_at": now + expires_in if expires_in else None, "revoked_at": None,
                "rate_per_minute": rate_per_minute}
    sink.upsert(ops_db(settings), API_KEYS, [document])
    return f"{key_id}.{secret}", document


def list_keys(settings: Settings) -> list[dict[str, Any]]:
    return list(ops_db(settings)[API_KEYS.name].find({}, {"secret_sha256": 0}).sort("created_at", 1))


def revoke_key(settings: Settings, key_id: str) -> bool:
    """Revoke a key at once (its next request is a 401); False for an unknown key id."""
    result = ops_db(settings)[API_KEYS.name].update_one({"_id": key_id}, {"$set": {"revoked_at": utcnow()}})
    return result.matched_count == 1


def authenticate(settings: Settings, token: str, default_rate: int, now: datetime | None = None) -> ApiKey | None:
    """The key a token belongs to, or None for a malformed, unknown, wrong, expired or revoked one."""
    key_id, _, secret = token.partition(".")
    if not key_id or not secret:
        return None
    document = ops_db(settings)[API_KEYS.name].find_one({"_id": key_id})
    if document is None or not hmac.compare_digest(document["secret_sha256"], digest(secret)):
        return None
    now = now or utcnow()
    if document.get("revoked_at") is not None or (document.get("expires_at") and document["expires_at"] <= now):
        return None
    return ApiKey(key_id, document.get("name", ""), tuple(document.get("scopes", ())),
                  int(document.get("rate_per_minute") or default_rate))


class RateLimiter:
    """A token bucket per key (`rate` requests a minute, bursts up to `rate`), for at most `max_keys` keys at a
    time: the least recently seen key is forgotten first, so memory stays bounded. Per server process."""

    def __init__(self, max_keys: int = 10_000, clock: Any = time.monotonic):
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()

    def retry_after(self, key_id: str, rate_per_minute: int) -> float:
        """0 when the request may go ahead (and is counted), else the seconds until it may."""
        per_second = rate_per_minute / 60.0
        with self._lock:
            now = self._clock()
            tokens, seen = self._buckets.pop(key_id, (float(rate_per_minute), now))
            tokens = min(float(rate_per_minute), tokens + (now - seen) * per_second)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / per_second
            self._buckets[key_id] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


def audit(settings: Settings, record: dict[str, Any]) -> None:
    ops_db(settings)[API_AUDIT.name].insert_one({"_id": secrets.token_hex(12), "at": utcnow(), **record})
