"""The ad campaign stream end to end on the real KAG file (800 rows, BOM, CRLF, float noise in Spent): replay into
Kafka, landing consumer, `retail_ads` Spark job, serving documents and the campaign performance page in headless
Chromium. One pipeline run is shared by the module; every expectation is computed here from the CSV with the csv
module alone."""

from __future__ import annotations

import csv
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_DATA, drop_test_kafka
from contracts_check import declared_indexes, server_indexes
from kafka import KafkaProducer
from selenium.webdriver.common.by import By
from test_dashboard import (  # noqa: F401 - browser is a fixture
    assert_no_write_command,
    browser,
    open_page,
    screenshot,
    served,
    table,
    text_of,
    wait_text,
)

from cronlake.contracts.retail_ads import EVENTS, PERFORMANCE
from cronlake.core import catalog
from cronlake.core.lake import open_lake
from cronlake.core.mongo import data_db, ops_db
from cronlake.core.settings import load
from ingest.retail import ads_landing, ads_replay
from process.retail import ads as retail_ads

CSV = SHARED_DATA / "ads" / "kag_conversion_data_rows_0001-0800.csv"
COUNTS = ("Impressions", "Clicks", "Total_Conversion", "Approved_Conversion")
# Two events the landing consumer refuses, and one it lands that contradicts itself (clicks > impressions).
NOT_JSON = b"{not json"


def source_rows() -> list[dict[str, str]]:
    with CSV.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def expected_groups(rows: list[dict[str, str]], key: str) -> dict[str, dict[str, float]]:
    """Sums per value of `key` (a CSV column), spent rounded to cents per ad as the job stores it."""
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        group = groups[row[key]]
        group["ads"] += 1
        for column in COUNTS:
            group[column] += int(row[column])
        group["Spent"] += round(float(row["Spent"]), 2)
        if int(row["Clicks"]) == 0 and int(row["Total_Conversion"]) > 0:
            group["zero_click_ads"] += 1
            group["zero_click_conversions"] += int(row["Total_Conversion"])
    return groups


def assert_document_matches(doc: dict[str, Any], sums: dict[str, float]) -> None:
    assert doc["ads"] == sums["ads"]
    assert (doc["impressions"], doc["clicks"], doc["total_conversion"], doc["approved_conversion"]) == tuple(
        sums[c] for c in COUNTS)
    assert doc["spent"] == pytest.approx(sums["Spent"], abs=0.006)
    assert doc["ctr"] == pytest.approx(sums["Clicks"] / sums["Impressions"], abs=1e-8)
    if sums["Clicks"]:
        assert doc["cpc"] == pytest.approx(sums["Spent"] / sums["Clicks"], abs=1e-4)
        assert doc["conversion_rate"] == pytest.approx(sums["Total_Conversion"] / sums["Clicks"], abs=1e-6)
    else:
        assert doc["cpc"] is None and doc["conversion_rate"] is None, "no rate divides by zero"
    if sums["Total_Conversion"]:
        assert doc["cost_per_conversion"] == pytest.approx(sums["Spent"] / sums["Total_Conversion"], abs=1e-4)
    assert doc["zero_click_ads"] == sums["zero_click_ads"]
    assert doc["zero_click_conversions"] == sums["zero_click_conversions"]


