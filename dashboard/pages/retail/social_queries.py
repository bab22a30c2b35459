"""Every MongoDB read of the social mentions page: projected, read-only queries on the collections `retail_social`
fills (`retail_social_mentions`, `retail_social_daily`), the validation of the brands and granularity a user
picks, and the per-brand totals and series the page draws.

Nothing here writes; the job creates the collections' indexes (see `cronlake/contracts/retail_social.py`). A day
arrives already checked against `retail_social_daily` (`Store.check_day`), brands are checked against the brands
the mentions collection holds, so queries filter on validated values only. A day without a summary raises `NoData`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING

from cronlake.contracts.retail_social import DAY_SUMMARY, MENTIONS
from dashboard.store import InvalidInput, NoData, Store, projection

PLATFORM = "twitter"
GRANULARITIES = {"10min": "10 minutes", "hour": "hour"}
STEPS = {"10min": timedelta(minutes=10), "hour": timedelta(hours=1)}
WINDOW_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # window_start as the job writes it
DEFAULT_BRANDS = 5


def brands(store: Store) -> list[str]:
    """Every brand with at least one mention, by name (the picker's options)."""
    return sorted(b for b in store.data[MENTIONS.name].distinct("brand") if isinstance(b, str))


def check_brands(store: Store, chosen: object) -> list[str]:
    """The chosen brands (a list, or one brand as text), each one a brand the collection offers."""
    if chosen is None:
        return []
    values = [chosen] if isinstance(chosen, str) else chosen
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInput(f"not a list of brands: {str(chosen)[:80]!r}")
    offered = set(brands(store))
    unknown = [v for v in values if v not in offered]
    if unknown:
        raise InvalidInput(f"unknown brand {unknown[0][:40]!r}")
    return values


def check_granularity(value: object) -> str:
    if value not in GRANULARITIES:
        raise InvalidInput(f"not a granularity: {str(value)[:40]!r}")
    return str(value)


def summary(store: Store, day: str) -> dict[str, Any]:
    """The day's post, retweet, language and hashtag figures."""
    doc = store.data[DAY_SUMMARY.name].find_one({"platform": PLATFORM, "day": day}, projection(DAY_SUMMARY.fields))
    if doc is None:
        raise NoData(DAY_SUMMARY)
    return doc


def mentions(store: Store, day: str, granularity: str) -> list[dict[str, Any]]:
    """Every brand's mention counts per window of `granularity` starting on `day` (UTC), oldest first; none on a
    day whose posts name no tracked brand."""
    following = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    query = {"granularity": granularity, "window_start": {"$gte": f"{day}T00:00:00Z", "$lt": f"{following}T00:00:00Z"}}
    fields = ("brand", "window_start", "mentions")
    return list(store.data[MENTIONS.name].find(query, projection(fields)).sort([("window_start", ASCENDING)]))


def brand_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mentions per brand over the rows (each post is in one window), most mentioned first, ties by name."""
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row["brand"]] += row["mentions"]
    return [{"brand": b, "mentions": n} for b, n in sorted(totals.items(), key=lambda t: (-t[1], t[0]))]


def series(rows: list[dict[str, Any]], chosen: list[str], granularity: str
           ) -> tuple[list[str], dict[str, list[int]]]:
    """Every window from the first to the last with a mention (as "YYYY-MM-DD HH:MM" UTC) and each chosen brand's
    count in each, 0 where the brand had none (the collection holds no zero windows)."""
    counts = {(r["brand"], r["window_start"]): r["mentions"] for r in rows}
    starts = [datetime.strptime(r["window_start"], WINDOW_FORMAT) for r in rows]
    windows, moment = [], min(starts)
    while moment <= max(starts):
        windows.append(moment.strftime(WINDOW_FORMAT))
        moment += STEPS[granularity]
    labels = [w.replace("T", " ")[:16] for w in windows]
    return labels, {brand: [counts.get((brand, w), 0) for w in windows] for brand in chosen}
