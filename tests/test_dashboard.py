"""End-to-end tests of the dashboard in headless Chromium, served by gunicorn on a free 127.0.0.1 port.

MongoDB is seeded from a real Velib slice (tests/dashboard_seed.py), and for the churn page by the real churn jobs
on a slice of 150 customers (land, train and promote a small forest, replay, stream); every expected number is
recomputed here from the database documents with plain Python, then read back from the page the way a user sees it.
Screenshots of every page go to artifacts/screenshots/ (git-ignored; the README's images are copies of two).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, free_port
from contracts_check import declared_indexes, server_indexes
from dashboard_seed import seed
from pymongo import MongoClient, monitoring
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait
from test_churn import land_and_train, replay, run_stream

from cronlake.contracts import retail, retail_logs, retail_social, velib
from cronlake.core import mongo, sink
from cronlake.core.mongo import data_db, ops_db
from cronlake.core.opsdb import HEARTBEATS, JOB_RUNS, LAKE_CENSUS
from cronlake.core.settings import load

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               "--window-size=1400,1000",
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"]  # any request off this host fails
SCREENSHOTS = REPO / "artifacts" / "screenshots"
WAIT_S = 20

# --- fixtures --------------------------------------------------------------------------------------------------


@contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[str]:
    """The dashboard under gunicorn (as in production) with `env`'s settings; yields its base URL."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
             "--no-control-socket", "dashboard.app:server"],
            cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def seeded(stack: dict[str, str], spark: object, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """A lake, data db and ops db of their own (like `cronlake_env`), seeded by the pipeline from the slice,
    shared by the page tests of this module."""
    tag = uuid.uuid4().hex[:8]
    state = tmp_path_factory.mktemp("dashboard")
    env = {**stack, "CRONLAKE_STATE_DIR": str(state / "state"), "CRONLAKE_LAKE_ROOT": (state / "lake").as_uri(),
           "CRONLAKE_MONGO_DB": f"dash_{tag}", "CRONLAKE_MONGO_OPS_DB": f"dash_{tag}_ops",
           "CRONLAKE_VELIB_TOPIC": f"velib.dash{tag}"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        seed()
        settings = load()
    with served(env, state / "gunicorn.log") as url:
        yield {"url": url, "data": data_db(settings), "ops": ops_db(settings), "settings": settings, "env": env}


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    for argument in CHROME_ARGS:
        options.add_argument(argument)
    profile = tempfile.mkdtemp(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})  # requests, console
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# --- browser helpers -------------------------------------------------------------------------------------------


def open_page(driver: webdriver.Chrome, url: str, ready: str) -> None:
    """Load `url` and wait until the element matching CSS `ready` is on the page."""
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.CSS_SELECTOR, ready)))


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text.strip()


def wait_text(driver: webdriver.Chrome, element_id: str, expected: str) -> None:
    WebDriverWait(driver, WAIT_S).until(EC.text_to_be_present_in_element((By.ID, element_id), expected))


def pick(driver: webdriver.Chrome, dropdown_id: str, search: str, option_text: str) -> None:
    """Open a Dash dropdown, type in its search box, click the option whose label contains `option_text`."""
    driver.find_element(By.ID, dropdown_id).click()
    box = WebDriverWait(driver, WAIT_S).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, ".dash-dropdown-content input.dash-dropdown-search")))
    box.send_keys(search)
    path = f"//div[contains(@class,'dash-dropdown-content')]//label[contains(., {xpath_literal(option_text)})]"
    option = WebDriverWait(driver, WAIT_S).until(EC.element_to_be_clickable((By.XPATH, path)))
    option.click()


def xpath_literal(value: str) -> str:
    return f"'{value}'" if "'" not in value else f'"{value}"'


