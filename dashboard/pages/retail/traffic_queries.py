"""Every MongoDB read of the traffic page: projected, read-only queries on the collections `retail_logs` fills
(`retail_traffic_hourly`, `retail_top_pages`, `retail_sessions_daily`). An empty collection raises `NoData`."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from cronlake.contracts.retail_logs import HOURLY, SESSION_SUMMARY, TOP_PAGES
from dashboard.store import NoData, Store, projection


def sites(store: Store) -> list[str]:
    found = sorted(store.data[HOURLY.name].distinct("site"))
    if not found:
        raise NoData(HOURLY)
    return found


def hourly(store: Store, site: str) -> list[dict[str, Any]]:
    """The site's traffic hour by hour, oldest first."""
    cursor = store.data[HOURLY.name].find({"site": site}, projection(HOURLY.fields))
    return list(cursor.sort([("hour", ASCENDING)]))


def top_pages(store: Store, site: str, page_type: str, limit: int = 15) -> list[dict[str, Any]]:
    """The most requested product (or category) pages over all days, summed in the database."""
    return list(store.data[TOP_PAGES.name].aggregate([
        {"$match": {"site": site, "page_type": page_type}},
        {"$group": {"_id": "$item_id", "hits": {"$sum": "$hits"}, "unique_clients": {"$sum": "$unique_clients"}}},
        {"$sort": {"hits": DESCENDING, "_id": ASCENDING}}, {"$limit": limit},
    ]))


def sessions(store: Store, site: str) -> list[dict[str, Any]]:
    cursor = store.data[SESSION_SUMMARY.name].find({"site": site}, projection(SESSION_SUMMARY.fields))
    return list(cursor.sort([("day", ASCENDING)]))
