"""The zone outlines the live map draws: the shipped arrondissement and commune boundaries, simplified for the browser.

The boundaries are the ones the pipeline assigns zones with (`cronlake.contracts.velib_zones`, folder
`CRONLAKE_VELIB_GEO_DIR` or the shipped copy), read once per process. Each ring is thinned to points at least
`TOLERANCE_DEG` apart (about 10 m, invisible at city scale) and rounded to 5 decimals (1 m), which keeps the page's
figure small: the 20 arrondissements go from 5,000 points to 3,100, and the map of the 1,440 stations of the 2022
feed draws 7,600 points of outlines (150 zones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from cronlake.contracts import velib_zones
from dashboard import store

TOLERANCE_DEG = 1e-4
Point = tuple[float, float]  # (lon, lat)
Box = tuple[float, float, float, float]  # min lon, min lat, max lon, max lat


@dataclass(frozen=True)
class Shape:
    """One zone as drawn: its name (the stations' `zone`), its commune and its simplified outer rings."""

    zone: str
    commune: str
    rings: tuple[tuple[Point, ...], ...]
    bbox: Box

    def xy(self) -> tuple[list[float | None], list[float | None]]:
        """Plotly x (lon) and y (lat) lists: the rings one after the other, separated by a gap (None)."""
        xs: list[float | None] = []
        ys: list[float | None] = []
        for ring in self.rings:
            if xs:
                xs.append(None)
                ys.append(None)
            xs.extend(x for x, _ in ring)
            ys.extend(y for _, y in ring)
        return xs, ys

    def meets(self, box: Box) -> bool:
        west, south, east, north = box
        return self.bbox[0] <= east and self.bbox[2] >= west and self.bbox[1] <= north and self.bbox[3] >= south


def thinned(ring: Sequence[Point], tolerance: float = TOLERANCE_DEG) -> tuple[Point, ...]:
    """The ring without the points closer than `tolerance` to the last point kept (its first point kept, closed)."""
    kept = [ring[0]]
    for point in ring[1:-1]:
        if math.dist(point, kept[-1]) >= tolerance:
            kept.append(point)
    kept.append(ring[-1])
    return tuple((round(x, 5), round(y, 5)) for x, y in kept)


@lru_cache(maxsize=1)
def shapes() -> dict[str, Shape]:
    """Every zone of the boundaries by name (the files hold no holes: outer rings are the whole outline)."""
    zone_map = velib_zones.load(store.current().settings)
    return {o.zone.name: Shape(o.zone.name, o.zone.commune, tuple(thinned(p[0]) for p in o.polygons), o.bbox)
            for o in zone_map.outlines}
