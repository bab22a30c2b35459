"""Keyset pages over one pinned version of a Delta table.

The first page reads the table's current (or requested) version; its token pins that version, the query's
filters and the sort key of the page's last row, so every later page reads the same snapshot after that key: rows
landing meanwhile (in a newer version) neither repeat nor shift a row across pages. The token is base64url JSON
with an HMAC-SHA256 over it (the server secret): opaque to clients and tamper-evident.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb

from cronlake.core import versioned
from cronlake.core.contracts import Dataset
from cronlake.core.lake import Lake

DUCKDB_TYPES = {"string": "VARCHAR", "int": "INTEGER", "long": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN",
                "timestamp": "TIMESTAMPTZ", "date": "DATE"}


class BadToken(ValueError):
    """A page token that was not made by this server (or not for this dataset)."""


@dataclass(frozen=True)
class Query:
    """What a page reads: the version, the equality filters, the time range on `time_column`."""

    version: int | None
    filters: Mapping[str, str]
    since: str | None = None
    until: str | None = None


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    version: int | None
    more: bool


def sign(secret: bytes, payload: Mapping[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = base64.urlsafe_b64encode(hmac.new(secret, body, hashlib.sha256).digest())
    return f"{body.decode().rstrip('=')}.{mac.decode().rstrip('=')}"


def unsign(secret: bytes, token: str) -> dict[str, Any]:
    body, _, mac = token.partition(".")
    try:
        raw_body = body.encode("ascii")
        expected = base64.urlsafe_b64encode(hmac.new(secret, pad(raw_body), hashlib.sha256).digest())
        if not hmac.compare_digest(expected.decode().rstrip("="), mac):
            raise BadToken("page_token was altered or not made by this server")
        payload = json.loads(base64.urlsafe_b64decode(pad(raw_body)))
    except (UnicodeEncodeError, ValueError) as exc:
        raise BadToken(f"page_token is not a page token: {exc}") from None
    if not isinstance(payload, dict):
        raise BadToken("page_token is not a page token")
    return payload


def pad(text: bytes) -> bytes:
    return text + b"=" * (-len(text) % 4)


def plain(value: Any) -> Any:
    """A cell as JSON: times in ISO-8601."""
    return value.isoformat() if isinstance(value, datetime | date) else value


def read_page(lake: Lake, dataset: Dataset, sort_key: Sequence[str], query: Query, time_column: str | None,
              page_size: int, after: Sequence[Any] | None, as_of: datetime | None = None) -> Page:
    """Up to `page_size` rows in `sort_key` order after the key `after` (`more` when rows follow them). Raises
    LookupError for a version that does not exist."""
    table = versioned.open_table(lake, dataset, query.version, None if query.version is not None else as_of)
    if table is None:
        return Page([], None, False)
    kinds = {c.name: c.kind for c in dataset.columns}
    clauses, parameters = [], []
    for column, value in query.filters.items():
        clauses.append(f'CAST("{column}" AS VARCHAR) = ?')
        parameters.append(value)
    if time_column and query.since:
        clauses.append(f'"{time_column}" >= CAST(? AS TIMESTAMPTZ)')
        parameters.append(query.since)
    if time_column and query.until:
        clauses.append(f'"{time_column}" < CAST(? AS TIMESTAMPTZ)')
        parameters.append(query.until)
    if after is not None:
        clause, values = after_key(sort_key, kinds, after)
        clauses.append(clause)
        parameters.extend(values)
    order = ", ".join(f'"{c}"' for c in sort_key)
    sql = (f"SELECT * FROM snapshot {'WHERE ' + ' AND '.join(clauses) if clauses else ''} "
           f"ORDER BY {order} LIMIT {int(page_size) + 1}")
    connection = duckdb.connect()
    try:
        connection.register("snapshot", table.to_pyarrow_dataset())
        connection.execute("SET TimeZone = 'UTC'")
        found = connection.execute(sql, parameters).fetch_arrow_table().to_pylist()
    finally:
        connection.close()
    rows = [{name: plain(value) for name, value in row.items()} for row in found[:page_size]]
    return Page(rows, table.version(), len(found) > page_size)


def after_key(sort_key: Sequence[str], kinds: Mapping[str, str], after: Sequence[Any]) -> tuple[str, list[Any]]:
    """The lexicographic `(k1, k2, …) > (a1, a2, …)` as SQL (spelled out: each key column typed from the contract)."""
    if len(after) != len(sort_key):
        raise BadToken("page_token does not match the sort key")
    ors, parameters = [], []
    for position, column in enumerate(sort_key):
        ands = []
        for equal, value in zip(sort_key[:position], after[:position], strict=True):
            ands.append(f'"{equal}" = CAST(? AS {DUCKDB_TYPES[kinds[equal]]})')
            parameters.append(value)
        ands.append(f'"{column}" > CAST(? AS {DUCKDB_TYPES[kinds[column]]})')
        parameters.append(after[position])
        ors.append("(" + " AND ".join(ands) + ")")
    return "(" + " OR ".join(ors) + ")", parameters