def table(driver: webdriver.Chrome, table_id: str) -> list[dict[str, str]]:
    """The visible rows of a Dash DataTable as {column id: cell text}."""
    return driver.execute_script(
        """return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))
             .filter(tr => tr.querySelector('td[data-dash-column]'))
             .map(tr => Object.fromEntries(Array.from(tr.querySelectorAll('td[data-dash-column]'))
               .map(td => [td.getAttribute('data-dash-column'), td.innerText.trim()])));""",
        table_id,
    )


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def downloaded_csv(driver: webdriver.Chrome, button_id: str, folder: Path) -> list[dict[str, str]]:
    """Click a page's CSV download button and read back the one file the browser saves into `folder`."""
    folder.mkdir()
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    driver.find_element(By.ID, button_id).click()
    WebDriverWait(driver, WAIT_S).until(lambda _: list(folder.glob("*.csv")))
    with open(next(folder.glob("*.csv")), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def as_number(cell: str) -> float:
    return float(cell.replace("%", ""))


# --- pages -----------------------------------------------------------------------------------------------------


def shipped_zone_names() -> set[str]:
    """Zone names straight from the shipped GeoJSON files: `Paris 1er` … `Paris 20e`, and each commune's `nom`."""
    names = set()
    for path in (REPO / "ingest" / "velib" / "geo").glob("*.geojson"):
        for feature in json.loads(path.read_text(encoding="utf-8"))["features"]:
            props = feature["properties"]
            number = int(props["c_ar"]) if "c_ar" in props else None
            names.add(props["nom"] if number is None else f"Paris {number}{'er' if number == 1 else 'e'}")
    return names


def map_traces(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The live map's traces as drawn: kind (zone / outline / stations / scale), name, points, hover text."""
    return driver.execute_script(
        """return document.querySelector('#live-map .js-plotly-plot').data.map(t => ({kind: t.meta[0],
             state: t.meta[1] || null, name: t.name, x: t.x, y: t.y, customdata: t.customdata || [],
             text: t.text || null, fillcolor: t.fillcolor || null}));""")


def inside(xs: list[float | None], ys: list[float | None], x: float, y: float) -> bool:
    """Even-odd test over the rings of a trace (rings separated by None)."""
    hit, ring = False, []
    for px, py in [*zip(xs, ys, strict=True), (None, None)]:
        if px is not None:
            ring.append((px, py))
            continue
        for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                hit = not hit
        ring = []
    return hit


def click_zone(driver: webdriver.Chrome, zone: str) -> None:
    """Click inside `zone`'s fill, at the point of a grid farthest (in pixels) from every station marker."""
    to_pixels = """const gd = document.querySelector('#live-map .js-plotly-plot'), fl = gd._fullLayout;
        const box = gd.getBoundingClientRect();
        return arguments[0].map(([x, y]) => [fl.xaxis.l2p(x) + fl._size.l - box.width / 2,
                                             fl.yaxis.l2p(y) + fl._size.t - box.height / 2]);"""
    traces = map_traces(driver)
    shape = next(t for t in traces if t["kind"] == "zone" and t["name"] == zone)
    xs, ys = [x for x in shape["x"] if x is not None], [y for y in shape["y"] if y is not None]
    grid = [(min(xs) + (max(xs) - min(xs)) * i / 20, min(ys) + (max(ys) - min(ys)) * j / 20)
            for i in range(1, 20) for j in range(1, 20)]
    candidates = driver.execute_script(to_pixels, [p for p in grid if inside(shape["x"], shape["y"], *p)])
    markers = driver.execute_script(to_pixels, [[x, y] for t in traces if t["kind"] == "stations"
                                                for x, y in zip(t["x"], t["y"], strict=True)])
    best = max(candidates, key=lambda c: min(math.dist(c, m) for m in markers))
    ActionChains(driver).move_to_element_with_offset(
        driver.find_element(By.CSS_SELECTOR, "#live-map .js-plotly-plot"), round(best[0]), round(best[1])).click(
    ).perform()


def test_live_map_draws_zones_stations_and_selects_a_zone(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    stations = list(seeded["data"].velib_live_station.find())
    placed = [d for d in stations if d.get("lat") is not None]
    browser.get_log("performance")  # drop what earlier pages logged: the answers below are this page's
    open_page(browser, seeded["url"] + "/", "#live-stations")

    def totals(docs: list[dict[str, Any]]) -> dict[str, str]:
        latest = [d["latest"] for d in docs]
        return {"live-stations": str(len(docs)), "live-bikes": str(sum(x["bikes"] for x in latest)),
                "live-mechanical": str(sum(x["mechanical"] for x in latest)),
                "live-ebike": str(sum(x["ebike"] for x in latest)),
                "live-docks": str(sum(x["docks_free"] for x in latest)),
                "live-empty": str(sum(x["bikes"] == 0 for x in latest)),
                "live-full": str(sum(x["docks_free"] == 0 for x in latest))}

    def markers() -> dict[str, list[Any]]:
        return {p[1]: p for t in map_traces(browser) if t["kind"] == "stations" for p in t["customdata"]}

    assert {key: text_of(browser, key) for key in totals(stations)} == totals(stations)
    # every zone with stations is drawn filled, on the shipped outlines; neighbouring zones as outlines
    traces = map_traces(browser)
    with_stations = {d["zone"] for d in placed}
    assert with_stations <= shipped_zone_names()
    assert sorted(t["name"] for t in traces if t["kind"] == "zone") == sorted(with_stations)
    outlined = {t["name"] for t in traces if t["kind"] == "outline"}
    assert outlined and outlined <= shipped_zone_names() - with_stations
    filled = browser.execute_script(
        "return Array.from(document.querySelectorAll('#live-map path.js-fill')).filter(p => p.getAttribute('d')"
        ".length > 10).length")
    assert filled == len(with_stations)
    # the default metric: each zone's text gives its fill ratio, sum(bikes) / sum(capacity)
    for trace in (t for t in traces if t["kind"] == "zone"):
        docs = [d for d in placed if d["zone"] == trace["name"]]
        ratio = min(1.0, sum(d["latest"]["bikes"] for d in docs) / sum(d["capacity"] for d in docs))
        assert f"Fill ratio (bikes / capacity): {100 * ratio:.0f}%" in trace["text"]
        assert f"{len(docs)} stations" in trace["text"]
    # a marker for every station, with its hover details, in the trace of its state
    points = markers()
    assert sorted(points) == sorted(d["_id"] for d in placed)
    some = placed[0]
    assert points[some["_id"]][0] == some["name"] and points[some["_id"]][2] == some["zone"]
    assert points[some["_id"]][4:9] == [some["latest"][k] for k in ("bikes", "mechanical", "ebike", "docks_free")] + [
        some["capacity"]]
    empty = {p[1] for t in traces if t["state"] == "empty" for p in t["customdata"]}
    assert empty == {d["_id"] for d in placed if d["latest"]["bikes"] == 0 and d["latest"]["is_installed"]
                     and d["latest"]["is_renting"]}
    assert len(table(browser, "live-table")) == min(15, len(stations))
    screenshot(browser, "live-map")
    assert_refresh_sends_what_changed(seeded, browser, placed, totals, markers)

    # another metric recolours the zones
    before = {t["name"]: t["fillcolor"] for t in traces if t["kind"] == "zone"}
    pick(browser, "live-metric", "E-bikes", "E-bikes available")
    WebDriverWait(browser, WAIT_S).until(lambda d: any(
        "E-bikes available" in (t["text"] or "") for t in map_traces(d)))
    after = [t for t in map_traces(browser) if t["kind"] == "zone"]
    assert {t["name"]: t["fillcolor"] for t in after} != before
    for trace in after:
        ebikes = sum(d["latest"]["ebike"] for d in placed if d["zone"] == trace["name"])
        assert f"E-bikes available: {ebikes:,}" in trace["text"]

    # a click on a zone selects it: totals, markers and the table keep its stations only
    zone = max(with_stations, key=lambda z: sum(d["zone"] == z for d in placed))
    in_zone = [d for d in stations if d["zone"] == zone]
    click_zone(browser, zone)
    wait_text(browser, "live-stations", str(len(in_zone)))
    assert {key: text_of(browser, key) for key in totals(in_zone)} == totals(in_zone)
    assert sorted(markers()) == sorted(d["_id"] for d in in_zone)
    assert {r["zone"] for r in table(browser, "live-table")} == {zone}
    screenshot(browser, "live-map-zone")

    other = sorted(with_stations - {zone})[0]
    in_other = [d for d in stations if d["zone"] == other]
    pick(browser, "live-zone", other[:5], other)
    wait_text(browser, "live-stations", str(len(in_other)))
    assert sorted(markers()) == sorted(d["_id"] for d in in_other)

    open_page(browser, seeded["url"] + "/?zone=%24where&metric=x", "#live-stations")
    warnings = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".notice.invalid")]
    assert any("unknown zone" in w for w in warnings) and any("unknown metric" in w for w in warnings)
    assert text_of(browser, "live-stations") == str(len(stations))


def live_answers(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The live map callback's answers logged since the last call (Chrome's performance log), oldest first: the
    bytes received and the parsed body."""
    messages = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    asked = [m["params"]["requestId"] for m in messages if m["method"] == "Network.requestWillBeSent"
             and "live-drawn" in m["params"]["request"].get("postData", "")]
    received = {m["params"]["requestId"]: m["params"]["encodedDataLength"] for m in messages
                if m["method"] == "Network.loadingFinished"}
    return [{"bytes": received[request], "body": json.loads(driver.execute_cdp_cmd(
        "Network.getResponseBody", {"requestId": request})["body"])["response"]} for request in asked]


def lists_of(value: Any) -> set[str]:
    """The keys of the lists held by the dicts nested in `value`."""
    if isinstance(value, dict):
        return {k for k, v in value.items() if isinstance(v, list)}.union(*map(lists_of, value.values()))
    return set().union(*map(lists_of, value)) if isinstance(value, list) else set()


def assert_refresh_sends_what_changed(seeded: dict[str, Any], browser: webdriver.Chrome,
                                      placed: list[dict[str, Any]], totals: Any, markers: Any) -> None:
    """The minute's refresh (the interval's tick, fired now) draws a station's new snapshot, and its answer carries
    the zones' values and the stations' counts but not one outline point: a fraction of the page view's first
    answer."""
    first = live_answers(browser)[-1]
    outline_points = sum(len(t["x"]) for t in first["body"]["live-map"]["figure"]["data"]
                         if t["meta"][0] in ("zone", "outline"))
    assert outline_points > 0
    collection = seeded["data"].velib_live_station
    station = max((d for d in placed if d["latest"]["is_installed"] and d["latest"]["is_renting"]),
                  key=lambda d: d["latest"]["bikes"])
    try:
        collection.update_one({"_id": station["_id"]}, {"$set": {
            "latest.bikes": 0, "latest.mechanical": 0, "latest.ebike": 0}})
        now = [collection.find_one({"_id": d["_id"]}) for d in placed]
        browser.execute_script("window.dash_clientside.set_props('live-interval', {n_intervals: 1});")
        WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: text_of(d, "live-bikes") == totals(now)["live-bikes"])
        assert {key: text_of(browser, key) for key in totals(now)} == totals(now)
        drawn = markers()
        assert drawn[station["_id"]][3:8] == ["No bike", 0, 0, 0, station["latest"]["docks_free"]]
        assert {code: point[4] for code, point in drawn.items()} == {d["_id"]: d["latest"]["bikes"] for d in now}
        zone_text = next(t["text"] for t in map_traces(browser) if t["kind"] == "zone" and t["name"] == station["zone"])
        in_zone = [d for d in now if d["zone"] == station["zone"]]
        ratio = min(1.0, sum(d["latest"]["bikes"] for d in in_zone) / sum(d["capacity"] for d in in_zone))
        assert f"Fill ratio (bikes / capacity): {100 * ratio:.0f}%" in zone_text
        assert browser.execute_script(  # every zone still drawn filled, from the outlines of the first answer
            "return Array.from(document.querySelectorAll('#live-map path.js-fill')).filter(p => p.getAttribute('d')"
            ".length > 10).length") == len({d["zone"] for d in placed})
        refresh = live_answers(browser)[-1]
        assert "live-map" not in refresh["body"]  # the figure is not sent again, only its changes
        assert not {"x", "y"} & lists_of(refresh["body"])  # not one outline point, nor a station's position
        print(f"live map answers: first {first['bytes']:,} bytes, refresh {refresh['bytes']:,} bytes")
        assert refresh["bytes"] < first["bytes"] / 4
    finally:
        collection.update_one({"_id": station["_id"]}, {"$set": {"latest": station["latest"]}})


def test_live_refresh_sends_the_whole_figure_again_once_a_station_moved(seeded: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Dash's endpoint (Flask test client): a refresh of the frame drawn answers with each station's counts,
    as in the database, and no figure; once a station moved, the browser's markers would be at the wrong place, so
    the refresh answers with the whole figure, the station at its new position."""
    from dashboard import store
    from dashboard.app import app

    for key, value in seeded["env"].items():
        monkeypatch.setenv(key, value)
    store.current.cache_clear()
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    output = next(key for key in app.callback_map if "live-map.figure" in key)

    def answer(drawn: str | None) -> dict[str, Any]:
        values = {"live-zone": None, "live-metric": "fill", "live-interval": 1}
        spec = app.callback_map[output]
        payload = {"output": output, "outputs": [dict(zip(("id", "property"), o.split("."), strict=True))
                                                 for o in output.strip(".").split("...")],
                   "inputs": [{**i, "value": values[i["id"]]} for i in spec["inputs"]],
                   "changedPropIds": ["live-interval.n_intervals"],
                   "state": [{**s, "value": drawn} for s in spec["state"]]}
        response = client.post("/_dash-update-component", json=payload)
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        return response.get_json()["response"]

    collection = seeded["data"].velib_live_station
    station = collection.find_one({"lat": {"$ne": None}})
    try:
        first = answer(None)
        drawn = first["live-drawn"]["data"]
        refresh = answer(drawn)
        assert "live-map" not in refresh and "live-drawn" not in refresh
        counts = {row[0]: row[1:5] for _, trace in refresh["live-moved"]["data"]["traces"]
                  for row in trace.get("rows", [])}
        assert counts == {d["_id"]: [d["latest"][k] for k in ("bikes", "mechanical", "ebike", "docks_free")]
                          for d in collection.find({"lat": {"$ne": None}})}
        collection.update_one({"_id": station["_id"]}, {"$set": {"lat": station["lat"] + 0.001}})
        again = answer(drawn)
        assert again["live-drawn"]["data"] != drawn and "live-moved" not in again
        placed = {c[1]: y for t in again["live-map"]["figure"]["data"] if t["meta"][0] == "stations"
                  for c, y in zip(t["customdata"], t["y"], strict=True)}
        assert placed[station["_id"]] == station["lat"] + 0.001
    finally:
        collection.update_one({"_id": station["_id"]}, {"$set": {"lat": station["lat"]}})
        store.current.cache_clear()


