"""Zones from coordinates on the real boundaries and stations: every station of the 2022 GBFS feed gets an
arrondissement or a commune, Paris is split into its 20 arrondissements in agreement with the station codes,
the two Bois de Vincennes stations get their nearest zone, and only a station without coordinates is refused."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import SHARED_DATA
from test_velib_ingest import GBFS, HISTORY, read_history, reference

from cronlake.contracts.velib_zones import ZoneMap
from ingest.velib.records import RecordError, StationIndex, StationInfo, normalise_api_record, normalise_history_row
from ingest.velib.replay import open_replay

VELIB = SHARED_DATA / "velib"
FEED = VELIB / "gbfs_2022-02-23" / "station_information.json"
EXPORT = VELIB / "api_v21_export_2024-05-28.json"
ZONES = ZoneMap.from_folder(SHARED_DATA / "geo")


def feed_stations() -> list[dict]:
    return json.loads(FEED.read_text(encoding="utf-8"))["data"]["stations"]


def test_every_real_station_gets_a_zone_and_paris_is_split_by_arrondissement() -> None:
    index = StationIndex.from_files([FEED], [EXPORT], ZONES)
    assert all(info.zone for info in index.stations.values())
    paris = {code: info for code, info in index.stations.items() if info.insee_code.startswith("751")}
    assert {info.zone for info in paris.values()} == {f"Paris {n}{'er' if n == 1 else 'e'}" for n in range(1, 21)}
    assert max(Counter(info.zone for info in paris.values()).values()) < 120  # no zone of ~1,000 stations
    # Paris station codes start with their arrondissement (code = arrondissement × 1000 + n): check against it.
    numbered = {code: info for code, info in paris.items() if code.isdigit()}
    agree = sum(int(code) // 1000 == int(info.insee_code) - 75100 for code, info in numbered.items())
    assert agree >= 0.97 * len(numbered), (agree, len(numbered))
    # The commune, the second level, agrees with the export's commune for the stations it lists.
    export = {r["stationcode"]: r["nom_arrondissement_communes"] for r in json.loads(EXPORT.read_text("utf-8"))}
    compared = [(commune_of(index.stations[code]), name) for code, name in export.items() if code in index.stations]
    assert all(ours == "Paris" for ours, theirs in compared if theirs == "Paris")
    same = sum(plain(ours) == plain(theirs) for ours, theirs in compared)
    assert same >= 0.97 * len(compared), (same, len(compared))


def commune_of(info: StationInfo) -> str:
    return ZONES.commune(info.insee_code)


def plain(name: str) -> str:
    """A commune name without its article and "-sur-Seine" suffix (the boundary files and the export differ)."""
    for article in ("Le ", "La ", "Les ", "L'"):
        name = name.removeprefix(article)
    return name.removesuffix("-sur-Seine")


def test_stations_outside_every_outline_get_the_nearest_zone() -> None:
    outside = [s for s in feed_stations() if not any(o.contains(s["lon"], s["lat"]) for o in ZONES.outlines)]
    assert sorted(s["name"] for s in outside) == ["Bois de Vincennes.", "Gravelle - Route du Bac"]
    for station in outside:
        zone = ZONES.locate(station["lat"], station["lon"])
        nearest = min(ZONES.outlines, key=lambda o: o.distance(station["lon"], station["lat"]))
        assert zone == nearest.zone
        assert nearest.distance(station["lon"], station["lat"]) < 1_500  # metres: just outside, in the woods
    assert {ZONES.locate(s["lat"], s["lon"]).name for s in outside} == {"Paris 12e", "Saint-Mandé"}


def test_history_replay_keeps_stations_missing_from_the_export(tmp_path) -> None:
    gbfs, export = reference()
    source = open_replay(HISTORY, tmp_path)
    rows = read_history()
    missing = [r for r in rows if r["Identifiant station"] in gbfs
               and gbfs[r["Identifiant station"]]["stationCode"] not in export]
    assert missing
    for row in missing:
        station = gbfs[row["Identifiant station"]]
        record = source.normalise(row)
        assert record["zone"] == ZONES.locate(station["lat"], station["lon"]).name
    index = StationIndex.from_files([GBFS], [], ZONES)
    no_position = StationIndex(index.code_by_id, {c: StationInfo(c) for c in index.stations})
    with pytest.raises(RecordError, match="no coordinates"):
        normalise_history_row(missing[0], no_position)


def test_api_records_take_the_zone_of_their_coordinates() -> None:
    records = json.loads(EXPORT.read_text(encoding="utf-8"))
    located = [normalise_api_record(r, ZONES) for r in records[:200]]
    assert all(r["zone"] == ZONES.locate(r["lat"], r["lon"]).name for r in located)
    without = {**records[0], "coordonnees_geo": None}
    assert normalise_api_record(without, ZONES)["zone"] == records[0]["nom_arrondissement_communes"]
    with pytest.raises(RecordError, match="no coordinates"):
        normalise_api_record({**without, "nom_arrondissement_communes": None}, ZONES)
