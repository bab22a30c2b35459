"""Replay sources: recorded Velib snapshots served offline through the same interface as the live API.

- A v2.1 JSON file (a `records` page `{"total_count", "results"}` or the bare `exports/json` list) is one
  snapshot: every fetch serves it again (the producer's dedup then sends nothing new).
- The open-data CSV history (`.csv` or `.csv.gz`, French labels) holds many snapshots, one per
  `snapshot_commit_time_utc`: each fetch serves the next one. The position (last snapshot served) is kept in
  `<state>/velib/replay/<file name>.position.json`, so successive cron runs walk through the history; it is
  saved when a snapshot is handed out, like a poll of the live API that has happened.

History rows name stations by GBFS `station_id` (or, in newer exports, by station code); the `StationIndex`
comes from GBFS `station_information.json` files and a v2.1 export. By default they are found next to the
history file (`gbfs_*/station_information.json` in name order, earlier feeds winning, and the newest
`api_v21_export_*.json`), which is the layout of the shared data folder. Zones come from the stations'
coordinates and the boundaries of the `geo/` folder beside the history's folder (`ingest.velib.zones`), so a
station the export lacks still gets its arrondissement or commune; only a station without coordinates is
quarantined.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from cronlake.core.lake import LocalLake
from ingest.velib.api import VelibSource
from ingest.velib.records import StationIndex, api_records, normalise_api_record, normalise_history_row
from ingest.velib.zones import DEFAULT_GEO_DIR, ZoneMap

SNAPSHOT_COLUMN = "snapshot_commit_time_utc"


class JsonReplaySource:
    """A recorded v2.1 answer: each fetch serves its records again."""

    def __init__(self, path: Path, zone_map: ZoneMap | None = None):
        self.records = [dict(record) for record in api_records(json.loads(path.read_text(encoding="utf-8")))]
        self.zone_map = zone_map

    def fetch(self, nrows: int | None) -> list[dict[str, Any]]:
        return [dict(record) for record in self.records[:nrows]]

    def normalise(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return normalise_api_record(raw, self.zone_map)


class HistoryReplaySource:
    """The CSV history: each fetch serves the rows of the next snapshot after the saved position."""

    def __init__(self, path: Path, state_dir: Path, station_index: StationIndex):
        self.path = path
        self.station_index = station_index
        self.state = LocalLake(state_dir / "replay")
        self.position_file = f"{path.name}.position.json"

    def position(self) -> str:
        """The `snapshot_commit_time_utc` last served ("" before the first fetch)."""
        if not self.state.exists(self.position_file):
            return ""
        return json.loads(self.state.read_text(self.position_file))["last_snapshot"]

    def fetch(self, nrows: int | None) -> list[dict[str, Any]]:
        """The rows of the earliest snapshot later than the position ([] once the history is exhausted)."""
        after = self.position()
        chosen = ""
        rows: list[dict[str, Any]] = []
        with open_text(self.path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or SNAPSHOT_COLUMN not in header:
                raise ValueError(f"{self.path}: not a Velib history file (no {SNAPSHOT_COLUMN} column)")
            column = header.index(SNAPSHOT_COLUMN)
            for cells in reader:
                snapshot = cells[column] if len(cells) > column else ""
                if snapshot <= after or chosen and snapshot > chosen:
                    continue
                if snapshot != chosen:
                    chosen, rows = snapshot, []
                rows.append(dict(zip(header, cells, strict=False)))
        if chosen:
            self.state.put_text(self.position_file,
                                json.dumps({"file": str(self.path), "last_snapshot": chosen}) + "\n")
        return rows[:nrows]

    def normalise(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return normalise_history_row(raw, self.station_index)


def open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def is_history_file(path: Path) -> bool:
    return path.name.endswith((".csv", ".csv.gz"))


def default_reference_files(history: Path) -> tuple[list[Path], list[Path]]:
    """The GBFS station_information files and the v2.1 export next to a history file."""
    folder = history.resolve().parent
    gbfs = sorted(folder.glob("gbfs_*/station_information.json"))
    exports = sorted(folder.glob("api_v21_export_*.json"))[-1:]
    return gbfs, exports


def default_geo_dir(history: Path) -> Path:
    """The `geo/` folder beside the history's folder (the shared data layout), else the shared one."""
    beside = history.resolve().parent.parent / "geo"
    return beside if beside.is_dir() else DEFAULT_GEO_DIR


def open_replay(path: Path, state_dir: Path, gbfs: Sequence[Path] = (), exports: Sequence[Path] = (),
                geo_dir: Path | None = None) -> VelibSource:
    """The replay source for a recorded file: history CSV (with a station index) or a v2.1 JSON answer."""
    if not path.is_file():
        raise FileNotFoundError(f"no such replay file: {path}")
    zone_map = ZoneMap.from_folder(geo_dir or default_geo_dir(path))
    if not is_history_file(path):
        return JsonReplaySource(path, zone_map)
    found_gbfs, found_exports = default_reference_files(path)
    gbfs, exports = gbfs or found_gbfs, exports or found_exports
    if not gbfs:
        raise FileNotFoundError(f"no GBFS station_information.json given or found next to {path} "
                                "(needed to map history station ids to station codes)")
    return HistoryReplaySource(path, state_dir, StationIndex.from_files(gbfs, exports, zone_map))
