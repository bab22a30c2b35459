"""Versioned datasets, catalog, quality rules and lineage, through the claim protocol on real retail rows.

A small job declared here (the retail CSV slices typed into a versioned dataset, and a per-invoice dataset that
references it) publishes versions; the tests read them back by version and by time with delta-rs alone (no kit
code), check the catalog documents against counts taken from the CSV files with the `csv` module, make quality
rules fail and warn, crash a run between its Delta commit and its catalog record, and follow the lineage of a
version back to the landing files' bytes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES
from deltalake import DeltaTable

from cronlake.core import catalog, quality, settings, versioned
from cronlake.core.contracts import Dataset, Field
from cronlake.core.protocol import Claim, run_batch
from cronlake.core.runner import RunContext

SOURCE = "gov_retail"
LINES = Dataset(
    "gov_lines", (Field("invoice_no"), Field("stock_code"), Field("quantity", "int"), Field("unit_price", "double"),
                  Field("invoice_time", "timestamp"), Field("country"), Field("invoice_day")),
    produced_by="gov_test", partition_by=("invoice_day",), versioned=True, key=("invoice_no", "stock_code"),
    owner="shop-data", description="Retail invoice lines (test)", tags=("sales", "test"),
    quality=(quality.not_null("invoice_no", "invoice_time"),
             quality.in_range("unit_price", minimum=0, max_fraction=0.01, severity="warn")))
INVOICES = Dataset(
    "gov_invoices", (Field("invoice_no"), Field("lines", "long")), produced_by="gov_test", versioned=True,
    key=("invoice_no",), description="Lines per invoice (test)", tags=("sales",),
    quality=(quality.unique("invoice_no"), quality.references("invoice_no", "gov_lines", "invoice_no")))


def csv_rows(name: str) -> list[dict[str, str]]:
    with open(FIXTURES / "retail" / name, newline="") as handle:
        return list(csv.DictReader(handle))


def run_job(env: dict[str, str], spark: object, datasets: tuple[Dataset, ...] = (LINES, INVOICES)) -> Claim | None:
    context = RunContext(job="gov_test", run_id=f"gov_test-{uuid.uuid4().hex[:8]}",
                         settings=settings.load(dict(env)), needs=("lake", "spark"), _spark=spark)

    def process(claim: Claim) -> None:
        from pyspark.sql import functions as F

        raw = spark.read.option("header", True).csv(claim.uris())
        lines = raw.select(
            F.col("InvoiceNo").alias("invoice_no"), F.col("StockCode").alias("stock_code"),
            F.expr("try_cast(Quantity as int)").alias("quantity"),
            F.expr("try_cast(UnitPrice as double)").alias("unit_price"),
            F.try_to_timestamp("InvoiceDate", F.lit("M/d/yy H:mm")).alias("invoice_time"), F.col("Country").alias(
                "country"),
        ).withColumn("invoice_day", F.date_format("invoice_time", "yyyy-MM-dd"))
        claim.publish_version(lines, LINES)
        if INVOICES in datasets:
            claim.publish_version(lines.groupBy("invoice_no").agg(F.count("*").alias("lines")), INVOICES,
                                  upstream=(LINES,))

    return run_batch(context, context.lake, SOURCE, tuple(d.name for d in datasets), process)


def land(env: dict[str, str], *names: str) -> None:
    landing = lake_root(env) / "landing" / SOURCE
    landing.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / "retail" / name, landing / name)


def lake_root(env: dict[str, str]) -> Path:
    return Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://"))


def table_path(env: dict[str, str], dataset: Dataset) -> str:
    return str(lake_root(env) / dataset.path)


def test_each_run_is_a_version_readable_by_number_and_time_without_the_kit(cronlake_env: dict[str, str],
                                                                          spark: object) -> None:
    env = cronlake_env
    land(env, "retail_part1.csv")
    run_job(env, spark)
    between = datetime.now(UTC)
    time.sleep(1.1)
    land(env, "retail_part2.csv")
    run_job(env, spark)

    first, second = len(csv_rows("retail_part1.csv")), len(csv_rows("retail_part2.csv"))
    table = DeltaTable(table_path(env, LINES))  # delta-rs alone: any Delta reader sees the same table
    assert table.version() == 1
    assert table.to_pyarrow_table().num_rows == first + second
    assert DeltaTable(table_path(env, LINES), version=0).to_pyarrow_table().num_rows == first
    as_of = DeltaTable(table_path(env, LINES))
    as_of.load_as_version(between)
    assert as_of.version() == 0

    local = settings.load(dict(env))
    from cronlake.core.lake import open_lake

    lake = open_lake(local)
    assert LINES.read(spark, lake, version=0).count() == first
    assert LINES.read(spark, lake).count() == first + second
    assert LINES.read_arrow(lake, as_of=between).num_rows == first
    days = {r["InvoiceDate"].split(" ")[0] for r in csv_rows("retail_part1.csv")}
    assert LINES.read(spark, lake, where={"invoice_day": ["2010-12-01"]}, version=0).count() == sum(
        1 for r in csv_rows("retail_part1.csv") if r["InvoiceDate"].startswith("12/1/10")) and days

    part = next(Path(table_path(env, LINES)).rglob("*.parquet"))
    assert str(pq.read_schema(part).field("invoice_time").type) == "timestamp[us, tz=UTC]"

    versions = catalog.versions(local, LINES.name)
    assert [v["version"] for v in versions] == [1, 0]
    assert [v["rows"] for v in versions] == [second, first]
    assert [v["total_rows"] for v in versions] == [first + second, first]
    assert all(v["quality_status"] == "passed" for v in versions)
    described = catalog.dataset(local, LINES.name)
    assert described["current_version"] == 1 and described["owner"] == "shop-data"
    assert {"name": "invoice_time", "type": "timestamp"} in described["schema"]
    invoices = catalog.latest_version(local, INVOICES.name)
    assert invoices["upstream"] == [{"dataset": LINES.name, "version": 1}], "derived from this run's own version"


def test_lineage_goes_back_to_the_landing_files_bytes(cronlake_env: dict[str, str], spark: object) -> None:
    env = cronlake_env
    land(env, "retail_part1.csv", "retail_part3.csv")
    claim = run_job(env, spark)
    local = settings.load(dict(env))

    tree = catalog.lineage_of_run(local, claim.run_id)
    by_dataset = {v["dataset"]: v for v in tree["versions"]}
    assert set(by_dataset) == {LINES.name, INVOICES.name}
    files = by_dataset[LINES.name]["input_files"]
    expected = {f"landing/{SOURCE}/{n}": hashlib.sha256((FIXTURES / "retail" / n).read_bytes()).hexdigest()
                for n in ("retail_part1.csv", "retail_part3.csv")}
    assert {f["path"]: f["sha256"] for f in files} == expected
    assert all(f["archived_as"].startswith(f"archive/{SOURCE}/") for f in files)
    assert by_dataset[INVOICES.name]["upstream"][0]["dataset"] == LINES.name

    events = [json.loads(line) for line in (Path(env["CRONLAKE_STATE_DIR"]) / "lineage" / "openlineage.jsonl")
              .read_text().splitlines()]
    mine = [e for e in events if e["job"]["name"] == "gov_test"]
    assert [e["eventType"] for e in mine] == ["START", "COMPLETE"]
    outputs = {o["name"]: o["facets"]["version"]["datasetVersion"] for o in mine[1]["outputs"]}
    assert outputs == {LINES.path: "0", INVOICES.path: "0"}


def test_failed_rule_publishes_nothing_and_keeps_the_inputs(cronlake_env: dict[str, str], spark: object) -> None:
    env = cronlake_env
    land(env, "retail_part1.csv")
    run_job(env, spark)
    land(env, "retail_part2.csv")  # its invoices are already in the table: the per-invoice output repeats keys
    strict = Dataset(INVOICES.name, INVOICES.columns, "gov_test", versioned=True, key=("invoice_no",),
                     quality=(quality.references("invoice_no", "gov_lines", "invoice_no"),
                              quality.in_range("lines", maximum=0)))
    context = RunContext(job="gov_test", run_id="gov_test-fail", settings=settings.load(dict(env)),
                         needs=("lake", "spark"), _spark=spark)

    def process(claim: Claim) -> None:
        from pyspark.sql import functions as F

        lines = spark.read.option("header", True).csv(claim.uris()).select(F.col("InvoiceNo").alias("invoice_no"))
        claim.publish_version(lines.groupBy("invoice_no").agg(F.count("*").alias("lines")), strict,
                              upstream=(LINES,))

    with pytest.raises(quality.QualityFailed, match=r"gov_invoices: quality rule failed.*in_range\(lines"):
        run_batch(context, context.lake, SOURCE, (INVOICES.name,), process)
    local = settings.load(dict(env))
    assert [v["version"] for v in catalog.versions(local, INVOICES.name)] == [0], "no version for the failed run"
    assert DeltaTable(table_path(env, INVOICES)).version() == 0
    assert sorted(p.name for p in (lake_root(env) / "landing" / SOURCE).iterdir()) == ["retail_part2.csv"]
    leftovers = [p for p in Path(table_path(env, INVOICES)).rglob("part-gov_test-fail-*")]
    assert leftovers == [], "the failed run's files were rolled back"


def test_warn_rule_publishes_and_flags(cronlake_env: dict[str, str], spark: object) -> None:
    env = cronlake_env
    land(env, "retail_part2.csv")
    returns = sum(1 for r in csv_rows("retail_part2.csv") if int(r["Quantity"]) < 1)  # cancellation lines
    assert returns > 0
    flagged = Dataset(LINES.name, LINES.columns, "gov_test", LINES.partition_by, versioned=True,
                      quality=(quality.in_range("quantity", minimum=1, severity="warn"),))
    context = RunContext(job="gov_test", run_id="gov_test-warn", settings=settings.load(dict(env)),
                         needs=("lake", "spark"), _spark=spark)

    def process(claim: Claim) -> None:
        from pyspark.sql import functions as F

        raw = spark.read.option("header", True).csv(claim.uris())
        claim.publish_version(raw.select(
            F.col("InvoiceNo").alias("invoice_no"), F.col("StockCode").alias("stock_code"),
            F.expr("try_cast(Quantity as int)").alias("quantity"), F.lit(1.0).alias("unit_price"),
            F.try_to_timestamp("InvoiceDate", F.lit("M/d/yy H:mm")).alias("invoice_time"), F.col("Country").alias(
                "country"), F.lit("2010-12-01").alias("invoice_day")), flagged)

    run_batch(context, context.lake, SOURCE, (LINES.name,), process)
    newest = catalog.latest_version(settings.load(dict(env)), LINES.name)
    assert newest["version"] == 0 and newest["quality_status"] == "warned"
    [rule] = newest["quality"]
    assert rule["passed"] is False and rule["severity"] == "warn"
    assert rule["observed"] == round(returns / len(csv_rows("retail_part2.csv")), 6)
    assert catalog.dataset(settings.load(dict(env)), LINES.name)["quality_status"] == "warned"


def test_crash_after_the_delta_commit_yields_one_version_and_one_document(
        cronlake_env: dict[str, str], spark: object, monkeypatch: pytest.MonkeyPatch) -> None:
    env = cronlake_env
    land(env, "retail_part1.csv")
    real = catalog.record_version

    def crash(*args: object, **kwargs: object) -> int:
        raise OSError("MongoDB went away")

    monkeypatch.setattr(catalog, "record_version", crash)
    with pytest.raises(OSError, match="went away"):
        run_job(env, spark, datasets=(LINES,))
    assert DeltaTable(table_path(env, LINES)).version() == 0, "the commit happened before the crash"
    monkeypatch.setattr(catalog, "record_version", real)
    assert run_job(env, spark, datasets=(LINES,)) is None, "recovery finished the run; nothing left to claim"

    local = settings.load(dict(env))
    assert [v["version"] for v in catalog.versions(local, LINES.name)] == [0]
    assert DeltaTable(table_path(env, LINES)).version() == 0
    assert DeltaTable(table_path(env, LINES)).to_pyarrow_table().num_rows == len(csv_rows("retail_part1.csv"))
    assert sorted(p.name for p in (lake_root(env) / "archive" / SOURCE).iterdir()) == ["retail_part1.csv"]


def test_catalog_search_by_text_column_and_tag(cronlake_env: dict[str, str], spark: object) -> None:
    env = cronlake_env
    land(env, "retail_part1.csv")
    run_job(env, spark)
    local = settings.load(dict(env))
    names = lambda found: [d["_id"] for d in found]  # noqa: E731
    assert names(catalog.search(local, text="INVOICE")) == [INVOICES.name, LINES.name]
    assert names(catalog.search(local, column="unit_price")) == [LINES.name]
    assert names(catalog.search(local, tag="test")) == [LINES.name]
    assert names(catalog.search(local, text="lines per", tag="sales")) == [INVOICES.name]
    assert catalog.search(local, column="no_such_column") == []


def test_time_travel_errors_are_plain(cronlake_env: dict[str, str], spark: object) -> None:
    env = cronlake_env
    from cronlake.core.lake import open_lake

    lake = open_lake(settings.load(dict(env)))
    assert LINES.read(spark, lake).count() == 0, "an unwritten dataset reads as empty"
    with pytest.raises(LookupError, match="no version yet"):
        versioned.open_table(lake, LINES, version=0)
    land(env, "retail_part1.csv")
    run_job(env, spark, datasets=(LINES,))
    with pytest.raises(LookupError, match=r"no version 5 \(versions 0 to 0\)"):
        LINES.read(spark, lake, version=5)
