"""Velib zones from coordinates: which Paris arrondissement or suburban commune a station stands in.

The boundaries are the shipped GeoJSON files of a geo folder (`paris_arrondissements.geojson`: the 20
arrondissements, `communes-*.geojson`: the communes of departments 92, 93, 94 and 95). A station's zone is the
polygon that contains it (even-odd ray casting, holes respected); a station outside every polygon (the Bois de
Vincennes, outside the Paris arrondissement outlines, holds two) gets the nearest zone by distance to its
outline. Each zone carries its INSEE code and its commune, the second level: "Paris" for an arrondissement,
the commune itself elsewhere.

    ZoneMap.from_folder(Path("../shared/data/geo")).locate(48.8566, 2.3522)  # Zone('75104', 'Paris 4e', 'Paris')

It sits with the contracts because two stages read the same boundaries: ingest assigns zones with them and the
dashboard draws them. The GeoJSON files ship as package data of `ingest.velib` (`ingest/velib/geo/`), read here
by path, not imported. `load(settings)` is the folder of `CRONLAKE_VELIB_GEO_DIR`, else that shipped copy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cronlake.contracts import velib
from cronlake.core.settings import Settings

# shipped with the code as package data of ingest.velib (see its geo/README.md)
DEFAULT_GEO_DIR = Path(__file__).resolve().parents[2] / "ingest" / "velib" / "geo"
ARRONDISSEMENTS_FILE = "paris_arrondissements.geojson"
COMMUNES_GLOB = "communes-*.geojson"
Ring = Sequence[tuple[float, float]]  # (lon, lat) points, first == last or not


@dataclass(frozen=True)
class Zone:
    """A zone: INSEE code, display name and commune (the second level)."""

    code: str
    name: str
    commune: str


@dataclass(frozen=True)
class Outline:
    """One zone's polygons: each a list of rings, the first the outer boundary, the others holes."""

    zone: Zone
    polygons: tuple[tuple[Ring, ...], ...]
    bbox: tuple[float, float, float, float]  # min lon, min lat, max lon, max lat

    def contains(self, lon: float, lat: float) -> bool:
        west, south, east, north = self.bbox
        if not (west <= lon <= east and south <= lat <= north):
            return False
        return any(inside(polygon[0], lon, lat) and not any(inside(hole, lon, lat) for hole in polygon[1:])
                   for polygon in self.polygons)

    def distance(self, lon: float, lat: float) -> float:
        """Metres from the point to the nearest edge of the outline (equirectangular, fine at city scale)."""
        scale = math.cos(math.radians(lat))
        return min(segment_distance(lon, lat, a, b, scale) for polygon in self.polygons for ring in polygon
                   for a, b in zip(ring, ring[1:], strict=False))


def inside(ring: Ring, lon: float, lat: float) -> bool:
    """Even-odd rule: does a horizontal ray from the point cross the ring an odd number of times."""
    crossings = False
    for (x1, y1), (x2, y2) in zip(ring, [*ring[1:], ring[0]], strict=False):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            crossings = not crossings
    return crossings


def segment_distance(lon: float, lat: float, a: tuple[float, float], b: tuple[float, float], scale: float) -> float:
    metres_per_degree = 111_320.0
    px, py = lon * scale, lat
    ax, ay, bx, by = a[0] * scale, a[1], b[0] * scale, b[1]
    dx, dy = bx - ax, by - ay
    length = dx * dx + dy * dy
    t = 0.0 if length == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length))
    return math.hypot(px - ax - t * dx, py - ay - t * dy) * metres_per_degree


def arrondissement_name(number: int) -> str:
    return f"Paris {number}{'er' if number == 1 else 'e'}"


def polygons_of(geometry: dict[str, Any]) -> tuple[tuple[Ring, ...], ...]:
    if geometry["type"] == "Polygon":
        parts = [geometry["coordinates"]]
    elif geometry["type"] == "MultiPolygon":
        parts = geometry["coordinates"]
    else:
        raise ValueError(f"unsupported geometry type {geometry['type']!r} (expected Polygon or MultiPolygon)")
    return tuple(tuple(tuple((float(x), float(y)) for x, y, *_ in ring) for ring in part) for part in parts)


def outline(zone: Zone, geometry: dict[str, Any]) -> Outline:
    polygons = polygons_of(geometry)
    lons = [x for polygon in polygons for x, _ in polygon[0]]
    lats = [y for polygon in polygons for _, y in polygon[0]]
    return Outline(zone, polygons, (min(lons), min(lats), max(lons), max(lats)))


def zone_of_feature(properties: dict[str, Any]) -> Zone:
    """A GeoJSON feature's zone: an arrondissement (`c_ar`, `c_arinsee`) or a commune (`code`, `nom`)."""
    if "c_arinsee" in properties:
        return Zone(str(properties["c_arinsee"]), arrondissement_name(int(properties["c_ar"])), "Paris")
    return Zone(str(properties["code"]), str(properties["nom"]), str(properties["nom"]))


class ZoneMap:
    """The zone outlines of a geo folder, and the zone of a point."""

    def __init__(self, outlines: Iterable[Outline], features: Sequence[dict[str, Any]] = ()):
        self.outlines = list(outlines)
        self.features = list(features)
        self.by_code = {o.zone.code: o.zone for o in self.outlines}

    @classmethod
    def from_files(cls, paths: Sequence[Path]) -> ZoneMap:
        features = []
        for path in paths:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            if document.get("type") != "FeatureCollection":
                raise ValueError(f"{path}: not a GeoJSON FeatureCollection")
            features.extend(document["features"])
        outlines = [outline(zone_of_feature(f["properties"]), f["geometry"]) for f in features]
        return cls(outlines, features)

    @classmethod
    def from_folder(cls, folder: Path = DEFAULT_GEO_DIR) -> ZoneMap:
        """The arrondissements and the communes files of a geo folder (the shared data layout)."""
        paths = [folder / ARRONDISSEMENTS_FILE, *sorted(folder.glob(COMMUNES_GLOB))]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing or len(paths) < 2:
            raise FileNotFoundError(f"zone boundaries not found in {folder}: need {ARRONDISSEMENTS_FILE} and "
                                    f"{COMMUNES_GLOB}")
        return cls.from_files(paths)

    def locate(self, lat: float, lon: float) -> Zone:
        """The zone containing the point, else the nearest one."""
        for candidate in self.outlines:
            if candidate.contains(lon, lat):
                return candidate.zone
        return min(self.outlines, key=lambda o: o.distance(lon, lat)).zone

    def commune(self, code: str) -> str:
        """The commune (second level) of a zone's INSEE code: "Paris" for an arrondissement."""
        return self.by_code[code].commune

    def geojson(self) -> dict[str, Any]:
        """All outlines as one FeatureCollection whose features carry `zone`, `code` and `commune` properties."""
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": o.zone.name, "geometry": f["geometry"],
             "properties": {"zone": o.zone.name, "code": o.zone.code, "commune": o.zone.commune}}
            for o, f in zip(self.outlines, self.features, strict=True)]}


def load(settings: Settings) -> ZoneMap:
    """The zone map of the deployment: `CRONLAKE_VELIB_GEO_DIR`, else the boundaries shipped with the code."""
    return ZoneMap.from_folder(velib.geo_dir(settings) or DEFAULT_GEO_DIR)
