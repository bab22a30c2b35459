"""Velib zones from coordinates, for the ingest scripts: the loader lives in `cronlake.contracts.velib_zones`
(the dashboard draws the same boundaries and may not import ingest); this module names it where the ingest code
has always found it."""

from __future__ import annotations

from cronlake.contracts.velib_zones import DEFAULT_GEO_DIR, ZoneMap

__all__ = ["DEFAULT_GEO_DIR", "ZoneMap"]
