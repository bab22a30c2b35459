"""The retail transactions source on real slices: UCI cleaning (UTC times, cancellations, free lines) and the
Olist export joined into order lines, checked against expectations computed with the csv module."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FIXTURES
from pymongo import MongoClient
from retail_expected import parse_rows

from cronlake.contracts import retail
from cronlake.core import settings
from cronlake.core.lake import open_lake
from dashboard.pages.retail import sales_queries
from dashboard.store import NoData, Store
from process.retail import daily as retail_daily
from process.retail import olist as retail_olist

OLIST = FIXTURES / "retail" / "olist"
SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def lake_root(env: dict[str, str]) -> Path:
    return Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://"))


def land_olist(env: dict[str, str], export: str, tables: tuple[str, ...] = retail.OLIST_TABLES) -> Path:
    landing = lake_root(env) / "landing" / "olist"
    landing.mkdir(parents=True, exist_ok=True)
    for table in tables:
        shutil.copy(OLIST / f"2017.{table}.csv", landing / f"{export}.{table}.csv")
    return landing


def read_table(table: str) -> list[dict]:
    with open(OLIST / f"2017.{table}.csv", newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def expected_lines() -> dict[tuple[str, int], dict]:
    orders = {r["order_id"]: r for r in read_table("orders")}
    customers = {r["customer_id"]: r for r in read_table("customers")}
    english = {r["product_category_name"]: r["product_category_name_english"]
               for r in read_table("category_translation")}
    products = {r["product_id"]: r["product_category_name"] for r in read_table("products")}
    lines = {}
    for item in read_table("order_items"):
        order = orders[item["order_id"]]
        customer = customers[order["customer_id"]]
        local = datetime.strptime(order["order_purchase_timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SAO_PAULO)
        category = products[item["product_id"]] or None
        lines[(item["order_id"], int(item["order_item_id"]))] = {
            "day": order["order_purchase_timestamp"][:10], "state": customer["customer_state"],
            "zip": customer["customer_zip_code_prefix"].zfill(5),
            "category": english.get(category, category), "translated": category is None or category in english,
            "revenue": float(item["price"]) + float(item["freight_value"]),
            "purchase_utc": local.astimezone(UTC).replace(tzinfo=None),
            "cancelled": order["order_status"] in ("canceled", "unavailable"),
        }
    return lines


def published_lines(env: dict[str, str]) -> dict[tuple[str, int], dict]:
    table = retail.ORDER_LINES.read_arrow(open_lake(settings.load(dict(env))))
    return {(r["order_id"], r["order_item_id"]): r for r in table.to_pylist()}


def sales(env: dict[str, str], source: str) -> list[dict]:
    collection = MongoClient(env["CRONLAKE_MONGO_URI"])[env["CRONLAKE_MONGO_DB"]][retail.SALES_DAILY.name]
    return list(collection.find({"source": source}))


def test_olist_export_joined_into_order_lines_and_landed_twice_adds_nothing(cronlake_env: dict[str, str]) -> None:
    expected = expected_lines()
    land_olist(cronlake_env, "2017-09")
    assert retail_olist.JOB.main([]) == 0
    lines = published_lines(cronlake_env)
    assert set(lines) == set(expected)
    for key, want in expected.items():
        got = lines[key]
        assert (got["purchase_day"], got["customer_state"], got["customer_zip_prefix"]) == (
            want["day"], want["state"], want["zip"])
        assert (got["category"], got["category_translated"], got["is_cancelled"]) == (
            want["category"], want["translated"], want["cancelled"])
        assert got["purchase_time"].replace(tzinfo=None) == want["purchase_utc"]
        assert abs(got["revenue"] - want["revenue"]) < 0.006
    assert any(not w["translated"] for w in expected.values())  # the slice holds pc_gamer, missing upstream

    revenue: dict[str, float] = defaultdict(float)
    for want in expected.values():
        revenue[want["day"]] += 0.0 if want["cancelled"] else want["revenue"]
    served: dict[str, float] = defaultdict(float)
    for document in sales(cronlake_env, "olist"):
        served[document["day"]] += document["revenue"]
        assert document["lineage_run"]
    assert set(served) == set(revenue)
    assert all(abs(served[d] - revenue[d]) < 0.05 for d in revenue)

    page = Store(settings.load(dict(cronlake_env)))
    category_revenue: dict[str, float] = defaultdict(float)
    for want in expected.values():
        category_revenue[want["category"] or "unknown"] += 0.0 if want["cancelled"] else want["revenue"]
    shown = {r["category"]: r["revenue"] for r in sales_queries.totals(sales_queries.sales(page, "olist"), "category")}
    assert set(shown) == set(category_revenue)
    assert all(abs(shown[c] - category_revenue[c]) < 0.05 for c in shown)
    first_day = min(revenue)
    in_range = sales_queries.sales(page, "olist", first_day, first_day)
    assert {r["day"] for r in in_range} == {first_day}
    assert len(sales_queries.as_csv(in_range).splitlines()) == len(in_range) + 1
    with pytest.raises(NoData):  # no UCI sales were written: the query says so
        sales_queries.sales(page, "uci")

    land_olist(cronlake_env, "2017-09-again")
    assert retail_olist.JOB.main([]) == 0
    assert len(published_lines(cronlake_env)) == len(expected)


def test_olist_export_missing_a_table_is_quarantined_whole(cronlake_env: dict[str, str]) -> None:
    land_olist(cronlake_env, "partial", tables=tuple(t for t in retail.OLIST_TABLES if t != "sellers"))
    assert retail_olist.JOB.main([]) == 0
    quarantine = lake_root(cronlake_env) / "quarantine" / "olist"
    reasons = [json.loads(p.read_text()) for p in quarantine.glob("*.reason.json")]
    assert len(reasons) == len(retail.OLIST_TABLES) - 1
    assert all("missing tables ['sellers']" in r["reason"] for r in reasons)
    assert published_lines(cronlake_env) == {}


def test_olist_orphan_item_is_quarantined_with_its_reason(cronlake_env: dict[str, str]) -> None:
    landing = land_olist(cronlake_env, "damaged")
    items = landing / "damaged.order_items.csv"
    real = items.read_text().splitlines()[1].split(",")
    real[2] = "0" * 32  # a product the export does not hold
    items.write_text(items.read_text() + ",".join(real) + "\n")
    assert retail_olist.JOB.main([]) == 0
    rejects = (lake_root(cronlake_env) / "quarantine" / "olist" / "damaged.order_items.csv.retail_olist.rejects.jsonl")
    records = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["reason"] for r in records] == ["unknown product"]
    assert len(published_lines(cronlake_env)) == len(expected_lines())


def test_uci_lines_carry_utc_times_flags_and_net_revenue(cronlake_env: dict[str, str]) -> None:
    name = "retail_part1.csv"
    landing = lake_root(cronlake_env) / "landing" / "retail"
    landing.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "retail" / name, landing / name)
    assert retail_daily.JOB.main([]) == 0
    rows = retail.TRANSACTIONS.read_arrow(open_lake(settings.load(dict(cronlake_env)))).to_pylist()
    kept = parse_rows(FIXTURES / "retail" / name)[0]
    london = ZoneInfo("Europe/London")
    assert sorted(r["invoice_time"].replace(tzinfo=None) for r in rows) == sorted(
        k["time"].replace(tzinfo=london).astimezone(UTC).replace(tzinfo=None) for k in kept)
    assert {r["time_zone"] for r in rows} == {"Europe/London"}
    assert sum(r["is_cancellation"] for r in rows) == sum(k["InvoiceNo"].startswith("C") for k in kept)
    assert sum(r["is_return"] for r in rows) == sum(k["qty"] < 0 for k in kept)
    assert sum(r["is_free"] for r in rows) == sum(k["price"] == 0 for k in kept)
    net: dict[str, float] = defaultdict(float)
    for k in kept:
        net[k["time"].strftime("%Y-%m-%d")] += k["qty"] * k["price"]
    page = Store(settings.load(dict(cronlake_env)))
    by_day = {r["day"]: r["revenue"] for r in sales_queries.totals(sales_queries.sales(page, "uci"), "day")}
    assert set(by_day) == set(net)
    assert all(abs(by_day[d] - net[d]) < 0.05 for d in net)
    assert all(d["lineage_run"] for d in sales(cronlake_env, "uci"))
