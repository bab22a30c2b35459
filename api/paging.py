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


def total_order(dataset: Dataset, leading: Sequence[str]) -> tuple[str, ...]:
    """`leading` columns, then every other column: rows tied on a (non-unique) key still have one order."""
    return (*leading, *(c for c in dataset.column_names if c not in leading))


def read_page(lake: Lake, dataset: Dataset, order: Sequence[str], query: Query, time_column: str | None,
              page_size: int, after: Sequence[Any] | None = None, skip: int = 0, as_of: datetime | None = None
              ) -> Page:
    """Up to `page_size` rows in `order` (nulls last) from the row values `after` on, skipping the first `skip`
    rows equal to `after` (the ones earlier pages returned: whole duplicate rows have no order among themselves);
    `more` when rows follow. Raises LookupError for a version that does not exist."""
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
        clause, values = at_or_after(order, kinds, after)
        clauses.append(clause)
        parameters.extend(values)
    sql = (f"SELECT * FROM snapshot {'WHERE ' + ' AND '.join(clauses) if clauses else ''} "
           f"ORDER BY {', '.join(f'{quoted(c)} ASC NULLS LAST' for c in order)} "
           f"LIMIT {int(page_size) + 1} OFFSET {int(skip)}")
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("snapshot", table.to_pyarrow_dataset())
        found = connection.sql(sql, params=parameters).to_arrow_table().to_pylist()
    finally:
        connection.close()
    rows = [{name: plain(value) for name, value in row.items()} for row in found[:page_size]]
    return Page(rows, table.version(), len(found) > page_size)


def cursor(rows: Sequence[Mapping[str, Any]], order: Sequence[str], after: Sequence[Any] | None, skip: int
           ) -> tuple[list[Any], int]:
    """Where the page after `rows` starts: the last row's values, and how many rows equal to it were returned
    so far (this page's, plus the earlier pages' when the run of equal rows began before this page)."""
    last = [rows[-1][c] for c in order]
    equal = sum(1 for row in rows if [row[c] for c in order] == last)
    return last, equal + (skip if after is not None and list(after) == last else 0)


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def at_or_after(order: Sequence[str], kinds: Mapping[str, str], after: Sequence[Any]) -> tuple[str, list[Any]]:
    """`(c1, c2, …) >= (a1, a2, …)` in the ORDER BY's sense (nulls last), as SQL with each value typed from the
    contract: some column greater after equal leading ones, or all equal."""
    if len(after) != len(order):
        raise BadToken("page_token does not match the sort order")
    typed = [f"CAST(? AS {DUCKDB_TYPES[kinds[c]]})" for c in order]
    alternatives: list[str] = []
    parameters: list[Any] = []
    for position, column in enumerate(order):
        terms = []
        for before in range(position):
            terms.append(f"{quoted(order[before])} IS NOT DISTINCT FROM {typed[before]}")
            parameters.append(after[before])
        terms.append(f"({typed[position]} IS NOT NULL AND ({quoted(column)} IS NULL OR {quoted(column)} > "
                     f"{typed[position]}))")
        parameters.extend([after[position], after[position]])
        alternatives.append("(" + " AND ".join(terms) + ")")
    alternatives.append("(" + " AND ".join(f"{quoted(c)} IS NOT DISTINCT FROM {t}" for c, t in zip(order, typed,
                                                                                                strict=True)) + ")")
    parameters.extend(after)
    return "(" + " OR ".join(alternatives) + ")", parameters
