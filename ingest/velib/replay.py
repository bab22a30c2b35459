"""Replay sources: recorded Velib snapshots served offline through the same interface as the live API.

- A v2.1 JSON file (`.json`: a `records` page `{"total_count", "results"}` or the bare `exports/json` list) is
  one snapshot: every fetch serves it again (the producer's dedup then sends nothing new). Its observation time
  is its newest `duedate`.
- The open-data CSV with French labels (`.csv`, `.csv.gz`, or a `.zip` holding one CSV), as the portal exports
  it (`;`-separated, `Coordonnées géographiques` "lat, lon", ISO times with an offset, 14 or 15 columns
  depending on the year) or as the 2022 history collected it (`,`-separated, naive Paris times, plus
  `snapshot_commit_time_utc`). The separator is read from the header line; columns are found by label, so
  their number and order do not matter. A history holds many snapshots, one per `snapshot_commit_time_utc`
  (the rows' observation time); an export is one snapshot, observed at its newest `Actualisation de la donnée`.
  Each fetch serves the next snapshot; the position (last snapshot served) is kept in
  `<state>/velib/replay/<file name>.position.json`, so successive cron runs walk through the file; it is saved
  when a snapshot is handed out, like a poll of the live API that has happened.
- Anything else (another extension, a file that is not UTF-8 text, a CSV without the Velib labels, a zip without
  exactly one CSV, JSON that does not parse) raises `ReplayFileError` with one line saying what was expected.

Rows without coordinates (the 2022 history) name stations by GBFS `station_id` (or by station code); the
`StationIndex` comes from GBFS `station_information.json` files and a v2.1 export. By default they are found next
to the file (`gbfs_*/station_information.json` in name order, earlier feeds winning, and the newest
`api_v21_export_*.json`), which is the layout of the shared data folder. Zones come from the coordinates (the
row's, else the station index's) and the boundaries of the `geo/` folder beside the file's folder
(`cronlake.contracts.velib_zones`); only a station without coordinates is quarantined.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cronlake.contracts.velib_zones import DEFAULT_GEO_DIR, ZoneMap
from cronlake.core.lake import LocalLake
from ingest.velib.api import VelibSource
from ingest.velib.records import (
    HISTORY_COUNTS,
    HISTORY_FLAGS,
    HISTORY_ID,
    HISTORY_OBSERVED,
    HISTORY_POSITION,
    HISTORY_TIME,
    RecordError,
    StationIndex,
    api_records,
    normalise_api_record,
    normalise_history_row,
    parse_aware_time,
    parse_local_time,
)

SNAPSHOT_COLUMN = HISTORY_OBSERVED
TABLE_SUFFIXES = (".csv", ".csv.gz", ".zip")
REQUIRED_LABELS = (HISTORY_ID, *HISTORY_COUNTS.values(), *HISTORY_FLAGS.values(), HISTORY_TIME)


class ReplayFileError(ValueError):
    """The replay file is not one of the recorded formats; the message says what was expected, in one line."""


class JsonReplaySource:
    """A recorded v2.1 answer: each fetch serves its records again."""

    def __init__(self, path: Path, zone_map: ZoneMap | None = None):
        try:
            self.records = [dict(record) for record in api_records(json.loads(path.read_text(encoding="utf-8")))]
        except (UnicodeDecodeError, json.JSONDecodeError, RecordError, TypeError, ValueError) as exc:
            raise ReplayFileError(f"{path}: not a v2.1 JSON answer (a records page or an export list): "
                                  f"{one_line(exc)}") from None
        self.zone_map = zone_map
        self.observed_at = max((time for time in map(record_time, self.records) if time), default=None)

    def fetch(self, nrows: int | None) -> list[dict[str, Any]]:
        return [dict(record) for record in self.records[:nrows]]

    def normalise(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return normalise_api_record(raw, self.zone_map, self.observed_at)


def record_time(record: Mapping[str, Any]) -> str | None:
    """A v2.1 record's `duedate` in UTC, None when unusable."""
    try:
        return parse_aware_time(record.get("duedate"), "duedate")
    except RecordError:
        return None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class HistoryReplaySource:
    """The French-label CSV (history or export): each fetch serves the rows of the next snapshot after the saved
    position."""

    def __init__(self, path: Path, state_dir: Path, station_index: StationIndex):
        self.path = path
        self.station_index = station_index
        self.state = LocalLake(state_dir / "replay")
        self.position_file = f"{path.name}.position.json"
        self.observed_at: str | None = None  # of an export's snapshot; a history row carries its own

    def position(self) -> str:
        """The snapshot (its observation time) last served ("" before the first fetch)."""
        if not self.state.exists(self.position_file):
            return ""
        return json.loads(self.state.read_text(self.position_file))["last_snapshot"]

    def fetch(self, nrows: int | None) -> list[dict[str, Any]]:
        """The rows of the earliest snapshot later than the position ([] once the file is exhausted)."""
        after = self.position()
        with read_table(self.path) as (header, rows):
            if SNAPSHOT_COLUMN in header:
                chosen, chosen_rows = next_snapshot(header, rows, after)
            else:
                chosen_rows = [dict(zip(header, cells, strict=False)) for cells in rows]
                chosen = max((time for time in map(row_time, chosen_rows) if time), default="")
                if chosen <= after:
                    chosen, chosen_rows = "", []
                self.observed_at = chosen or None
        if chosen:
            self.state.put_text(self.position_file,
                                json.dumps({"file": str(self.path), "last_snapshot": chosen}) + "\n")
        return chosen_rows[:nrows]

    def normalise(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return normalise_history_row(raw, self.station_index, self.observed_at)


def next_snapshot(header: list[str], rows: Iterator[list[str]], after: str) -> tuple[str, list[dict[str, Any]]]:
    """The earliest `snapshot_commit_time_utc` later than `after` and its rows (("", []) when none)."""
    column = header.index(SNAPSHOT_COLUMN)
    chosen = ""
    found: list[dict[str, Any]] = []
    for cells in rows:
        snapshot = cells[column] if len(cells) > column else ""
        if snapshot <= after or chosen and snapshot > chosen:
            continue
        if snapshot != chosen:
            chosen, found = snapshot, []
        found.append(dict(zip(header, cells, strict=False)))
    return chosen, found


def row_time(row: Mapping[str, Any]) -> str | None:
    """A row's `Actualisation de la donnée` in UTC, None when unusable."""
    try:
        return parse_local_time(row.get(HISTORY_TIME), HISTORY_TIME)
    except RecordError:
        return None


@contextmanager
def read_table(path: Path) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
    """The header and the rows of a French-label CSV (plain, gzip or the one CSV of a zip), its separator (`;` or
    `,`) read from the header line; ReplayFileError when it is not one."""
    try:
        with open_text(path) as handle:
            first = handle.readline()
            delimiter = ";" if first.count(";") > first.count(",") else ","
            header = next(csv.reader([first], delimiter=delimiter), [])
            missing = [label for label in REQUIRED_LABELS if label not in header]
            if missing:
                raise ReplayFileError(
                    f"{path}: not a Velib open-data CSV (French labels): missing column(s) {', '.join(missing)}; "
                    f"the header read is {first.strip()[:200]!r}")
            yield header, csv.reader(handle, delimiter=delimiter)
    except (UnicodeDecodeError, OSError, EOFError, zipfile.BadZipFile, csv.Error) as exc:
        raise ReplayFileError(f"{path}: cannot be read as a Velib open-data CSV: {one_line(exc)}") from None


@contextmanager
def open_text(path: Path) -> Iterator[io.TextIOBase]:
    """The file's text (UTF-8, a BOM dropped): gunzipped for `.gz`, the single CSV member of a `.zip`."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.lower().endswith(".csv")]
            if len(members) != 1:
                raise ReplayFileError(f"{path}: a zip must hold exactly one .csv file, it holds {len(members)}"
                                      f"{': ' + ', '.join(members[:5]) if members else ''}")
            with archive.open(members[0]) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
                yield text
    elif path.suffix.lower() == ".gz":
        with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as text:
            yield text
    else:
        with open(path, encoding="utf-8-sig", newline="") as text:
            yield text


def is_table_file(path: Path) -> bool:
    return path.name.lower().endswith(TABLE_SUFFIXES)


def default_reference_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The GBFS station_information files and the v2.1 export next to a file."""
    folder = path.resolve().parent
    gbfs = sorted(folder.glob("gbfs_*/station_information.json"))
    exports = sorted(folder.glob("api_v21_export_*.json"))[-1:]
    return gbfs, exports


def default_geo_dir(path: Path) -> Path:
    """The `geo/` folder beside the file's folder (the shared data layout), else the shared one."""
    beside = path.resolve().parent.parent / "geo"
    return beside if beside.is_dir() else DEFAULT_GEO_DIR


def open_replay(path: Path, state_dir: Path, gbfs: Sequence[Path] = (), exports: Sequence[Path] = (),
                geo_dir: Path | None = None) -> VelibSource:
    """The replay source for a recorded file: a French-label CSV (with a station index) or a v2.1 JSON answer;
    ReplayFileError naming the problem for anything else."""
    if not path.is_file():
        raise ReplayFileError(f"no such replay file: {path}")
    if path.suffix.lower() != ".json" and not is_table_file(path):
        raise ReplayFileError(f"{path}: expected a Velib open-data CSV (.csv, .csv.gz, .zip) or a v2.1 JSON "
                              "answer (.json)")
    zone_map = ZoneMap.from_folder(geo_dir or default_geo_dir(path))
    if not is_table_file(path):
        return JsonReplaySource(path, zone_map)
    with read_table(path) as (header, _):
        has_positions = HISTORY_POSITION in header
    found_gbfs, found_exports = default_reference_files(path)
    gbfs, exports = gbfs or found_gbfs, exports or found_exports
    if not gbfs and not has_positions:
        raise ReplayFileError(f"{path} has no {HISTORY_POSITION} column and no GBFS station_information.json was "
                              "given (--gbfs) or found next to it: it is needed to map station ids to codes and "
                              "positions")
    try:
        return HistoryReplaySource(path, state_dir, StationIndex.from_files(gbfs, exports, zone_map))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReplayFileError(f"reference files of {path}: {one_line(exc)}") from None
