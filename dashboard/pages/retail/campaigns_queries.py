"""Every MongoDB read of the campaign performance page: projected, read-only queries on `retail_ad_performance`
(filled, with its index, by the `retail_ads` job; see `cronlake/contracts/retail_ads.py`).

A campaign chosen in the page or the URL is checked against the campaigns the collection holds before it is used
in a query (an equality on a known value, never an operator). An empty collection raises `NoData`.
"""

from __future__ import annotations

from typing import Any

from cronlake.contracts.retail_ads import ALL, PERFORMANCE
from dashboard.store import InvalidInput, NoData, Store, projection
from dashboard.ui import csv_text

FIELDS = PERFORMANCE.fields
BREAKDOWNS = ("age", "gender", "interest")


def numeric_order(value: str) -> tuple[int, Any]:
    return (0, int(value)) if value.isdigit() else (1, value)


def campaigns(store: Store) -> list[str]:
    """The campaigns (xyz_campaign_id, as text) in numeric order."""
    # a find, not `distinct`: nx-27017 answers distinct with numbers for numeric-looking strings
    found = [d["value"] for d in store.data[PERFORMANCE.name].find({"campaign": ALL, "dimension": "campaign"},
                                                                   projection(("value",)))]
    if not found:
        raise NoData(PERFORMANCE)
    return sorted(found, key=numeric_order)


def check_campaign(store: Store, value: object) -> str:
    """`value` if it is "all" or a campaign the collection holds; InvalidInput otherwise."""
    if value in (None, "", ALL):
        return ALL
    if not isinstance(value, str) or value not in campaigns(store):
        raise InvalidInput(f"unknown campaign: {str(value)[:40]!r}")
    return value


def performance(store: Store, campaign: str) -> dict[str, list[dict[str, Any]]]:
    """The documents of one campaign filter ("all" or a campaign) by dimension, each list in value order."""
    by_dimension: dict[str, list[dict[str, Any]]] = {}
    for doc in store.data[PERFORMANCE.name].find({"campaign": campaign}, projection(FIELDS)):
        by_dimension.setdefault(doc["dimension"], []).append(doc)
    if "total" not in by_dimension:
        raise NoData(PERFORMANCE)
    for docs in by_dimension.values():
        docs.sort(key=lambda d: numeric_order(d["value"]))
    return by_dimension


def as_csv(by_dimension: dict[str, list[dict[str, Any]]]) -> str:
    return csv_text((doc for dimension in ("total", "campaign", *BREAKDOWNS)
                     for doc in by_dimension.get(dimension, [])), FIELDS)
