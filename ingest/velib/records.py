"""The normalised Velib station record: one snapshot of one station, whatever source it came from.

Every Velib source (the live Explore API v2.1, its `exports/json` dump, the open-data CSV history with French
labels) is turned into the same flat record here: `cronlake.contracts.velib.STATION`, whose CSV codec and Spark
schema Kafka messages, landing CSV files and everything downstream share (`docs/data-contracts.md`). A source
row that cannot be turned into a valid record raises `RecordError` with a one-line reason; callers quarantine it
with that reason.

The history export identifies stations by their GBFS numeric `station_id`; `StationIndex` maps it to the
Velib station code (GBFS `station_information.json`) and adds each station's commune/arrondissement and INSEE
code (from the v2.1 export), which the history does not carry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cronlake.contracts.velib import STATION
from cronlake.core.contracts import RecordError

if TYPE_CHECKING:
    from cronlake.contracts.velib_zones import ZoneMap

# The open-data history gives naive local times of Paris, whatever time zone the deployment uses.
SOURCE_TZ = ZoneInfo("Europe/Paris")

TRUE_FLAGS = ("OUI", "1", "TRUE")
FALSE_FLAGS = ("NON", "0", "FALSE")

# History CSV column (French label) -> normalised field. `Borne de paiement disponible` is the label the
# open-data portal gives to the API's `is_renting`. The portal's CSV export has the same labels plus the
# position and commune columns; the 2022 history adds `snapshot_commit_time_utc` (when it was collected).
HISTORY_ID = "Identifiant station"
HISTORY_NAME = "Nom station"
HISTORY_TIME = "Actualisation de la donnée"
HISTORY_OBSERVED = "snapshot_commit_time_utc"
HISTORY_POSITION = "Coordonnées géographiques"  # "lat, lon"
HISTORY_COMMUNE = "Nom communes équipées"
HISTORY_INSEE = "Code INSEE communes équipées"
HISTORY_COUNTS = {
    "capacity": "Capacité de la station",
    "docks_free": "Nombre bornettes libres",
    "bikes": "Nombre total vélos disponibles",
    "mechanical": "Vélos mécaniques disponibles",
    "ebike": "Vélos électriques disponibles",
}
HISTORY_FLAGS = {
    "is_installed": "Station en fonctionnement",
    "is_renting": "Borne de paiement disponible",
    "is_returning": "Retour vélib possible",
}
API_COUNTS = {
    "capacity": "capacity",
    "docks_free": "numdocksavailable",
    "bikes": "numbikesavailable",
    "mechanical": "mechanical",
    "ebike": "ebike",
}
API_FLAGS = {"is_installed": "is_installed", "is_renting": "is_renting", "is_returning": "is_returning"}


@dataclass(frozen=True)
class StationInfo:
    """What the reference feeds say about one station (all optional but the code)."""

    station_code: str
    lat: float | None = None
    lon: float | None = None
    capacity: int | None = None
    zone: str | None = None
    insee_code: str | None = None


class StationIndex:
    """GBFS `station_id` → station code, and station code → reference data (position, zone, INSEE code)."""

    def __init__(self, code_by_id: Mapping[str, str], stations: Mapping[str, StationInfo],
                 zone_map: ZoneMap | None = None):
        self.code_by_id = dict(code_by_id)
        self.stations = dict(stations)
        self.zone_map = zone_map  # locates the stations a source row gives coordinates for

    @classmethod
    def from_feeds(cls, gbfs_feeds: Sequence[Mapping[str, Any]], export_records: Iterable[Mapping[str, Any]] = (),
                   zone_map: ZoneMap | None = None) -> StationIndex:
        """Build from parsed GBFS `station_information` documents and v2.1 export records.

        An earlier GBFS feed wins over a later one for the same station id or code (give the feed closest to
        the data first); later feeds only fill in stations the earlier ones lack. With a `zone_map`, every
        station with coordinates gets its zone (arrondissement or commune) and that zone's INSEE code from them,
        whether or not the export lists it; without one, zone and INSEE code are the export's commune.
        """
        code_by_id: dict[str, str] = {}
        stations: dict[str, StationInfo] = {}
        for feed in gbfs_feeds:
            for station in feed["data"]["stations"]:
                code = str(station["stationCode"]).strip()
                code_by_id.setdefault(str(station["station_id"]).strip(), code)
                stations.setdefault(code, StationInfo(code, optional_float(station.get("lat")),
                                                      optional_float(station.get("lon")),
                                                      optional_int(station.get("capacity"))))
        for record in export_records:
            code = str(record.get("stationcode") or "").strip()
            if not code:
                continue
            geo = record.get("coordonnees_geo") or {}
            known = stations.get(code)
            stations[code] = StationInfo(
                code,
                known.lat if known and known.lat is not None else optional_float(geo.get("lat")),
                known.lon if known and known.lon is not None else optional_float(geo.get("lon")),
                known.capacity if known else optional_int(record.get("capacity")),
                optional_text(record.get("nom_arrondissement_communes")),
                optional_text(record.get("code_insee_commune")),
            )
        if zone_map is not None:
            stations = {code: located(info, zone_map) for code, info in stations.items()}
        return cls(code_by_id, stations, zone_map)

    @classmethod
    def from_files(cls, gbfs_paths: Sequence[Path], export_paths: Sequence[Path] = (),
                   zone_map: ZoneMap | None = None) -> StationIndex:
        """Build from GBFS `station_information.json` files and v2.1 JSON files (records page or export)."""
        feeds = [json.loads(Path(path).read_text(encoding="utf-8")) for path in gbfs_paths]
        records: list[Mapping[str, Any]] = []
        for path in export_paths:
            records.extend(api_records(json.loads(Path(path).read_text(encoding="utf-8"))))
        return cls.from_feeds(feeds, records, zone_map)

    def code_of(self, identifier: str) -> str:
        """The station code an `Identifiant station` names: a GBFS station_id (older exports) or a station code."""
        identifier = identifier.strip()
        if not identifier:
            raise RecordError("missing station identifier")
        return self.code_by_id.get(identifier, identifier)

    def resolve(self, identifier: str) -> StationInfo:
        """The reference data of the station an `Identifiant station` names."""
        station = self.stations.get(self.code_of(identifier))
        if station is None:
            raise RecordError(f"unknown station id {identifier!r} (neither a GBFS station_id nor a station code)")
        return station


def located(station: StationInfo, zone_map: ZoneMap) -> StationInfo:
    """The station with the zone and INSEE code of its coordinates (unchanged if it has none)."""
    if station.lat is None or station.lon is None:
        return station
    zone = zone_map.locate(station.lat, station.lon)
    return replace(station, zone=zone.name, insee_code=zone.code)


def api_records(document: Any) -> list[Mapping[str, Any]]:
    """The station records of a v2.1 answer: a `records` page `{"total_count", "results"}` or an export list."""
    if isinstance(document, dict) and isinstance(document.get("results"), list):
        return document["results"]
    if isinstance(document, list):
        return document
    raise RecordError(f"not a v2.1 records page nor an export list (got {type(document).__name__})")


def optional_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def optional_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def optional_text(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def parse_count(value: Any, field: str) -> int:
    if value is None or value == "":
        raise RecordError(f"missing {field}")
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise RecordError(f"{field} is not an integer: {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RecordError(f"{field} is not an integer: {value!r}") from None
    if number < 0:
        raise RecordError(f"negative {field}: {number}")
    return number


def parse_flag(value: Any, field: str) -> bool:
    """OUI/NON (API and newer exports) or 1/0 (older exports); JSON booleans too."""
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().upper()
    if text in TRUE_FLAGS:
        return True
    if text in FALSE_FLAGS:
        return False
    raise RecordError(f"{field} is not a flag (OUI/NON or 1/0): {value!r}")


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_aware_time(value: Any, field: str) -> str:
    """An ISO-8601 time with an offset (API `duedate`) → `YYYY-MM-DDTHH:MM:SSZ`."""
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(f"{field} is not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise RecordError(f"{field} has no UTC offset: {value!r}")
    return iso_utc(moment)


def parse_local_time(value: Any, field: str, tz: ZoneInfo = SOURCE_TZ) -> str:
    """A naive local `YYYY-MM-DD HH:MM:SS` of `tz` (the 2022 history's `Actualisation de la donnée`) or an
    ISO-8601 time with an offset (the portal's CSV export) → UTC with Z."""
    text = "" if value is None else str(value).strip()
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise RecordError(f"{field} is not a local time YYYY-MM-DD HH:MM:SS nor an ISO-8601 time with an "
                              f"offset: {value!r}") from None
    return iso_utc(moment)


def parse_position(value: Any, field: str) -> tuple[float, float] | None:
    """The export's `"lat, lon"` cell → (lat, lon); None when empty."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise RecordError(f"{field} is not 'lat, lon': {value!r}") from None
    return lat, lon


def station_code_of(value: Any) -> str:
    code = "" if value is None else str(value).strip()
    if not code:
        raise RecordError("missing station code")
    return code


def normalise_api_record(raw: Mapping[str, Any], zone_map: ZoneMap | None = None,
                         observed_at: str | None = None) -> dict[str, Any]:
    """An Explore API v2.1 record (live `records` page or `exports/json`) → a normalised record.

    With a `zone_map`, zone and INSEE code come from the coordinates (the record's commune only when it has
    none), as for the history, so every source names the same zones. `observed_at` is when the record was
    fetched (ISO UTC); without it, the record's own `duedate` (the best known time for a record of unknown
    origin).
    """
    if not isinstance(raw, Mapping):
        raise RecordError(f"record is not a JSON object: {type(raw).__name__}")
    geo = raw.get("coordonnees_geo") or {}
    try:
        lat, lon = optional_float(geo.get("lat")), optional_float(geo.get("lon"))
    except (TypeError, ValueError, AttributeError):
        raise RecordError(f"coordonnees_geo is not {{lon, lat}}: {geo!r}") from None
    zone = optional_text(raw.get("nom_arrondissement_communes"))
    insee_code = optional_text(raw.get("code_insee_commune"))
    if zone_map is not None and lat is not None and lon is not None:
        located_zone = zone_map.locate(lat, lon)
        zone, insee_code = located_zone.name, located_zone.code
    if zone is None:
        raise RecordError("missing nom_arrondissement_communes (zone) and no coordinates to locate it")
    record = {
        "station_code": station_code_of(raw.get("stationcode")),
        "name": str(raw.get("name") or "").strip(),
        **{field: parse_count(raw.get(source), source) for field, source in API_COUNTS.items()},
        **{field: parse_flag(raw.get(source), source) for field, source in API_FLAGS.items()},
        "reported_at": parse_aware_time(raw.get("duedate"), "duedate"),
        "lat": lat,
        "lon": lon,
        "zone": zone,
        "insee_code": insee_code,
    }
    record["observed_at"] = observed_at or record["reported_at"]
    return {field: record[field] for field in STATION.names}


def normalise_history_row(row: Mapping[str, Any], station_index: StationIndex,
                          observed_at: str | None = None) -> dict[str, Any]:
    """A row of the open-data CSV history or export (French labels) → a normalised record.

    `Identifiant station` may be a GBFS station_id or a station code, flags 1/0 or OUI/NON, times naive local or
    ISO with an offset (formats drifted over time). Position, zone and INSEE code come from the row's
    `Coordonnées géographiques` when it has them (zone located like an API record's), else from `station_index`.
    `observed_at` is the row's `snapshot_commit_time_utc` when it has one, else the given time.
    """
    identifier = str(row.get(HISTORY_ID) or "")
    position = parse_position(row.get(HISTORY_POSITION), HISTORY_POSITION)
    if position is not None:
        station = StationInfo(station_index.code_of(identifier), *position,
                              zone=optional_text(row.get(HISTORY_COMMUNE)),
                              insee_code=optional_text(row.get(HISTORY_INSEE)))
        if station_index.zone_map is not None:
            station = located(station, station_index.zone_map)
    else:
        station = station_index.resolve(identifier)
    if station.zone is None:
        raise RecordError(f"station {station.station_code} has no zone: no coordinates to locate it and none in "
                          "the station index")
    observed = row.get(HISTORY_OBSERVED) or observed_at
    if not observed:
        raise RecordError(f"no observation time: neither {HISTORY_OBSERVED} nor the time of the fetch")
    record = {
        "station_code": station.station_code,
        "name": str(row.get(HISTORY_NAME) or "").strip(),
        **{field: parse_count(row.get(source), source) for field, source in HISTORY_COUNTS.items()},
        **{field: parse_flag(row.get(source), source) for field, source in HISTORY_FLAGS.items()},
        "reported_at": parse_local_time(row.get(HISTORY_TIME), HISTORY_TIME),
        "observed_at": parse_aware_time(observed, HISTORY_OBSERVED),
        "lat": station.lat,
        "lon": station.lon,
        "zone": station.zone,
        "insee_code": station.insee_code,
    }
    return {field: record[field] for field in STATION.names}
