"""Velib ingestion without Kafka: the v2.1 API client against a local HTTP server serving the real export
(paging, limits, faults and retries), record normalisation of API records and history rows (both id styles,
both flag styles, bad rows), the landing-CSV round trip, and the replay sources."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import FIXTURES, SHARED_DATA

from cronlake.contracts.velib import STATION
from ingest.velib.api import RetryPolicy, VelibApiError, get_velib_data, parse_retry_after
from ingest.velib.records import (
    RecordError,
    StationIndex,
    normalise_api_record,
    normalise_history_row,
)
from ingest.velib.replay import HistoryReplaySource, JsonReplaySource, ReplayFileError, open_replay

EXPORT = SHARED_DATA / "velib" / "api_v21_export_2024-05-28.json"
RECORDS_PAGE = SHARED_DATA / "velib" / "api_v21_records_page_2024-04-17.json"
VELIB_FIXTURES = FIXTURES / "velib"
HISTORY = VELIB_FIXTURES / "history_slice.csv.gz"
PORTAL_CSV = VELIB_FIXTURES / "velib-disponibilite-en-temps-reel_2024-05-28.csv"
GBFS = VELIB_FIXTURES / "gbfs_2022-02-23" / "station_information.json"
EXPORT_SLICE = VELIB_FIXTURES / "api_v21_export_2024-05-28.json"
FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_wait_s=5, timeout_s=2)


class VelibApiStub:
    """The Explore API v2.1 on 127.0.0.1: `/records` (limit ≤ 100, offset + limit ≤ 10,000, else HTTP 400 like
    the real API) and `/exports/json`. `faults` are consumed one per request; `fault_rule(path, query)` adds
    persistent ones. A fault is ("status", code[, retry_after]), ("sleep", seconds) or ("bad_json",)."""

    DATASET = "/api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel"

    def __init__(self, records: list[dict[str, Any]]):
        self.records = records
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.faults: list[tuple] = []
        self.fault_rule: Callable[[str, dict[str, str]], tuple | None] = lambda path, query: None
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                stub.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.DATASET}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        path = parts.path.removeprefix(self.DATASET)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((path, query))
            fault = self.faults.pop(0) if self.faults else self.fault_rule(path, query)
        if fault and fault[0] == "sleep":
            time.sleep(fault[1])
        elif fault and fault[0] == "status":
            headers = {"Retry-After": fault[2]} if len(fault) > 2 else {}
            return self.reply(request, fault[1], {"error": "fault"}, headers)
        if path == "/exports/json":
            body: Any = self.records
        elif path == "/records":
            limit, offset = int(query.get("limit", 10)), int(query.get("offset", 0))
            if limit > 100 or offset + limit > 10_000:
                return self.reply(request, 400, {"error_code": "InvalidRESTParameterError"})
            body = {"total_count": len(self.records), "results": self.records[offset:offset + limit]}
        else:
            return self.reply(request, 404, {"error_code": "NotFound"})
        data = json.dumps(body).encode()
        if fault and fault[0] == "bad_json":
            data = data[: len(data) // 2]
        self.reply(request, 200, data)

    @staticmethod
    def reply(request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            request.send_response(status)
            for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                request.send_header(key, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def page_requests(self) -> list[dict[str, str]]:
        return [query for path, query in self.requests if path == "/records"]

    def __enter__(self) -> VelibApiStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def load_export() -> list[dict[str, Any]]:
    return json.loads(EXPORT.read_text(encoding="utf-8"))


@pytest.fixture
def api() -> Iterator[VelibApiStub]:
    with VelibApiStub(load_export()) as stub:
        yield stub


# --- API client -------------------------------------------------------------------------------------------

def test_pages_by_100_and_returns_exactly_nrows(api: VelibApiStub) -> None:
    records = get_velib_data(250, api.base_url, retry=FAST)
    assert records == load_export()[:250]
    pages = api.page_requests()
    assert [(int(q["limit"]), int(q["offset"])) for q in pages] == [(100, 0), (100, 100), (50, 200)]


def test_more_rows_than_the_api_has_stops_at_its_total(api: VelibApiStub) -> None:
    records = get_velib_data(5000, api.base_url, retry=FAST)
    assert records == load_export()
    pages = api.page_requests()
    assert len(pages) == -(-len(records) // 100)
    assert all(int(q["limit"]) <= 100 and int(q["limit"]) + int(q["offset"]) <= 10_000 for q in pages)


def test_all_rows_or_beyond_the_paging_window_use_one_export_call(api: VelibApiStub) -> None:
    assert get_velib_data(None, api.base_url, retry=FAST) == load_export()
    assert get_velib_data(20_000, api.base_url, retry=FAST) == load_export()
    assert [path for path, _ in api.requests] == ["/exports/json", "/exports/json"]
    assert get_velib_data(0, api.base_url, retry=FAST) == []


def test_http_500_is_retried(api: VelibApiStub) -> None:
    api.faults = [("status", 500)]
    assert get_velib_data(120, api.base_url, retry=FAST) == load_export()[:120]
    assert [q["offset"] for q in api.page_requests()] == ["0", "0", "100"]


def test_429_waits_for_retry_after(api: VelibApiStub) -> None:
    api.faults = [("status", 429, "1")]
    started = time.monotonic()
    assert get_velib_data(10, api.base_url, retry=FAST) == load_export()[:10]
    assert time.monotonic() - started >= 1.0  # the server's 1 s, not the policy's 0.01 s backoff
    assert len(api.requests) == 2


def test_timeout_is_retried(api: VelibApiStub) -> None:
    api.faults = [("sleep", 1.5)]
    policy = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=0.5)
    assert get_velib_data(10, api.base_url, retry=policy) == load_export()[:10]
    assert len(api.requests) == 2


@pytest.mark.parametrize("fault, message", [
    (("status", 503), "HTTP 503"),
    (("sleep", 1.0), "no answer within 0.3s"),
    (("bad_json",), "invalid JSON"),
])
def test_persistent_fault_raises_a_clear_error_and_no_partial_result(api: VelibApiStub, fault: tuple,
                                                                     message: str) -> None:
    api.fault_rule = lambda path, query: fault if query.get("offset") == "100" else None
    policy = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=0.3)
    with pytest.raises(VelibApiError) as error:
        get_velib_data(250, api.base_url, retry=policy)
    assert message in str(error.value) and "after 3 attempts" in str(error.value)
    assert [q["offset"] for q in api.page_requests()] == ["0", "100", "100", "100"]


def test_retry_after_as_seconds_or_http_date() -> None:
    from email.utils import formatdate

    assert parse_retry_after("7") == 7.0
    assert 25 <= parse_retry_after(formatdate(time.time() + 30, usegmt=True)) <= 30
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert RetryPolicy(backoff_s=1, max_wait_s=30).wait_s(2) == 4  # exponential: 1, 2, 4 ...
    assert RetryPolicy(backoff_s=1, max_wait_s=30).wait_s(0, retry_after=3600) == 30  # a cron run stays bounded


def test_client_errors_are_not_retried(api: VelibApiStub) -> None:
    with pytest.raises(VelibApiError, match="HTTP 404"):
        get_velib_data(10, api.base_url + "-typo", retry=FAST)
    assert len(api.requests) == 1


# --- normalisation ----------------------------------------------------------------------------------------

def test_api_records_normalise_to_the_raw_values() -> None:
    for raw in load_export():
        record = normalise_api_record(raw)
        assert list(record) == list(STATION.names)
        assert record["station_code"] == raw["stationcode"]
        assert record["name"] == raw["name"].strip()
        assert (record["bikes"], record["mechanical"], record["ebike"], record["docks_free"], record["capacity"]) == (
            raw["numbikesavailable"], raw["mechanical"], raw["ebike"], raw["numdocksavailable"], raw["capacity"])
        assert record["is_installed"] == (raw["is_installed"] == "OUI")
        assert record["is_renting"] == (raw["is_renting"] == "OUI")
        assert record["is_returning"] == (raw["is_returning"] == "OUI")
        assert raw["duedate"].endswith("+00:00")  # the export gives UTC offsets
        assert record["reported_at"] == raw["duedate"].replace("+00:00", "Z")
        assert (record["lat"], record["lon"]) == (raw["coordonnees_geo"]["lat"], raw["coordonnees_geo"]["lon"])
        assert record["zone"] == raw["nom_arrondissement_communes"]
        assert record["insee_code"] == raw["code_insee_commune"]
        assert record["observed_at"] == record["reported_at"]  # no fetch time given: the record's own
        assert normalise_api_record(raw, observed_at="2024-05-28T20:31:00Z")["observed_at"] == "2024-05-28T20:31:00Z"


@pytest.mark.parametrize("change, reason", [
    ({"stationcode": ""}, "missing station code"),
    ({"numbikesavailable": -1}, "negative numbikesavailable"),
    ({"mechanical": "many"}, "mechanical is not an integer"),
    ({"is_renting": "PEUT-ETRE"}, "is_renting is not a flag"),
    ({"duedate": "yesterday"}, "duedate is not an ISO-8601 time"),
    ({"duedate": "2024-05-28T20:04:29"}, "duedate has no UTC offset"),
    ({"nom_arrondissement_communes": None}, "missing nom_arrondissement_communes"),
])
def test_api_records_that_do_not_fit_raise_with_a_reason(change: dict, reason: str) -> None:
    raw = {**load_export()[0], **change}
    with pytest.raises(RecordError) as error:
        normalise_api_record(raw)
    assert reason in error.value.reason


def read_history() -> list[dict[str, str]]:
    with gzip.open(HISTORY, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def reference() -> tuple[dict[str, dict], dict[str, dict]]:
    """GBFS stations by station_id and export records by station code, read directly from the slices."""
    gbfs = {str(s["station_id"]): s for s in json.loads(GBFS.read_text(encoding="utf-8"))["data"]["stations"]}
    export = {e["stationcode"]: e for e in json.loads(EXPORT_SLICE.read_text(encoding="utf-8"))}
    return gbfs, export


def fixture_index() -> StationIndex:
    return StationIndex.from_files([GBFS], [EXPORT_SLICE])


def drifted(row: dict[str, str], gbfs: dict[str, dict]) -> dict[str, str]:
    """The same row in the newer export format: station code as identifier, OUI/NON flags."""
    flags = ("Station en fonctionnement", "Borne de paiement disponible", "Retour vélib possible")
    return {**row, "Identifiant station": gbfs[row["Identifiant station"]]["stationCode"],
            **{flag: {"1": "OUI", "0": "NON"}[row[flag]] for flag in flags}}


def test_history_rows_normalise_to_the_raw_values_in_both_formats() -> None:
    gbfs, export = reference()
    index = fixture_index()
    checked = 0
    for row in read_history():
        station = gbfs.get(row["Identifiant station"])
        if station is None or station["stationCode"] not in export:
            continue
        record = normalise_history_row(row, index)
        local = datetime.strptime(row["Actualisation de la donnée"], "%Y-%m-%d %H:%M:%S")
        assert local.month == 5  # Paris summer time: UTC+2
        assert record == {
            "station_code": station["stationCode"],
            "name": row["Nom station"].strip(),  # trailing blanks are trimmed
            "capacity": int(row["Capacité de la station"]),
            "bikes": int(row["Nombre total vélos disponibles"]),
            "mechanical": int(row["Vélos mécaniques disponibles"]),
            "ebike": int(row["Vélos électriques disponibles"]),
            "docks_free": int(row["Nombre bornettes libres"]),
            "is_installed": row["Station en fonctionnement"] == "1",
            "is_renting": row["Borne de paiement disponible"] == "1",
            "is_returning": row["Retour vélib possible"] == "1",
            "reported_at": (local - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "observed_at": row["snapshot_commit_time_utc"],
            "lat": station["lat"],
            "lon": station["lon"],
            "zone": export[station["stationCode"]]["nom_arrondissement_communes"],
            "insee_code": export[station["stationCode"]]["code_insee_commune"],
        }
        assert normalise_history_row(drifted(row, gbfs), index) == record
        checked += 1
    assert checked >= 300


def test_history_rows_that_cannot_be_mapped_are_rejected_with_a_reason() -> None:
    gbfs, export = reference()
    index = fixture_index()
    rows = read_history()
    unknown = [r for r in rows if r["Identifiant station"] not in gbfs]
    no_zone = [r for r in rows if r["Identifiant station"] in gbfs
               and gbfs[r["Identifiant station"]]["stationCode"] not in export]
    assert unknown and no_zone
    for row in unknown:
        with pytest.raises(RecordError, match="unknown station id"):
            normalise_history_row(row, index)
    for row in no_zone:
        with pytest.raises(RecordError, match="has no zone"):
            normalise_history_row(row, index)
    good = next(r for r in rows if r not in unknown and r not in no_zone)
    for change, reason in [
        ({"Identifiant station": ""}, "missing station identifier"),
        ({"Nombre bornettes libres": "-3"}, "negative Nombre bornettes libres"),
        ({"Vélos électriques disponibles": ""}, "missing Vélos électriques disponibles"),
        ({"Retour vélib possible": "2"}, "Retour vélib possible is not a flag"),
        ({"Actualisation de la donnée": "12/05/2022 11:19"}, "is not a local time"),
        ({"snapshot_commit_time_utc": "2022-05-12 10:22"}, "snapshot_commit_time_utc has no UTC offset"),
        ({"snapshot_commit_time_utc": ""}, "no observation time"),
    ]:
        with pytest.raises(RecordError) as error:
            normalise_history_row({**good, **change}, index)
        assert reason in error.value.reason


def test_station_index_prefers_the_first_feed_and_accepts_codes() -> None:
    first = {"data": {"stations": [{"station_id": 1, "stationCode": "100", "lat": 1.0, "lon": 2.0, "capacity": 9}]}}
    later = {"data": {"stations": [{"station_id": 1, "stationCode": "999", "lat": 0, "lon": 0, "capacity": 1},
                                   {"station_id": 2, "stationCode": "200", "lat": 3.0, "lon": 4.0}]}}
    index = StationIndex.from_feeds([first, later])
    assert index.resolve("1").station_code == "100"
    assert index.resolve("2").station_code == "200"
    assert index.resolve("200").station_code == "200"
    with pytest.raises(RecordError, match="unknown station id"):
        index.resolve("3")


def test_csv_round_trip() -> None:
    records = [normalise_api_record(raw) for raw in load_export()]
    assert STATION.csv_header() == list(STATION.names)
    for record in records:
        row = STATION.to_csv_row(record)
        assert row[STATION.names.index("is_installed")] in ("true", "false")
        assert row[STATION.names.index("insee_code")] == ""  # null
        assert STATION.from_csv_row(row) == record
        assert STATION.from_csv_row(dict(zip(STATION.names, row, strict=True))) == record


def test_csv_rows_that_do_not_fit_are_refused() -> None:
    row = STATION.to_csv_row(normalise_api_record(load_export()[0]))
    for column, cell, reason in [("is_renting", "OUI", "is_renting is not true/false"),
                                 ("bikes", "-1", "negative bikes"),
                                 ("lat", "north", "lat is not a number"),
                                 ("reported_at", "2024-05-28 20:04", "reported_at has no UTC offset")]:
        bad = list(row)
        bad[STATION.names.index(column)] = cell
        with pytest.raises(RecordError, match=reason):
            STATION.from_csv_row(bad)
    with pytest.raises(RecordError, match=f"expected {len(STATION.names)} columns"):
        STATION.from_csv_row(row[:-1])


# --- replay sources ---------------------------------------------------------------------------------------

def test_records_page_and_export_list_replay_to_the_same_records(tmp_path: Path) -> None:
    export = json.loads(EXPORT_SLICE.read_text(encoding="utf-8"))
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"total_count": len(export), "results": export}), encoding="utf-8")
    from_page, from_list = JsonReplaySource(page), JsonReplaySource(EXPORT_SLICE)
    records = [from_list.normalise(r) for r in from_list.fetch(None)]
    assert [from_page.normalise(r) for r in from_page.fetch(None)] == records
    assert len(records) == len(export)
    assert from_list.fetch(7) == export[:7] and from_list.fetch(None) == export  # every fetch serves it again
    real_page = JsonReplaySource(RECORDS_PAGE)
    assert len(real_page.fetch(None)) == len(json.loads(RECORDS_PAGE.read_text())["results"])
    assert all(real_page.normalise(r)["station_code"] for r in real_page.fetch(None))


def test_a_station_normalises_to_the_same_keys_and_types_from_history_and_api() -> None:
    gbfs, export = reference()
    row = next(r for r in read_history() if gbfs.get(r["Identifiant station"], {}).get("stationCode") in export)
    from_history = normalise_history_row(row, fixture_index())
    from_api = normalise_api_record(export[from_history["station_code"]])
    assert list(from_history) == list(from_api) == list(STATION.names)
    assert {k: type(v) for k, v in from_history.items()} == {k: type(v) for k, v in from_api.items()}
    assert (from_history["station_code"], from_history["zone"]) == (from_api["station_code"], from_api["zone"])


def test_history_replay_serves_one_snapshot_per_fetch_and_remembers_its_position(tmp_path: Path) -> None:
    rows = read_history()
    snapshots = sorted({r["snapshot_commit_time_utc"] for r in rows})
    assert len(snapshots) == 3
    source = open_replay(HISTORY, tmp_path)  # finds the GBFS feed and the export next to the file
    assert isinstance(source, HistoryReplaySource)
    assert source.fetch(None) == [r for r in rows if r["snapshot_commit_time_utc"] == snapshots[0]]
    restarted = open_replay(HISTORY, tmp_path)  # a new cron run: a new process, same state dir
    assert restarted.fetch(None) == [r for r in rows if r["snapshot_commit_time_utc"] == snapshots[1]]
    assert open_replay(HISTORY, tmp_path).fetch(5) == [r for r in rows
                                                       if r["snapshot_commit_time_utc"] == snapshots[2]][:5]
    assert open_replay(HISTORY, tmp_path).fetch(None) == []


def test_the_portals_csv_export_and_its_zip_replay_as_one_snapshot(tmp_path: Path) -> None:
    """The `;`-separated export with French labels (real 2024 values in the export layout) and the same file
    zipped: one snapshot, observed at its newest `Actualisation de la donnée`, normalised like the v2.1 JSON
    export of the same stations (position and commune from the row; no GBFS needed)."""
    with open(PORTAL_CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    export = {e["stationcode"]: e for e in json.loads(EXPORT_SLICE.read_text(encoding="utf-8"))}
    newest = max(datetime.fromisoformat(r["Actualisation de la donnée"]) for r in rows)
    for original in (PORTAL_CSV, PORTAL_CSV.with_suffix(".zip")):
        path = tmp_path / original.name  # alone in its folder: no GBFS feed next to it
        shutil.copy(original, path)
        source = open_replay(path, tmp_path / original.suffix)
        fetched = source.fetch(None)
        assert fetched == rows
        records = [source.normalise(r) for r in fetched]
        assert source.fetch(None) == []  # one snapshot, served once
        api = JsonReplaySource(EXPORT_SLICE, source.station_index.zone_map)
        assert records == [api.normalise(export[r["Identifiant station"]]) for r in rows]
        for record, row in zip(records, rows, strict=True):
            assert record["observed_at"] == newest.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert record["is_installed"] == (row["Station en fonctionnement"] == "OUI")
            assert f"{record['lat']}, {record['lon']}" == row["Coordonnées géographiques"]


def test_a_file_of_another_format_is_refused_in_one_line(tmp_path: Path) -> None:
    def wrote(name: str, content: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    header = PORTAL_CSV.read_bytes().splitlines()[0]
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.write(PORTAL_CSV, "a.csv")
        archive.write(PORTAL_CSV, "b.csv")
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no data")
    cases = [
        (tmp_path / "missing.csv", "no such replay file"),
        (wrote("stations.xlsx", b"PK\x03\x04"), "expected a Velib open-data CSV (.csv, .csv.gz, .zip)"),
        (wrote("api.csv", b"stationcode,numbikesavailable\n16107,3\n"), "missing column(s) Identifiant station"),
        (wrote("latin1.csv", "Identifiant station;Nom station\n1;Gare de l'Est à Paris\n".encode("latin-1")),
         "cannot be read as a Velib open-data CSV"),
        (wrote("image.csv.gz", b"\x89PNG\r\n"), "cannot be read as a Velib open-data CSV"),
        (wrote("late.csv", header + "\n1;Gare de l'Est à Paris\n".encode("latin-1")),
         "cannot be read as a Velib open-data CSV"),  # the header reads, a later row is not UTF-8
        (wrote("truncated.csv.gz", gzip.compress(PORTAL_CSV.read_bytes())[:-200]),
         "cannot be read as a Velib open-data CSV"),
        (wrote("broken.zip", b"not a zip"), "cannot be read as a Velib open-data CSV"),
        (two, "a zip must hold exactly one .csv file, it holds 2"),
        (empty_zip, "a zip must hold exactly one .csv file, it holds 0"),
        (wrote("answer.json", b"{\"error\": \"quota\"}"), "not a v2.1 JSON answer"),
        (wrote("truncated.json", b"[{\"stationcode\": "), "not a v2.1 JSON answer"),
    ]
    for path, message in cases:
        with pytest.raises(ReplayFileError) as error:
            source = open_replay(path, tmp_path / "state", gbfs=[GBFS])
            source.fetch(None)
        assert message in str(error.value), path.name
        assert "\n" not in str(error.value), path.name