def test_station_page_history_live_and_prediction(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    data = seeded["data"]
    # a station that ran empty at least once, and is not the page's default (first by name)
    code = sorted(d["station_code"] for d in data.velib_station_daily.find({"zero_bike_samples": {"$gt": 0}}))[-1]
    live = data.velib_live_station.find_one({"_id": code})
    history = sorted(data.velib_station_daily.find({"station_code": code}), key=lambda d: d["day"])
    prediction = data.velib_predictions.find_one({"_id": code})

    open_page(browser, seeded["url"] + "/station", "#station-title")
    assert code not in text_of(browser, "station-title")
    pick(browser, "station-picker", code, f"({code})")
    wait_text(browser, "station-title", f"code {code}")
    assert live["name"] in text_of(browser, "station-title")

    rows = table(browser, "station-history")
    assert [r["day"] for r in rows] == [d["day"] for d in history]
    for row, doc in zip(rows, history, strict=True):
        assert as_number(row["avg_bikes"]) == round(doc["avg_bikes"], 2)
        assert int(row["min_bikes"]) == doc["min_bikes"] and int(row["max_bikes"]) == doc["max_bikes"]
        assert as_number(row["avg_docks_free"]) == round(doc["avg_docks_free"], 2)
        assert int(row["zero_bike_samples"]) == doc["zero_bike_samples"]
    assert text_of(browser, "station-bikes") == str(live["latest"]["bikes"])
    assert text_of(browser, "station-today-samples") == str(live["today"]["samples"])
    for field in ("avg_mechanical", "avg_ebike", "avg_docks_free"):
        assert as_number(text_of(browser, f"station-today-{field}")) == round(live["today"][field], 1)
    assert text_of(browser, "station-probability") == f"{100 * prediction['probability_full']:.1f}%"
    assert text_of(browser, "station-model-version") == prediction["model_version"]
    screenshot(browser, "station")

    open_page(browser, seeded["url"] + f"/station?station={code}", "#station-title")
    wait_text(browser, "station-title", f"code {code}")
    open_page(browser, seeded["url"] + "/station?station=%7B%22%24ne%22%3A1%7D", "#station-title")
    assert "not a station code" in browser.find_element(By.CSS_SELECTOR, ".notice.invalid").text


def test_zones_page_latest_day_sortable_and_day_picker(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    data = seeded["data"]
    days = sorted(data.velib_zone_daily.distinct("day"))
    latest = {d["zone"]: d for d in data.velib_zone_daily.find({"day": days[-1]})}
    open_page(browser, seeded["url"] + "/zones", "#zones-table tbody td")
    rows = table(browser, "zones-table")
    assert sorted(r["zone"] for r in rows) == sorted(latest)
    for row in rows:
        doc = latest[row["zone"]]
        assert int(row["stations"]) == doc["stations"]
        assert as_number(row["fill_pct"]) == round(100 * doc["fill_ratio"], 1)
        assert as_number(row["avg_bikes"]) == round(doc["avg_bikes"], 2)
    assert len(table(browser, "zones-live")) == data.velib_live_zone.count_documents({})

    header = browser.find_element(By.XPATH, "//div[@id='zones-table']//th[@data-dash-column='fill_pct']")
    header.find_element(By.CSS_SELECTOR, ".column-header--sort").click()
    fills = [as_number(r["fill_pct"]) for r in table(browser, "zones-table")]
    assert fills == sorted(fills)
    screenshot(browser, "zones")

    pick(browser, "zones-day", days[0], days[0])
    WebDriverWait(browser, WAIT_S).until(EC.text_to_be_present_in_element(
        (By.ID, "zones-content"), f"Daily averages on {days[0]}"))
    first = {d["zone"]: d for d in data.velib_zone_daily.find({"day": days[0]})}
    assert {r["zone"]: as_number(r["fill_pct"]) for r in table(browser, "zones-table")} == {
        z: round(100 * d["fill_ratio"], 1) for z, d in first.items()}


def test_empty_and_full_stations_for_a_day(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    data = seeded["data"]
    days = sorted(data.velib_station_daily.distinct("day"))

    def expected(day: str, counter: str) -> list[dict[str, Any]]:
        docs = [d for d in data.velib_station_daily.find({"day": day}) if d[counter] > 0]
        return sorted(docs, key=lambda d: (-d[counter], d["station_code"]))

    for day, url in ((days[-1], "/extremes"), (days[0], f"/extremes?day={days[0]}")):
        open_page(browser, seeded["url"] + url, "#extremes-empty-count")
        for kind, counter in (("empty", "zero_bike_samples"), ("full", "zero_dock_samples")):
            docs = expected(day, counter)
            assert text_of(browser, f"extremes-{kind}-count") == str(len(docs))
            rows = table(browser, f"extremes-{kind}")
            assert [r["station_code"] for r in rows] == [d["station_code"] for d in docs][:25]
            if docs:  # the latest day (one collection after midnight) may have no empty station
                assert int(rows[0][counter]) == docs[0][counter]
                assert as_number(rows[0]["share"]) == round(100 * docs[0][counter] / docs[0]["samples"], 1)
        if day == days[-1]:
            screenshot(browser, "extremes")

    open_page(browser, seeded["url"] + "/extremes?day=2022-02-30", "#extremes-empty-count")
    assert "not a calendar day" in browser.find_element(By.CSS_SELECTOR, ".notice.invalid").text


def capacity_expected(docs: list[dict[str, Any]], min_hours: float) -> dict[str, Any]:
    """The Capacity page's figures from the documents with plain Python: seconds summed, then divided."""
    stations: dict[str, dict[str, Any]] = {}
    for doc in sorted(docs, key=lambda d: d["day"]):
        row = stations.setdefault(doc["station_code"], {"observed": 0, "empty": 0, "full": 0})
        row.update(zone=doc["zone"], commune=doc["commune"], name=doc["name"], capacity=doc["capacity"])
        for measure in ("observed", "empty", "full"):
            row[measure] += doc[f"{measure}_s"]
    ranked = {code: row for code, row in stations.items() if row["observed"] >= min_hours * 3600}
    pct = {code: {m: round(100 * row[m] / row["observed"], 1) for m in ("full", "empty")}
           for code, row in ranked.items()}
    zones: dict[str, dict[str, int]] = {}
    for row in stations.values():
        zone = zones.setdefault(row["zone"], {"observed": 0, "full": 0, "empty": 0, "stations": 0})
        zone["stations"] += 1
        for measure in ("observed", "empty", "full"):
            zone[measure] += row[measure]

    def order(measure: str) -> list[str]:
        return sorted((c for c in ranked if pct[c][measure] > 0), key=lambda c: (-pct[c][measure], c))

    return {"ranked": ranked, "pct": pct, "full": order("full"), "empty": order("empty"), "zones": zones}


def hour_of_week_full(docs: list[dict[str, Any]]) -> list[list[float | None]]:
    observed = [[0] * 24 for _ in range(7)]
    full = [[0] * 24 for _ in range(7)]
    for doc in docs:
        weekday = date.fromisoformat(doc["day"]).weekday()
        for hour in range(24):
            observed[weekday][hour] += doc["observed_by_hour"][hour]
            full[weekday][hour] += doc["full_by_hour"][hour]
    return [[round(100 * f / o, 1) if o else None for f, o in zip(fs, os_, strict=True)]
            for fs, os_ in zip(full, observed, strict=True)]


def test_capacity_page_rankings_zones_heatmap_and_csv(seeded: dict[str, Any], browser: webdriver.Chrome,
                                                      tmp_path: Path) -> None:
    docs = list(seeded["data"].velib_station_capacity.find())
    expected = capacity_expected(docs, min_hours=12)
    assert expected["full"] and expected["empty"]  # the slice has stations that ran full and empty

    open_page(browser, seeded["url"] + "/capacity", "#capacity-full tbody td")
    assert text_of(browser, "capacity-stations") == str(len(expected["ranked"]))
    assert text_of(browser, "capacity-undersized") == str(sum(p["full"] >= 10 for p in expected["pct"].values()))
    for kind in ("full", "empty"):
        rows = table(browser, f"capacity-{kind}")
        assert [r["station_code"] for r in rows] == expected[kind][:25]
        for row in rows:
            assert as_number(row[f"{kind}_pct"]) == expected["pct"][row["station_code"]][kind]
    zones = {r["zone"]: r for r in table(browser, "capacity-zones")}
    assert set(zones) == set(expected["zones"])
    for zone, sums in expected["zones"].items():
        assert int(zones[zone]["stations"]) == sums["stations"]
        assert as_number(zones[zone]["full_pct"]) == round(100 * sums["full"] / sums["observed"], 1)
    points = browser.execute_script("return document.querySelector('#capacity-scatter .js-plotly-plot').data"
                                    ".flatMap(trace => trace.customdata.map(c => c[1]))")
    assert sorted(points) == sorted(expected["ranked"])
    screenshot(browser, "capacity")

    top = expected["full"][0]
    wait_text(browser, "capacity-focus-title", f"({top})")
    grid = browser.execute_script("return document.querySelector('#capacity-heatmap .js-plotly-plot').data[0].z")
    assert grid == hour_of_week_full([d for d in docs if d["station_code"] == top])
    zone = sorted(expected["zones"])[0]
    pick(browser, "capacity-focus", zone[:4], f"zone: {zone}")
    wait_text(browser, "capacity-focus-title", f"zone {zone}")
    grid = browser.execute_script("return document.querySelector('#capacity-heatmap .js-plotly-plot').data[0].z")
    assert grid == hour_of_week_full([d for d in docs if d["zone"] == zone])
    browser.execute_script("document.getElementById('capacity-heatmap').scrollIntoView()")
    screenshot(browser, "capacity-heatmap")

    rows = downloaded_csv(browser, "capacity-download-button", tmp_path / "downloads")
    pct = expected["pct"]
    assert [r["station_code"] for r in rows] == sorted(pct, key=lambda c: (-pct[c]["full"], -pct[c]["empty"], c))
    for row in rows:
        assert float(row["full_pct"]) == pct[row["station_code"]]["full"]
        assert float(row["empty_pct"]) == pct[row["station_code"]]["empty"]
        assert int(row["capacity"]) == expected["ranked"][row["station_code"]]["capacity"]

    open_page(browser, seeded["url"] + "/capacity?start=2022-02-30", "#capacity-full tbody td")
    assert "not a calendar day" in browser.find_element(By.CSS_SELECTOR, ".notice.invalid").text


def test_model_page_metrics_and_predictions(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    data = seeded["data"]
    run = max(data.velib_model_runs.find(), key=lambda d: d["trained_at"])
    top = sorted(data.velib_predictions.find(), key=lambda d: -d["probability_full"])[:30]
    open_page(browser, seeded["url"] + "/model", "#model-metrics tbody td")
    assert text_of(browser, "model-version") == run["version"]
    metrics = {r["metric"]: r for r in table(browser, "model-metrics")}
    for name in ("auc", "pr_auc", "precision", "recall", "f1"):
        assert as_number(metrics[name]["model"]) == round(run["metrics"]["model"][name], 3)
        assert as_number(metrics[name]["baseline"]) == round(run["metrics"]["baseline"][name], 3)
    curve = browser.execute_script("return document.querySelector('#model-pr-curve .js-plotly-plot').data"
                                   ".map(trace => [trace.name, trace.x, trace.y])")
    assert curve[0][1] == [p["recall"] for p in run["pr_curve"]]
    assert curve[0][2] == [p["precision"] for p in run["pr_curve"]]
    assert curve[2][1:] == [[run["metrics"]["baseline"]["recall"]], [run["metrics"]["baseline"]["precision"]]]
    rows = table(browser, "model-predictions")
    assert [as_number(r["probability_pct"]) for r in rows] == [round(100 * d["probability_full"], 1) for d in top]
    by_code = {d["station_code"]: d for d in data.velib_predictions.find()}
    for row in rows:
        doc = by_code[row["station_code"]]
        assert as_number(row["probability_pct"]) == round(100 * doc["probability_full"], 1)
        assert row["predicted"] == ("yes" if doc["predicted_full"] else "no")
        assert row["model_version"] == doc["model_version"] == run["version"]
    screenshot(browser, "model")


def test_health_page_jobs_failures_lake_lag_heartbeat(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    ops = seeded["ops"]
    runs = list(ops.job_runs.find())
    latest: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r["started_at"]):
        latest[run["job"]] = run
    failures = sorted((r for r in runs if r["status"] in ("failed", "died")), key=lambda r: r["started_at"],
                      reverse=True)
    census = list(ops.lake_census.find())

    open_page(browser, seeded["url"] + "/health", "#health-jobs tbody td")
    jobs = {r["job"]: r for r in table(browser, "health-jobs")}
    assert {job: row["status"] for job, row in jobs.items()} == {job: r["status"] for job, r in latest.items()}
    for job, run in latest.items():
        assert jobs[job]["error"] == (run["error"] or "")
    shown = table(browser, "health-failures")
    assert [(r["job"], r["error"]) for r in shown] == [(r["job"], r["error"]) for r in failures]
    assert text_of(browser, "health-landing-files") == str(sum(d["files"] for d in census if d["zone"] == "landing"))
    assert text_of(browser, "health-quarantine-files") == str(
        sum(d["files"] for d in census if d["zone"] == "quarantine"))
    lag = ops.kafka_lag.find_one()
    assert [r["lag"] for r in table(browser, "health-lag")] == [str(lag["lag"])]
    beat = table(browser, "health-heartbeats")[0]
    expected_age = time.time() - ops.heartbeats.find_one({"_id": "velib_stream"})["last_batch_at"].timestamp()
    assert beat["job"] == "velib_stream" and abs(int(beat["age_s"]) - expected_age) < 120
    assert beat["state"] == "ok"
    screenshot(browser, "health")


def test_empty_database_says_what_to_run(cronlake_env: dict[str, str], browser: webdriver.Chrome,
                                         tmp_path: Path) -> None:
    expected = {
        "/": {"velib_stream"},
        "/station": {"velib_daily"},
        "/zones": {"velib_daily", "velib_stream"},
        "/extremes": {"velib_daily"},
        "/capacity": {"velib_capacity"},
        "/model": {"velib_train"},
        "/churn": {"churn_stream", "churn_train"},
        "/retail/campaigns": {"retail_ads"},
        "/health": {"velib_daily", "lake_census", "velib_land", "velib_stream"},
        "/retail/traffic": {"retail_logs"},
        "/retail/sales": {"retail_daily", "retail_olist"},
        "/retail/social": {"retail_social"},
    }
    with served(cronlake_env, tmp_path / "gunicorn.log") as url:
        for path, jobs in expected.items():
            open_page(browser, url + path, ".notice.no-data")
            notices = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".notice.no-data")]
            assert all(n.startswith("No data yet — run python -m cronlake.ops.run ") for n in notices)
            assert {job for n in notices for job in re.findall(r"cronlake\.ops\.run (\w+)", n)} == jobs, path
            assert "Traceback" not in browser.page_source
        screenshot(browser, "empty-health")


def test_pages_load_nothing_from_outside(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    """Every request the live map page makes (scripts, styles, callbacks, anything plotly would fetch: tiles,
    topojson, fonts) goes to the dashboard itself: it must work offline."""
    browser.get_log("performance")  # drop what earlier pages logged
    open_page(browser, seeded["url"] + "/", "#live-map .js-plotly-plot path.js-fill")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(
        "return document.querySelectorAll('#live-map .scatterlayer .point').length") > 0)
    messages = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    requested = [m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"]
    assert requested and any("_dash-update-component" in r for r in requested)
    assert [r for r in requested if not r.startswith((seeded["url"] + "/", "data:", "blob:"))] == []
    sources = browser.execute_script(
        "return Array.from(document.querySelectorAll('script[src], link[href]')).map(e => e.src || e.href)")
    assert sources and all(s.startswith(seeded["url"]) for s in sources), sources
    try:
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    except WebDriverException:
        severe = []
    assert not severe, severe


def test_mongo_down_names_the_setting(cronlake_env: dict[str, str], browser: webdriver.Chrome, tmp_path: Path) -> None:
    nothing = f"mongodb://127.0.0.1:{free_port()}"
    with served({**cronlake_env, "CRONLAKE_MONGO_URI": nothing}, tmp_path / "gunicorn.log") as url:
        open_page(browser, url + "/health", ".notice.unavailable")
        assert browser.find_element(By.CSS_SELECTOR, ".notice.unavailable").text == (
            f"CRONLAKE_MONGO_URI: MongoDB at {nothing} does not answer (ServerSelectionTimeoutError)")


# --- the serving layer: the jobs create the indexes, the dashboard only reads ------------------------------------

WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify", "createIndexes", "create", "drop", "dropIndexes",
                  "dropDatabase", "renameCollection", "collMod", "bulkWrite"}


class Commands(monitoring.CommandListener):
    """Every command name a client sends."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_every_declared_index_exists_once_the_writing_jobs_ran(seeded: dict[str, Any]) -> None:
    """The seed ran velib_daily, velib_train, lake_census, retail_social, retail_daily, retail_olist, retail_logs
    and the stream's writer (no index was created by hand)."""
    written = (*velib.COLLECTIONS, retail_social.MENTIONS, retail_social.DAY_SUMMARY, retail.DAILY,
               retail.SALES_DAILY, retail_logs.HOURLY, retail_logs.TOP_PAGES, retail_logs.SESSION_SUMMARY, JOB_RUNS,
               HEARTBEATS, LAKE_CENSUS)
    for collection in written:
        db = sink.database(seeded["settings"], collection)
        assert declared_indexes(collection) <= server_indexes(db, collection), collection.name


def test_the_dashboard_issues_no_write_command(seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page and every callback, through Dash's Flask test client, on a client that records its commands."""
    day = seeded["data"].velib_station_daily.find_one(sort=[("day", -1)])["day"]
    code = seeded["data"].velib_live_station.find_one()["station_code"]
    zone = seeded["data"].velib_live_station.find_one()["zone"]
    social_day = seeded["data"].retail_social_daily.find_one()["day"]
    brand = seeded["data"].retail_social_mentions.find_one()["brand"]
    sales_day = seeded["data"].retail_sales_daily.find_one({"source": "olist"})["day"]
    site = seeded["data"].retail_traffic_hourly.find_one()["site"]
    values = {"live-zone": [None, zone], "live-metric": ["fill", "ebike"], "station-picker": [code],
              "zones-day": [day], "extremes-day": [day], "ads-campaign": ["all", "916"],
              "capacity-range": [day], "capacity-focus": [None, f"zone:{zone}"],
              "social-day": [social_day], "social-granularity": ["10min", "hour"], "social-brands": [[], [brand]],
              "sales-source": ["", "uci", "olist"], "start_date": [None, sales_day], "end_date": [None, sales_day],
              "traffic-site": [None, site],
              "search": ["", f"?station={code}", f"?day={day}", f"?zone={zone}", f"?brand={brand}"]}
    assert_no_write_command(seeded["env"], seeded["settings"], values, monkeypatch)


def assert_no_write_command(env: dict[str, str], settings: Any, values: dict[str, list[Any]],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Call every page and every callback with `values` (by input id or property) on a client that records its
    commands: the pages read, and never write."""
    from dashboard import store

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    commands = Commands()
    listened = MongoClient(settings.mongo_uri, event_listeners=[commands], tz_aware=True,
                           serverSelectionTimeoutMS=5000)
    monkeypatch.setattr(mongo, "client", lambda settings, timeout_s=5.0: listened)
    store.current.cache_clear()
    try:
        from dashboard.app import PAGES, app

        client = app.server.test_client()
        assert client.get("/").status_code == 200
        values = {**values, "pathname": [page.PATH for page in PAGES]}
        calls = 0
        for output, spec in app.callback_map.items():
            if "callback" not in spec:  # a clientside callback: runs in the browser, never reaches MongoDB
                continue
            outputs = [dict(zip(("id", "property"), o.split("."), strict=True)) for o in output.strip(".").split("...")]
            inputs = spec["inputs"]
            choices = [values.get(i["id"], values.get(i["property"], [0])) for i in inputs]
            for index in range(max(len(c) for c in choices)):
                payload = {"output": output, "outputs": outputs if len(outputs) > 1 else outputs[0],
                           "inputs": [{**i, "value": c[index % len(c)]} for i, c in zip(inputs, choices, strict=True)],
                           "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs],
                           "state": [{**s, "value": None} for s in spec.get("state", [])]}
                answer = client.post("/_dash-update-component", json=payload)
                assert answer.status_code in (200, 204), (output, answer.get_data(as_text=True)[:500])
                calls += 1
    finally:
        store.current.cache_clear()
        listened.close()
    assert calls >= len(PAGES) * 2
    assert {"find", "distinct"} <= set(commands.names)  # the pages did read through the listened client
    assert not set(commands.names) & WRITE_COMMANDS, sorted(set(commands.names))


# --- churn -----------------------------------------------------------------------------------------------------


CHURN_SLICE = 150


@pytest.fixture
def churn_page(cronlake_env: dict[str, str], spark: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
               ) -> Iterator[dict[str, Any]]:
    env = {**cronlake_env, "CRONLAKE_CHURN_TOPIC": f"churn.{cronlake_env['CRONLAKE_MONGO_DB']}"}
    monkeypatch.setenv("CRONLAKE_CHURN_TOPIC", env["CRONLAKE_CHURN_TOPIC"])
    version = land_and_train("--promote")
    replay("--limit", str(CHURN_SLICE))
    assert run_stream() == 0
    with served(env, tmp_path / "gunicorn.log") as url:
        yield {"url": url, "data": data_db(load()), "version": version}


def test_churn_page_shows_scores_top_risks_groups_and_the_model(churn_page: dict[str, Any],
                                                                browser: webdriver.Chrome) -> None:
    data = churn_page["data"]
    docs = list(data.churn_predictions.find())
    assert len(docs) == CHURN_SLICE
    open_page(browser, churn_page["url"] + "/churn", "#churn-top tbody td")
    assert text_of(browser, "churn-scored") == str(CHURN_SLICE)
    assert text_of(browser, "churn-predicted") == str(sum(1 for d in docs if d["predicted_churn"]))
    assert text_of(browser, "churn-versions") == churn_page["version"]
    assert text_of(browser, "churn-model-version") == churn_page["version"]

    top = table(browser, "churn-top")
    expected = sorted(docs, key=lambda d: (-d["churn_probability"], d["customer_id"]))[:len(top)]
    assert [r["customer_id"] for r in top][:5] == [d["customer_id"] for d in expected][:5]
    assert as_number(top[0]["risk_pct"]) == round(100 * expected[0]["churn_probability"], 1)
    assert top[0]["drivers_text"].startswith(expected[0]["drivers"][0]["feature"])

    by_contract = {r["group"]: r for r in table(browser, "churn-by-contract")}
    for contract in {d["contract"] for d in docs}:
        members = [d for d in docs if d["contract"] == contract]
        assert int(by_contract[contract]["customers"]) == len(members)
        average = 100 * sum(d["churn_probability"] for d in members) / len(members)
        assert as_number(by_contract[contract]["avg_risk_pct"]) == round(average, 1)

    run = data.churn_model_runs.find_one({"_id": churn_page["version"]})
    metrics = {r["metric"]: r for r in table(browser, "churn-metrics")}
    assert as_number(metrics["auc"]["model"]) == round(run["metrics"]["model"]["auc"], 3)
    assert as_number(metrics["auc"]["baseline"]) == round(run["metrics"]["baseline"]["auc"], 3)
    assert "Traceback" not in browser.page_source
    assert browser.find_elements(By.CSS_SELECTOR, "#churn-histogram .main-svg")
    screenshot(browser, "churn")


@pytest.fixture
def catalogued(cronlake_env: dict[str, str], spark: object, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two runs of the governance test job (two versions of two datasets, one warned), then the dashboard."""
    from test_governance import land, run_job

    land(cronlake_env, "retail_part1.csv")
    run_job(cronlake_env, spark)
    land(cronlake_env, "retail_part2.csv")
    run_job(cronlake_env, spark)
    with served(cronlake_env, tmp_path / "gunicorn.log") as url:
        yield {"url": url, "settings": load()}


def test_catalog_page_lists_searches_and_shows_versions_quality_lineage(catalogued: dict[str, Any],
                                                                        browser: webdriver.Chrome) -> None:
    from cronlake.core import catalog

    settings = catalogued["settings"]
    described = {d["_id"]: d for d in catalog.datasets(settings)}
    open_page(browser, catalogued["url"] + "/catalog", "#catalog-datasets-table tbody td")
    rows = {r["name"]: r for r in table(browser, "catalog-datasets-table")}
    assert set(rows) == set(described)
    for name, row in rows.items():
        assert row["current_version"] == str(described[name]["current_version"])
        assert row["owner"] == described[name]["owner"]

    browser.find_element(By.ID, "catalog-column").send_keys("unit_price\n")
    WebDriverWait(browser, WAIT_S).until(lambda d: len(table(d, "catalog-datasets-table")) == 1)
    assert [r["name"] for r in table(browser, "catalog-datasets-table")] == [
        d["_id"] for d in catalog.search(settings, column="unit_price")]

    open_page(browser, catalogued["url"] + "/catalog?dataset=gov_invoices&version=0", "#catalog-lineage")
    versions = table(browser, "catalog-versions")
    expected = catalog.versions(settings, "gov_invoices")
    assert [(r["version"], r["rows"], r["total_rows"]) for r in versions] == [
        (str(v["version"]), str(v["rows"]), str(v["total_rows"])) for v in expected]
    lineage = text_of(browser, "catalog-lineage")
    assert "gov_invoices v0" in lineage and "gov_lines v0" in lineage
    assert "landing/gov_retail/retail_part1.csv" in lineage and "retail_part2.csv" not in lineage
    quality = {r["rule"]: r["state"] for r in table(browser, "catalog-quality")}
    assert quality == {q["rule"]: "ok" if q["passed"] else "WARNING"
                       for q in catalog.version(settings, "gov_invoices", 0)["quality"]}
    screenshot(browser, "catalog")

    open_page(browser, catalogued["url"] + "/health", "#health-quality tbody td")
    health = {r["dataset"]: r for r in table(browser, "health-quality")}
    assert {name: row["version"] for name, row in health.items()} == {
        name: str(d["current_version"]) for name, d in described.items()}


# --- retail social ---------------------------------------------------------------------------------------------


def expected_social() -> dict[str, Any]:
    """The social page's figures for the seeded tweet slice, recomputed from it with the json module alone."""
    from test_retail_social import brands_of, parsed_slice

    tweets, _malformed = parsed_slice()
    by_id = {t["id"]: t for t in tweets}
    moments = {i: datetime.strptime(t["created_at"], "%a %b %d %H:%M:%S %z %Y") for i, t in by_id.items()}
    brands = {i: brands_of(t) for i, t in by_id.items()}
    windows = Counter((b, moments[i].replace(minute=moments[i].minute // 10 * 10).strftime("%Y-%m-%d %H:%M"))
                      for i in by_id for b in brands[i])
    tags = Counter(tag for t in by_id.values() for tag in {h["text"].lower() for h in t["entities"]["hashtags"]})
    return {
        "day": {m.strftime("%Y-%m-%d") for m in moments.values()}, "posts": len(by_id),
        "retweets": sum("retweeted_status" in t for t in by_id.values()),
        "languages": Counter(t["lang"] for t in by_id.values()),
        "brands": sorted(Counter(b for found in brands.values() for b in found).items(), key=lambda t: (-t[1], t[0])),
        "windows": windows, "hashtags": sorted(tags.items(), key=lambda t: (-t[1], t[0]))[:10],
    }


def mention_traces(driver: webdriver.Chrome) -> dict[str, dict[str, int]]:
    """The mentions chart as {brand: {window: count}} ({} while it is not drawn)."""
    return plot_traces(driver, "social-mentions")


def test_social_page_mentions_brands_languages_hashtags(seeded: dict[str, Any], browser: webdriver.Chrome) -> None:
    from test_retail_social import SAMPLE

    want = expected_social()
    [day] = want["day"]
    sample = json.loads(SAMPLE.read_text())
    [sample_day] = {datetime.strptime(t["created_at"], "%a %b %d %H:%M:%S %z %Y").strftime("%Y-%m-%d") for t in sample}
    open_page(browser, seeded["url"] + "/retail/social", ".notice.hint")  # the latest day: the sample's
    assert text_of(browser, "social-posts") == str(len(sample))
    hint = browser.find_element(By.CSS_SELECTOR, ".notice.hint").text
    assert hint == f"No post of {sample_day} names a tracked brand."
    pick(browser, "social-day", day, day)
    wait_text(browser, "social-posts", str(want["posts"]))
    WebDriverWait(browser, WAIT_S).until(lambda d: table(d, "social-brand-table") and mention_traces(d))
    assert text_of(browser, "social-posts") == str(want["posts"])
    assert text_of(browser, "social-retweets") == str(want["retweets"])
    assert text_of(browser, "social-retweet-share") == f"{100 * want['retweets'] / want['posts']:.1f}"
    languages = sorted(want["languages"].items(), key=lambda t: (-t[1], t[0]))[:10]
    assert [(r["lang"], int(r["posts"])) for r in table(browser, "social-languages")] == languages
    assert [(r["hashtag"], int(r["posts"])) for r in table(browser, "social-hashtags")] == want["hashtags"]
    assert [(r["brand"], int(r["mentions"])) for r in table(browser, "social-brand-table")] == want["brands"][:10]

    starts = sorted({datetime.strptime(w, "%Y-%m-%d %H:%M") for _b, w in want["windows"]})
    all_windows = [(starts[0] + timedelta(minutes=10 * i)).strftime("%Y-%m-%d %H:%M")
                   for i in range(int((starts[-1] - starts[0]).total_seconds() // 600) + 1)]
    top = [b for b, _n in want["brands"][:5]]
    assert mention_traces(browser) == {b: {w: want["windows"][(b, w)] for w in all_windows} for b in top}
    screenshot(browser, "social")

    brand = want["brands"][5][0]
    pick(browser, "social-brands", brand, brand)
    browser.find_element(By.TAG_NAME, "h2").click()  # close the dropdown
    WebDriverWait(browser, WAIT_S).until(lambda d: list(mention_traces(d)) == [brand])
    browser.find_element(By.XPATH, "//label[contains(., 'per hour')]").click()
    hours = Counter()
    for (b, window), n in want["windows"].items():
        if b == brand:
            hours[window[:13] + ":00"] += n
    WebDriverWait(browser, WAIT_S).until(
        lambda d: {w: n for w, n in mention_traces(d)[brand].items() if n} == dict(hours))

    open_page(browser, seeded["url"] + f"/retail/social?day={day}&brand={brand}", "#social-mentions .js-plotly-plot")
    WebDriverWait(browser, WAIT_S).until(lambda d: list(mention_traces(d)) == [brand])
    open_page(browser, seeded["url"] + f"/retail/social?day={day}&brand=%24where", "#social-mentions .js-plotly-plot")
    assert "unknown brand" in browser.find_element(By.CSS_SELECTOR, ".notice.invalid").text
    WebDriverWait(browser, WAIT_S).until(lambda d: list(mention_traces(d)) == top)
    open_page(browser, seeded["url"] + "/retail/social?day=2016-12-01", "#social-posts")
    assert "no retail_social_daily data for 2016-12-01" in browser.find_element(By.CSS_SELECTOR, ".notice.invalid").text


# --- retail sales and traffic ----------------------------------------------------------------------------------


def plot_traces(driver: webdriver.Chrome, graph_id: str) -> dict[str, dict[Any, float]]:
    """A chart's traces as drawn, {trace name: {x: y}} ({} while it is not drawn)."""
    traces = driver.execute_script("const plot = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
                                   "return plot && plot.data ? plot.data.map(t => [t.name, t.x, t.y]) : [];", graph_id)
    return {name: dict(zip(xs, ys, strict=True)) for name, xs, ys in traces}


def bars(driver: webdriver.Chrome, graph_id: str) -> list[tuple[str, float]]:
    """A one-trace bar chart as drawn: (x, y) left to right."""
    [trace] = plot_traces(driver, graph_id).values()
    return list(trace.items())


def assert_top_bars(shown: list[tuple[str, float]], want: dict[str, float], limit: int = 25) -> None:
    """The bars are the `limit` largest values of `want`, largest first (ties in either order)."""
    assert len(shown) == min(limit, len(want))
    assert all(want[x] == y for x, y in shown), shown
    assert [y for _x, y in shown] == sorted(want.values(), reverse=True)[:limit]


def stat_value(driver: webdriver.Chrome, label: str) -> str:
    """The value of the stat box labelled `label`."""
    path = f"//div[@class='stat'][div[@class='stat-label'][.={xpath_literal(label)}]]/div[@class='stat-value']"
    return driver.find_element(By.XPATH, path).text.strip()


def type_date(driver: webdriver.Chrome, input_id: str, day: str) -> None:
    """Type a day into a date picker's input and leave it with Tab, as a user does."""
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.ID, input_id)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(day, Keys.TAB)


def expected_sales() -> dict[str, dict[tuple[str, str, str], dict[str, Any]]]:
    """retail_sales_daily as the seeded slices must fill it, per source and (day, region, category), from the
    UCI CSV slices and the Olist export slice with the csv module: revenue net for UCI (cancellations keep their
    negative amount), without cancelled orders for Olist (their lines counted apart)."""
    from dashboard_seed import UCI
    from retail_expected import daily_totals
    from test_protocol import GOOD_FILES
    from test_retail_transactions import expected_lines

    uci = {(day, country, "all"): {"orders": t["invoices"], "lines": t["lines"], "revenue": t["revenue"],
                                   "cancelled_lines": t["cancelled_lines"]}
           for (day, country), t in daily_totals([UCI / name for name in GOOD_FILES]).items()}
    groups: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]] = {}
    for (order, _item), line in expected_lines().items():
        groups.setdefault((line["day"], line["state"], line["category"] or "unknown"), []).append((order, line))
    olist = {key: {"orders": len({order for order, _line in lines}), "lines": len(lines),
                   "revenue": round(sum(line["revenue"] for _o, line in lines if not line["cancelled"]), 2),
                   "cancelled_lines": sum(line["cancelled"] for _o, line in lines)}
             for key, lines in groups.items()}
    return {"uci": uci, "olist": olist}


def revenue_by(docs: dict[tuple[str, str, str], dict[str, Any]], position: int) -> dict[str, float]:
    """Revenue summed per day (0), region (1) or category (2), to the cent."""
    sums: dict[str, float] = {}
    for key, doc in docs.items():
        sums[key[position]] = sums.get(key[position], 0.0) + doc["revenue"]
    return {k: round(v, 2) for k, v in sums.items()}


def sales_row(row: dict[str, str]) -> tuple[tuple[str, str, str], dict[str, Any]]:
    """A table or CSV row as (key, figures)."""
    return (row["day"], row["region"], row["category"]), {
        "orders": int(row["orders"]), "lines": int(row["lines"]), "revenue": float(row["revenue"]),
        "cancelled_lines": int(row["cancelled_lines"])}


def test_sales_page_revenue_by_day_region_category_filters_and_csv(seeded: dict[str, Any], browser: webdriver.Chrome,
                                                                   tmp_path: Path) -> None:
    want = expected_sales()
    open_page(browser, seeded["url"] + "/retail/sales", "#sales-table tbody td")
    WebDriverWait(browser, WAIT_S).until(lambda d: plot_traces(d, "sales-by-day"))
    assert plot_traces(browser, "sales-by-day") == {source: revenue_by(docs, 0) for source, docs in want.items()}
    screenshot(browser, "sales")

    pick(browser, "sales-source", "uci", "uci")
    WebDriverWait(browser, WAIT_S).until(lambda d: list(plot_traces(d, "sales-by-day")) == ["uci"])
    rows = table(browser, "sales-table")
    assert {r["source"] for r in rows} == {"uci"}
    assert dict(sales_row(r) for r in rows) == want["uci"]
    assert_top_bars(bars(browser, "sales-by-region"), revenue_by(want["uci"], 1))
    assert bars(browser, "sales-by-category") == [("all", round(sum(d["revenue"] for d in want["uci"].values()), 2))]

    # Olist, between two days a user types: the last ten days of the export but the two latest
    days = sorted({key[0] for key in want["olist"]})
    start, end = days[-10], days[-3]
    chosen = {key: doc for key, doc in want["olist"].items() if start <= key[0] <= end}
    pick(browser, "sales-source", "olist", "olist")
    type_date(browser, "sales-range", start)
    type_date(browser, "sales-range-end-date", end)
    browser.find_element(By.TAG_NAME, "h2").click()  # close the calendar
    WebDriverWait(browser, WAIT_S).until(EC.invisibility_of_element_located(
        (By.CSS_SELECTOR, ".dash-datepicker-content")))
    WebDriverWait(browser, WAIT_S).until(  # drawn for the whole range: no day after the end day
        lambda d: list(plot_traces(d, "sales-by-day")) == ["olist"] and max(plot_traces(d, "sales-by-day")["olist"])
        <= end)
    assert plot_traces(browser, "sales-by-day") == {"olist": revenue_by(chosen, 0)}
    assert_top_bars(bars(browser, "sales-by-region"), revenue_by(chosen, 1))
    assert_top_bars(bars(browser, "sales-by-category"), revenue_by(chosen, 2))
    rows = table(browser, "sales-table")
    assert len(rows) == min(25, len(chosen))
    assert all(chosen[key] == figures for key, figures in map(sales_row, rows))
    screenshot(browser, "sales-olist")

    rows = downloaded_csv(browser, "sales-download-button", tmp_path / "downloads")
    assert {r["source"] for r in rows} == {"olist"} and all(r["lineage_run"] for r in rows)
    assert [r["day"] for r in rows] == sorted(r["day"] for r in rows)
    assert len(rows) == len(chosen) and dict(map(sales_row, rows)) == chosen


def test_traffic_page_hits_status_sessions_and_top_products_per_site(seeded: dict[str, Any],
                                                                     browser: webdriver.Chrome) -> None:
    from statistics import median

    from test_retail_logs import APACHE, ZANBIL, expected

    want = expected([APACHE, ZANBIL])

    def figures(site: str) -> dict[str, Any]:
        """What the page shows for `site`, from the log lines in plain Python."""
        hits = [h for h in want["hits"] if h["site"] == site]
        hours = sorted({h["time"].strftime("%Y-%m-%dT%H:00Z") for h in hits})
        status = {c: dict.fromkeys(hours, 0) for c in ("2xx", "3xx", "4xx", "5xx")}
        for hit in hits:
            status[hit["status"][0] + "xx"][hit["time"].strftime("%Y-%m-%dT%H:00Z")] += 1
        errors = sum(h["status"][0] in "45" for h in hits)
        sessions: dict[str, list[dict[str, Any]]] = {}
        for session in (s for s in want["sessions"] if s["site"] == site):
            sessions.setdefault(session["start"].strftime("%Y-%m-%d"), []).append(session)
        products: dict[str, list[dict[str, Any]]] = {}
        for hit in hits:
            product = re.match(r"\S+ /(?:m/)?product/(\d+)", hit["request"])
            if product:
                products.setdefault(product[1], []).append(hit)
        top = sorted(products.items(), key=lambda item: (-len(item[1]), item[0]))[:15]
        return {
            "hits": str(len(hits)), "errors": f"{100 * errors / len(hits):.1f}",
            "bots": f"{100 * sum(h['bot'] for h in hits) / len(hits):.1f}", "status": status,
            "sessions": [(day, len(found), sum(not s["bot"] for s in found),
                          median((s["end"] - s["start"]).total_seconds() for s in found))
                         for day, found in sorted(sessions.items())],
            "products": [(item, len(found), sum(len({h["client"] for h in found if h["time"].date() == day})
                                                for day in {h["time"].date() for h in found}))
                         for item, found in top],
        }

    open_page(browser, seeded["url"] + "/retail/traffic", "#traffic-hits")
    first = figures("apache")  # the first site in the picker
    assert text_of(browser, "traffic-hits") == first["hits"]
    assert stat_value(browser, "Errors %") == first["errors"]
    assert text_of(browser, "traffic-bots") == first["bots"]

    site = figures("zanbil")
    assert site["products"] and site["hits"] != first["hits"]
    pick(browser, "traffic-site", "zanbil", "zanbil")
    wait_text(browser, "traffic-hits", site["hits"])
    WebDriverWait(browser, WAIT_S).until(lambda d: table(d, "traffic-sessions") and table(d, "traffic-top-products"))
    assert stat_value(browser, "Errors %") == site["errors"]
    assert text_of(browser, "traffic-bots") == site["bots"]
    assert plot_traces(browser, "traffic-status") == site["status"]
    assert [(r["day"], int(r["sessions"]), int(r["human_sessions"]), float(r["median_duration_seconds"]))
            for r in table(browser, "traffic-sessions")] == site["sessions"]
    assert [(r["_id"], int(r["hits"]), int(r["unique_clients"])) for r in table(browser, "traffic-top-products")
            ] == site["products"]
    screenshot(browser, "traffic")