@pytest.fixture(scope="module")
def pipeline(stack: dict[str, str], spark: object, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Any]]:
    """Replay the file, add malformed events, land, run retail_ads; land the same files again and run again."""
    tag = uuid.uuid4().hex[:8]
    state = tmp_path_factory.mktemp("ads")
    env = {**stack, "CRONLAKE_STATE_DIR": str(state / "state"), "CRONLAKE_LAKE_ROOT": (state / "lake").as_uri(),
           "CRONLAKE_MONGO_DB": f"ads_{tag}", "CRONLAKE_MONGO_OPS_DB": f"ads_{tag}_ops",
           "CRONLAKE_VELIB_TOPIC": f"velib.ads{tag}", "CRONLAKE_ADS_TOPIC": f"velib.ads{tag}.campaigns"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        started = datetime.now(UTC)
        assert ads_replay.JOB.main([str(CSV), "--rate", "0"]) == 0
        replayed = datetime.now(UTC)
        first = json.loads(json.dumps(ads_replay.event(CSV.name, 1, source_rows()[0])))
        contradiction = {**first, "ad_id": 999000001, "clicks": first["impressions"] + 1}
        producer = KafkaProducer(bootstrap_servers=env["CRONLAKE_KAFKA_BOOTSTRAP"], acks="all")
        for value in (NOT_JSON, json.dumps({**first, "clicks": "many"}).encode(), json.dumps(contradiction).encode()):
            producer.send(env["CRONLAKE_ADS_TOPIC"], value=value, partition=0)
        producer.flush()
        producer.close()
        assert ads_landing.JOB.main(["--idle-seconds", "2"]) == 0
        assert retail_ads.JOB.main([]) == 0
        settings = load()
        lake = open_lake(settings)
        archived = [f.path for f in lake.list("archive/ads")]
        for path in archived:
            lake.put_bytes(f"landing/ads/again_{path.rsplit('/', 1)[-1]}", lake.read_bytes(path))
        assert retail_ads.JOB.main([]) == 0
        with served(env, state / "gunicorn.log") as url:
            yield {"env": env, "settings": settings, "lake": lake, "started": started, "replayed": replayed,
                   "archived": archived, "url": url}
    drop_test_kafka(env["CRONLAKE_KAFKA_BOOTSTRAP"], env["CRONLAKE_VELIB_TOPIC"])


def test_every_row_lands_once_as_a_replay_stamped_event(pipeline: dict[str, Any]) -> None:
    rows = source_rows()
    lake, settings = pipeline["lake"], pipeline["settings"]
    stored = {r["ad_id"]: r for r in EVENTS.read_arrow(lake).to_pylist()}
    assert sorted(stored) == sorted(int(r["ad_id"]) for r in rows)
    for number, row in enumerate(rows, start=1):
        ad = stored[int(row["ad_id"])]
        assert ad["source_row"] == number and ad["source_file"] == CSV.name
        assert (ad["xyz_campaign_id"], ad["age"], ad["gender"], ad["interest"]) == (
            int(row["xyz_campaign_id"]), row["age"], row["gender"], int(row["interest"]))
        assert ad["spent"] == round(float(row["Spent"]), 2)
        assert ad["timestamp_origin"] == "replay"
        assert pipeline["started"].replace(microsecond=0) <= ad["replayed_at"] <= pipeline["replayed"]
        assert ad["conversions_without_clicks"] == (row["Clicks"] == "0" and row["Total_Conversion"] != "0")

    landed = [line for path in pipeline["archived"] for line in lake.read_text(path).splitlines()]
    assert len(landed) == len(rows) + 1, "the self-contradicting event was landed, the two malformed ones not"
    assert all(json.loads(line)["timestamp_origin"] == "replay" for line in landed)
    landing_rejects = [json.loads(line) for f in lake.list("quarantine/ads") if f.path.endswith(".jsonl.rejects.jsonl")
                       for line in lake.read_text(f.path).splitlines()]
    reasons = sorted(r["reason"] for r in landing_rejects)
    assert len(reasons) == 2 and reasons[0].startswith("clicks is not an integer") and reasons[1].startswith(
        "not JSON")
    land_run = ops_db(settings).job_runs.find_one({"job": "retail_ads_land"})
    assert (land_run["rows_in"], land_run["rows_out"], land_run["records_quarantined"]) == (
        len(rows) + 3, len(rows) + 1, 2)
    lag = ops_db(settings).kafka_lag.find_one({"group": ads_landing.GROUP})
    assert lag["lag"] == 0


def test_contradicting_event_quarantined_and_inconsistency_counted(pipeline: dict[str, Any]) -> None:
    lake, settings = pipeline["lake"], pipeline["settings"]
    kept = [f"quarantine/ads/{path.rsplit('/', 1)[-1]}.retail_ads.rejects.jsonl" for path in pipeline["archived"]]
    rejects = [json.loads(line) for path in kept if lake.exists(path) for line in lake.read_text(path).splitlines()]
    assert [r["reason"] for r in rejects] == ["more clicks than impressions"]
    assert json.loads(rejects[0]["record"]["line"])["ad_id"] == 999000001
    first, second = sorted(ops_db(settings).job_runs.find({"job": "retail_ads"}), key=lambda r: r["started_at"])
    expected = sum(1 for r in source_rows() if r["Clicks"] == "0" and r["Total_Conversion"] != "0")
    assert (first["status"], first["rows_out"], first["records_quarantined"]) == ("succeeded", 800, 1)
    assert first["extra"]["conversions_without_clicks"] == expected
    assert second["rows_out"] == 0


def test_landing_the_same_files_twice_adds_nothing(pipeline: dict[str, Any]) -> None:
    settings, lake = pipeline["settings"], pipeline["lake"]
    assert [v["version"] for v in catalog.versions(settings, EVENTS.name)] == [0]
    assert EVENTS.read_arrow(lake).num_rows == len(source_rows())
    assert len(lake.list("archive/ads")) == 2 * len(pipeline["archived"])
    quality = {q["rule"]: q["passed"] for q in catalog.version(settings, EVENTS.name, 0)["quality"]}
    assert quality["at_most(clicks,impressions)"] and quality["at_most(approved_conversion,total_conversion)"]
    assert quality["fresh(replayed_at;max_age_hours=48)"], "measured on the replay time"


def test_performance_by_campaign_age_gender_interest_matches_the_csv(pipeline: dict[str, Any]) -> None:
    rows = source_rows()
    db = data_db(pipeline["settings"])
    docs = {(d["campaign"], d["dimension"], d["value"]): d for d in db[PERFORMANCE.name].find()}
    for row in rows:
        row["all"] = "all"
    assert_document_matches(docs[("all", "total", "all")], expected_groups(rows, "all")["all"])
    campaigns = expected_groups(rows, "xyz_campaign_id")
    assert {v for c, d, v in docs if (c, d) == ("all", "campaign")} == set(campaigns)
    for campaign, sums in campaigns.items():
        assert_document_matches(docs[("all", "campaign", campaign)], sums)
        assert_document_matches(docs[(campaign, "total", "all")], sums)
    for column in ("age", "gender", "interest"):
        for value, sums in expected_groups(rows, column).items():
            assert_document_matches(docs[("all", column, value)], sums)
        within = [r for r in rows if r["xyz_campaign_id"] == "1178"]
        for value, sums in expected_groups(within, column).items():
            assert_document_matches(docs[("1178", column, value)], sums)
    runs = sorted(ops_db(pipeline["settings"]).job_runs.find({"job": "retail_ads"}), key=lambda r: r["started_at"])
    assert {d["lineage_run"] for d in docs.values()} == {runs[-1]["_id"]}, "every document from the last run"
    assert declared_indexes(PERFORMANCE) <= server_indexes(db, PERFORMANCE)


def test_campaign_page_shows_kpis_campaigns_and_breakdowns(pipeline: dict[str, Any], browser: Any) -> None:  # noqa: F811
    rows = source_rows()
    totals = expected_groups([{**r, "all": "all"} for r in rows], "all")["all"]
    open_page(browser, pipeline["url"] + "/retail/campaigns", "#ads-campaigns tbody td")
    assert text_of(browser, "ads-impressions") == f"{int(totals['Impressions']):,}"
    assert text_of(browser, "ads-clicks") == f"{int(totals['Clicks']):,}"
    assert text_of(browser, "ads-ctr") == f"{100 * totals['Clicks'] / totals['Impressions']:.3f}%"
    assert text_of(browser, "ads-cpc") == f"{totals['Spent'] / totals['Clicks']:.2f}"
    assert text_of(browser, "ads-zero-click") == str(int(totals["zero_click_ads"]))

    shown = {r["value"]: r for r in table(browser, "ads-campaigns")}
    campaigns = expected_groups(rows, "xyz_campaign_id")
    assert set(shown) == set(campaigns)
    for campaign, sums in campaigns.items():
        assert int(shown[campaign]["clicks"]) == sums["Clicks"]
        assert float(shown[campaign]["spent"]) == pytest.approx(sums["Spent"], abs=0.006)
        assert float(shown[campaign]["ctr_pct"]) == round(100 * sums["Clicks"] / sums["Impressions"], 4)

    ages = {r["value"]: r for r in table(browser, "ads-by-age")}
    assert {a: int(r["clicks"]) for a, r in ages.items()} == {
        a: s["Clicks"] for a, s in expected_groups(rows, "age").items()}
    screenshot(browser, "campaigns")

    open_page(browser, pipeline["url"] + "/retail/campaigns?campaign=916", "#ads-by-gender tbody td")
    wait_text(browser, "ads-title", "campaign 916")
    within = [r for r in rows if r["xyz_campaign_id"] == "916"]
    genders = {r["value"]: int(r["clicks"]) for r in table(browser, "ads-by-gender")}
    assert genders == {g: s["Clicks"] for g, s in expected_groups(within, "gender").items()}
    assert text_of(browser, "ads-clicks") == f"{sum(int(r['Clicks']) for r in within):,}"

    open_page(browser, pipeline["url"] + "/retail/campaigns?campaign=%24ne", "#ads-title")
    assert "unknown campaign" in browser.find_element(By.CSS_SELECTOR, ".notice.invalid").text
    assert "Traceback" not in browser.page_source


def test_campaign_page_issues_no_write_command(pipeline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"ads-campaign": ["all", "916", "1178"], "search": ["", "?campaign=916", "?campaign=%24ne"]}
    assert_no_write_command(pipeline["env"], pipeline["settings"], values, monkeypatch)


def test_at_most_rule_measures_rows_above_their_bound(spark: Any) -> None:
    from cronlake.core import quality

    frame = spark.createDataFrame([(5, 10), (11, 10), (None, 3), (2, 2)], "clicks BIGINT, impressions BIGINT")
    (measured,) = quality.evaluate(frame, [quality.at_most("clicks", "impressions")])
    assert (measured["passed"], measured["observed"]) == (False, 0.25)
    assert measured["detail"] == "1 of 4 rows have clicks > impressions"


def test_the_api_route_filters_on_columns_of_the_dataset() -> None:
    from api.resources import RESOURCES

    (route,) = [r for r in RESOURCES if r.dataset == EVENTS.name]
    assert {route.time_column, *route.filters} <= set(EVENTS.column_names)


def test_replay_refuses_a_file_that_is_not_the_kag_table(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(Exception, match="not the KAG conversion header"):
        ads_replay.read_rows(other)
