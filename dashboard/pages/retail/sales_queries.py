"""Every MongoDB read of the retail sales page: projected, read-only queries on `retail_sales_daily`, and the
totals the page draws from them (by day, by country/state, by category).

Nothing here writes: `retail_daily` (source "uci") and `retail_olist` (source "olist") fill the collection and
its indexes (see `cronlake/contracts/retail.py`). An empty selection raises `NoData` naming the collection.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pymongo import ASCENDING

from cronlake.contracts.retail import SALES_DAILY
from dashboard.store import NoData, Store, projection
from dashboard.ui import csv_text

FIELDS = ("source", "day", "region", "category", "orders", "lines", "revenue", "cancelled_lines", "lineage_run")
SOURCES = ("uci", "olist")


def sales(store: Store, source: str | None = None, start: str | None = None, end: str | None = None
          ) -> list[dict[str, Any]]:
    """The daily sales documents of one source (or both), between two days included (ISO dates)."""
    query: dict[str, Any] = {}
    if source:
        query["source"] = source
    days = {**({"$gte": start} if start else {}), **({"$lte": end} if end else {})}
    if days:
        query["day"] = days
    rows = list(store.data[SALES_DAILY.name].find(query, projection(FIELDS))
                .sort([("source", ASCENDING), ("day", ASCENDING)]))
    if not rows:
        raise NoData(SALES_DAILY)
    return rows


def totals(rows: list[dict[str, Any]], *by: str) -> list[dict[str, Any]]:
    """Revenue, lines and cancelled lines summed per value of the `by` fields, largest revenue first for regions
    and categories, in day order for days."""
    groups: dict[tuple, dict[str, float]] = defaultdict(lambda: {"revenue": 0.0, "lines": 0, "cancelled_lines": 0})
    for row in rows:
        group = groups[tuple(row[f] for f in by)]
        for measure in group:
            group[measure] += row[measure]
    result = [{**dict(zip(by, key, strict=True)), **values, "revenue": round(values["revenue"], 2)}
              for key, values in groups.items()]
    if "day" in by:
        return sorted(result, key=lambda r: tuple(r[f] for f in by))
    return sorted(result, key=lambda r: -r["revenue"])


def as_csv(rows: list[dict[str, Any]]) -> str:
    return csv_text(rows, FIELDS)
