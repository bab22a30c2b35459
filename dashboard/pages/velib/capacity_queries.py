"""Every MongoDB read of the Capacity page, and the time-weighted shares it draws from them.

`velib_station_capacity` (filled by `velib_capacity`, indexes declared in `cronlake/contracts/velib.py`) holds
additive seconds per station and local day: observed, empty (no bike) and full (no free dock), in total and per
local hour. A period's share of time empty is the period's empty seconds over its observed seconds, summed per
station, zone or commune, never an average of daily shares. The job keeps rollups of those documents exact
(`velib_capacity_running`: running totals per day; `velib_zone_capacity`: per zone and day), so a period's
station totals are two documents whatever its length and a heat map reads one document per day by its key.
Inputs are checked before use: days strictly YYYY-MM-DD, a station code or zone that the collection holds;
queries use equality, keys and day ranges on those only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING

from cronlake.contracts.velib import CAPACITY_RUNNING, STATION_CAPACITY, ZONE_CAPACITY, running_rows
from cronlake.core.contracts import Collection
from dashboard.store import STATION_CODE, InvalidInput, NoData, Store, parse_day, projection

MEASURES = ("observed_s", "empty_s", "full_s")
ABOUT = ("station_code", "name", "zone", "commune", "capacity")
HOUR_FIELDS = ("day", "observed_by_hour", "empty_by_hour", "full_by_hour")
DEFAULT_DAYS = 7
OFTEN = 10.0  # % of the observed time: a station full (or empty) this often looks under-sized (under-supplied)
CSV_FIELDS = ("station_code", "name", "zone", "commune", "capacity", "observed_h", "full_pct", "empty_pct")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def day_bounds(store: Store) -> tuple[str, str]:
    """The first and the last local day the collection covers (two lookups on the day index)."""
    collection = store.data[STATION_CAPACITY.name]
    first = collection.find_one({}, {"_id": 0, "day": 1}, sort=[("day", ASCENDING)])
    last = collection.find_one({}, {"_id": 0, "day": 1}, sort=[("day", DESCENDING)])
    if first is None or last is None:
        raise NoData(STATION_CAPACITY)
    return first["day"], last["day"]


def period(store: Store, start: object, end: object) -> tuple[str, str]:
    """The period to show: the given days (validated), by default the last DEFAULT_DAYS days that have data."""
    known_first, known_last = day_bounds(store)
    last = parse_day(end) if end else known_last
    first = parse_day(start) if start else max(
        known_first, (date.fromisoformat(last) - timedelta(days=DEFAULT_DAYS - 1)).isoformat())
    if first > last:
        raise InvalidInput(f"the period starts ({first}) after it ends ({last})")
    return first, last


def share(part: float, whole: float) -> float | None:
    """`part / whole` in %, one decimal; None without observed time."""
    return round(100.0 * part / whole, 1) if whole else None


def with_shares(row: dict[str, Any]) -> dict[str, Any]:
    observed = row["observed_s"]
    return {**row, "observed_h": round(observed / 3600, 1), "full_pct": share(row["full_s"], observed),
            "empty_pct": share(row["empty_s"], observed)}


def period_stations(store: Store, start: str, end: str) -> list[dict[str, Any]]:
    """Per station with documents in the period: days, summed seconds; name, zone, commune, capacity of its latest
    day in the period. Two running-total documents (`velib_capacity_running`): the end's minus the day before
    the start's."""
    known_first, known_last = day_bounds(store)
    end = min(end, known_last)
    if start > end:
        return []
    before = (date.fromisoformat(start) - timedelta(days=1)).isoformat()
    wanted = [end] + ([before] if before >= known_first else [])
    found = {doc["day"]: running_rows(doc) for doc in store.data[CAPACITY_RUNNING.name].find({"_id": {"$in": wanted}})}
    if set(wanted) - set(found):
        raise NoData(CAPACITY_RUNNING)
    earlier = {row["station_code"]: row for row in found.get(before, [])}
    rows = []
    for row in found[end]:
        past = earlier.get(row["station_code"])
        if past is None:
            rows.append(row)
        elif row["days"] > past["days"]:
            rows.append({**row, "days": row["days"] - past["days"], **{m: row[m] - past[m] for m in MEASURES}})
    return rows


