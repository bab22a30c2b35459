"""Client of the Paris open-data Explore API v2.1 for the Velib real-time availability dataset.

`get_velib_data(nrows)` returns up to `nrows` raw station records, all or nothing: it pages
`/records?limit=100&offset=…` (the API caps `limit` at 100 and `offset + limit` at 10,000) and, for more rows
than paging can reach or for all of them (`nrows=None`), calls `/exports/json` once. Timeouts, connection
errors, HTTP 429/5xx (honouring `Retry-After`) and unparsable JSON are retried with exponential backoff; when
the retries run out it raises `VelibApiError` and returns no partial result.

`VelibSource` is the interface the producer reads from; `ApiSource` (here) and the replay sources
(`ingest.velib.replay`) implement it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests

from cronlake.contracts.velib_zones import ZoneMap
from ingest.velib.records import iso_utc, normalise_api_record

PAGE_LIMIT = 100
PAGING_WINDOW = 10_000  # the API refuses offset + limit above this


class VelibApiError(Exception):
    """The API did not give a usable answer within the retry budget (or answered something unusable)."""


class VelibSource(Protocol):
    """Where the producer gets station snapshots: `fetch` raw rows, `normalise` one into a record."""

    def fetch(self, nrows: int | None) -> list[dict[str, Any]]: ...

    def normalise(self, raw: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries per request, waiting `backoff_s * 2**n` (at most `max_wait_s`) between them."""

    attempts: int = 4
    backoff_s: float = 1.0
    max_wait_s: float = 30.0
    timeout_s: float = 10.0

    def wait_s(self, attempt: int, retry_after: float | None = None) -> float:
        wait = retry_after if retry_after is not None else self.backoff_s * 2 ** attempt
        return min(wait, self.max_wait_s)


class RetryableError(Exception):
    """One failed attempt worth retrying; `retry_after` is the server's wish in seconds, if it said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def get_json(session: requests.Session, url: str, params: Mapping[str, Any], retry: RetryPolicy,
             sleep: Callable[[float], None] = time.sleep) -> Any:
    """GET `url` and parse its JSON body, retrying transient failures; raise VelibApiError at the end."""
    last_error = ""
    for attempt in range(retry.attempts):
        try:
            return get_json_once(session, url, params, retry.timeout_s)
        except RetryableError as exc:
            last_error = str(exc)
            if attempt + 1 < retry.attempts:
                sleep(retry.wait_s(attempt, exc.retry_after))
    raise VelibApiError(f"{url} failed after {retry.attempts} attempts: {last_error}")


def get_json_once(session: requests.Session, url: str, params: Mapping[str, Any], timeout_s: float) -> Any:
    try:
        response = session.get(url, params=params, timeout=timeout_s)
    except requests.Timeout:
        raise RetryableError(f"no answer within {timeout_s:g}s") from None
    except requests.ConnectionError as exc:
        raise RetryableError(f"connection failed ({type(exc).__name__})") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableError(f"HTTP {response.status_code}",
                             parse_retry_after(response.headers.get("Retry-After")))
    if response.status_code != 200:
        raise VelibApiError(f"{response.url} answered HTTP {response.status_code}: {response.text[:200]!r}")
    try:
        return response.json()
    except ValueError:
        raise RetryableError(f"invalid JSON in the answer ({len(response.content)} bytes)") from None


def get_velib_data(nrows: int | None, base_url: str | None = None, session: requests.Session | None = None,
                   retry: RetryPolicy | None = None) -> list[dict[str, Any]]:
    """Up to `nrows` raw v2.1 station records (all of them when `nrows` is None), or VelibApiError."""
    if nrows is not None and nrows < 0:
        raise ValueError(f"nrows must be >= 0, got {nrows}")
    if base_url is None:
        from cronlake.contracts import velib
        from cronlake.core.settings import load

        base_url = velib.api_url(load())
    base_url = base_url.rstrip("/")
    retry = retry or RetryPolicy()
    own_session = session is None
    session = session or requests.Session()
    try:
        if nrows is None or nrows > PAGING_WINDOW:
            return export_records(session, base_url, retry)[:nrows]
        return paged_records(session, base_url, nrows, retry)
    finally:
        if own_session:
            session.close()


def export_records(session: requests.Session, base_url: str, retry: RetryPolicy) -> list[dict[str, Any]]:
    document = get_json(session, f"{base_url}/exports/json", {}, retry)
    if not isinstance(document, list):
        raise VelibApiError(f"{base_url}/exports/json: expected a JSON list, got {type(document).__name__}")
    return document


def paged_records(session: requests.Session, base_url: str, nrows: int, retry: RetryPolicy
                  ) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while len(records) < nrows:
        limit = min(PAGE_LIMIT, nrows - len(records))
        page = get_json(session, f"{base_url}/records", {"limit": limit, "offset": len(records)}, retry)
        if not isinstance(page, dict) or not isinstance(page.get("results"), list):
            raise VelibApiError(f"{base_url}/records: expected {{'total_count', 'results'}}, got {str(page)[:200]!r}")
        records.extend(page["results"][:limit])
        total = page.get("total_count")
        if len(page["results"]) < limit or isinstance(total, int) and len(records) >= total:
            break
    return records


class ApiSource:
    """The live API as a `VelibSource`; its records are observed when `fetch` returned them."""

    def __init__(self, base_url: str, retry: RetryPolicy | None = None, session: requests.Session | None = None,
                 zone_map: ZoneMap | None = None):
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.session = session
        self.zone_map = zone_map
        self.observed_at: str | None = None

    def fetch(self, nrows: int | None) -> list[dict[str, Any]]:
        records = get_velib_data(nrows, self.base_url, self.session, self.retry)
        self.observed_at = iso_utc(datetime.now(UTC))
        return records

    def normalise(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return normalise_api_record(raw, self.zone_map, self.observed_at)