def station_totals(store: Store, start: str, end: str) -> list[dict[str, Any]]:
    """Per station over the period: summed seconds and shares; name, zone, commune, capacity of its latest day."""
    rows = period_stations(store, start, end)
    if not rows:
        raise NoData(STATION_CAPACITY)
    return [with_shares({field: row[field] for field in (*ABOUT, *MEASURES)}) for row in rows]


def observed_enough(rows: list[dict[str, Any]], min_hours: float) -> list[dict[str, Any]]:
    return [r for r in rows if r["observed_s"] >= min_hours * 3600 and r["observed_s"] > 0]


def ranking(rows: list[dict[str, Any]], measure: str) -> list[dict[str, Any]]:
    """Stations that were ever full (`full_pct`) or empty (`empty_pct`), most often first."""
    hits = [r for r in rows if r[measure]]
    return sorted(hits, key=lambda r: (-r[measure], r["station_code"]))


def group_totals(rows: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Per zone or commune: its stations' seconds summed, shares of time full and empty; most often full first."""
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"stations": 0, **dict.fromkeys(MEASURES, 0)})
    for row in rows:
        group = groups[row[field]]
        group["stations"] += 1
        for measure in MEASURES:
            group[measure] += row[measure]
    result = [with_shares({field: name, **values}) for name, values in groups.items()]
    return sorted(result, key=lambda r: (-(r["full_pct"] or 0), str(r[field])))


def focus_query(store: Store, focus: str) -> tuple[str, Collection, dict[str, str]]:
    """A heat map's subject, `station:CODE` or `zone:NAME`, checked against the collection: (label, the
    collection of its days, their key without the day)."""
    kind, _, value = focus.partition(":")
    collection = store.data[STATION_CAPACITY.name]
    if kind == "station" and STATION_CODE.fullmatch(value):
        doc = collection.find_one({"station_code": value}, {"_id": 0, "name": 1})
        if doc is not None:
            return f"station {doc.get('name')} ({value})", STATION_CAPACITY, {"station_code": value}
    if kind == "zone" and collection.find_one({"zone": value}, {"_id": 1}) is not None:
        return f"zone {value}", ZONE_CAPACITY, {"zone": value}
    raise InvalidInput(f"not a station or zone of {STATION_CAPACITY.name}: {focus[:80]!r}")


def hour_of_week(store: Store, start: str, end: str, collection: Collection, subject: dict[str, str]
                 ) -> dict[str, list[list[float | None]]]:
    """Share of time full and empty (%) by weekday (rows, Monday first) and local hour (columns) over the period,
    from the subject's documents of each day (a station's own, or its zone's sums), read by their keys."""
    known_first, known_last = day_bounds(store)
    first, last = date.fromisoformat(max(start, known_first)), date.fromisoformat(min(end, known_last))
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    keys = [collection.document_id({**subject, "day": day}) for day in days]
    return weekday_shares(store.data[collection.name].find({"_id": {"$in": keys}}, projection(HOUR_FIELDS)))


def weekday_shares(docs: Iterable[dict[str, Any]]) -> dict[str, list[list[float | None]]]:
    """Day documents' hourly seconds summed by weekday and hour, then the shares full and empty of each cell."""
    sums = {m: [[0] * 24 for _ in WEEKDAYS] for m in ("observed", "empty", "full")}
    for doc in docs:
        weekday = date.fromisoformat(doc["day"]).weekday()
        for measure, grid in sums.items():
            for hour, seconds in enumerate(doc.get(f"{measure}_by_hour") or []):
                grid[weekday][hour] += seconds
    observed = sums["observed"]
    return {measure: [[share(sums[measure][d][h], observed[d][h]) for h in range(24)] for d in range(len(WEEKDAYS))]
            for measure in ("full", "empty")}
