"""The REES46 events job and the point-in-time training-set job, on a real slice of 2019-10-01 events.

Expectations are computed from the CSV fixture with the `csv` module (counts before each cutoff, purchases in the
horizon); the point-in-time property is checked by appending events after the cutoff (even a purchase priced
1e9) and comparing every feature, on the real slice and on small generated event sets (hypothesis).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, run_cli
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cronlake.contracts.retail_events import EVENT, EVENTS, TRAINSET
from cronlake.core import catalog, settings, versioned
from cronlake.core.runner import RunContext
from process.retail import events as events_job
from process.retail import trainset

REPO = Path(__file__).resolve().parents[1]
SLICE = FIXTURES / "retail_events" / "rees46_2019-10-01_sessions.csv"
HEADER = EVENT.csv_header()
START = datetime(2019, 10, 1, tzinfo=UTC)
CUTOFFS = tuple(START + timedelta(minutes=m) for m in range(20, 151, 20))  # --every 20m up to --end 02:30
ARGS = ["--start", "2019-10-01T00:00", "--end", "2019-10-01T02:30", "--every", "20m", "--lookback", "1h",
        "--horizon", "30m"]
LABEL_AND_KEY = {"label", "cutoff", "entity_id"}


def slice_rows() -> list[dict[str, str]]:
    with open(SLICE, newline="") as handle:
        return list(csv.DictReader(handle))


def when(row: dict[str, str]) -> datetime:
    return datetime.strptime(row["event_time"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, HEADER)
        writer.writeheader()
        writer.writerows(rows)


def context_for(env: dict[str, str], spark: object, job: str) -> RunContext:
    return RunContext(job=job, run_id=f"{job}-{uuid.uuid4().hex[:8]}", settings=settings.load(dict(env)),
                      needs=("lake", "spark"), _spark=spark)


def land_and_process(env: dict[str, str], spark: object, name: str, rows: list[dict[str, str]]) -> RunContext:
    write_csv(Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "landing" / "retail_events" / name, rows)
    context = context_for(env, spark, "retail_events")
    events_job.run(context, events_job.build_parser().parse_args([]))
    return context


def export(env: dict[str, str], spark: object, *extra: str) -> tuple[RunContext, Path]:
    context = context_for(env, spark, TRAINSET)
    output = Path(env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "exports" / context.run_id
    trainset.run(context, trainset.build_parser().parse_args([*ARGS, "--output", output.as_uri(), *extra]))
    return context, output


def output_rows(output: Path) -> list[dict]:
    return pq.read_table(output).to_pylist()


def expected_session_rows(rows: list[dict[str, str]]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(cutoff, session) -> (views, carts, label), from the CSV: features in [cutoff - 1h, cutoff), no purchase
    event, label = a purchase in (cutoff, cutoff + 30m]."""
    expected = {}
    for cutoff in CUTOFFS:
        past = [r for r in rows if cutoff - timedelta(hours=1) <= when(r) < cutoff and r["event_type"] != "purchase"]
        buyers = {r["user_session"] for r in rows
                  if r["event_type"] == "purchase" and cutoff < when(r) <= cutoff + timedelta(minutes=30)}
        kinds = Counter((r["user_session"], r["event_type"]) for r in past)
        for session in {r["user_session"] for r in past}:
            expected[(cutoff.isoformat(), session)] = (kinds[(session, "view")], kinds[(session, "cart")],
                                                       int(session in buyers))
    return expected


def test_events_job_drops_duplicates_quarantines_bad_prices_and_ignores_a_file_landed_twice(cronlake_env, spark):
    rows = slice_rows()
    duplicated = rows + rows[:5]
    malformed = {**rows[0], "event_time": "yesterday"}
    context = land_and_process(cronlake_env, spark, "part1.csv", [*duplicated, malformed])
    stored = EVENTS.read_arrow(context.lake).to_pylist()
    valid = [r for r in rows if float(r["price"]) > 0]
    assert len(stored) == len({tuple(r.values()) for r in valid})
    assert min(r["price"] for r in stored) > 0
    assert context.counters["rejected_price"] == sum(float(r["price"]) <= 0 for r in rows) > 0
    assert context.counters["duplicates_dropped"] == 5 and context.counters["rejected_malformed"] == 1
    quarantine = Path(cronlake_env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "quarantine" / "retail_events"
    kept = "".join(p.read_text() for p in quarantine.rglob("*") if p.is_file())
    assert kept.count("price <= 0") == sum(float(r["price"]) <= 0 for r in rows)
    assert "unparseable row" in kept
    version = versioned.current_version(context.lake, EVENTS)
    again = land_and_process(cronlake_env, spark, "part1-again.csv", rows)
    assert versioned.current_version(again.lake, EVENTS) == version and again.counters["rows_out"] == 0


def test_training_set_matches_the_csv_and_its_manifest(cronlake_env, spark):
    rows = slice_rows()
    land_and_process(cronlake_env, spark, "part1.csv", rows)
    context, output = export(cronlake_env, spark)
    got = output_rows(output)
    found = {(r["cutoff"].replace(tzinfo=UTC).isoformat(), r["entity_id"]): (r["views"], r["carts"], r["label"])
             for r in got}
    assert found == expected_session_rows([r for r in rows if float(r["price"]) > 0])
    manifest = json.loads((output / trainset.MANIFEST).read_text())
    assert manifest["rows"] == len(got) and manifest["positives"] == sum(r["label"] for r in got) > 0
    assert manifest["label_rate"] == pytest.approx(sum(r["label"] for r in got) / len(got))
    assert manifest["source"] == {"dataset": "retail_events", "version": 0} and manifest["run_id"] == context.run_id
    recorded = catalog.version(context.settings, TRAINSET, 0)
    assert recorded["upstream"] == [{"dataset": "retail_events", "version": 0}]
    assert recorded["rows"] == len(got) and recorded["location"] == output.as_uri()


def test_events_after_the_cutoff_change_no_feature_and_old_versions_give_the_same_rows(cronlake_env, spark):
    rows = [r for r in slice_rows() if float(r["price"]) > 0]
    land_and_process(cronlake_env, spark, "part1.csv", rows)
    _, before = export(cronlake_env, spark)
    # Just after the last cutoff, sessions active before it buy something priced 1e9 and view more.
    last = CUTOFFS[-1]
    active = [r for r in rows if last - timedelta(hours=1) <= when(r) < last][:40]
    later = [{**r, "event_type": kind, "price": price,
              "event_time": (last + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S UTC")}
             for r in active for kind, price, seconds in (("purchase", "1000000000.00", 1), ("view", r["price"], 0))]
    land_and_process(cronlake_env, spark, "later.csv", later)
    _, after = export(cronlake_env, spark)
    _, pinned = export(cronlake_env, spark, "--source-version", "0")
    old, new = output_rows(before), output_rows(after)
    features = [c for c in old[0] if c not in {"label"}]
    assert [{c: r[c] for c in features} for r in new] == [{c: r[c] for c in features} for r in old]
    assert sum(r["label"] for r in new) > sum(r["label"] for r in old)
    assert output_rows(pinned) == old


def test_negative_sampling_keeps_every_positive_and_is_repeatable(cronlake_env, spark):
    land_and_process(cronlake_env, spark, "part1.csv", slice_rows())
    _, full = export(cronlake_env, spark)
    _, first = export(cronlake_env, spark, "--negative-rate", "0.3", "--seed", "7")
    _, second = export(cronlake_env, spark, "--negative-rate", "0.3", "--seed", "7")
    everything, sampled = output_rows(full), output_rows(first)
    assert sampled == output_rows(second)
    assert [r for r in sampled if r["label"]] == [r for r in everything if r["label"]]
    negatives = sum(not r["label"] for r in everything)
    assert 0.15 * negatives < sum(not r["label"] for r in sampled) < 0.45 * negatives


EVENT_KINDS = st.sampled_from(("view", "view", "cart", "purchase"))
GENERATED = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7200), EVENT_KINDS, st.integers(1, 5),
                               st.floats(0.5, 500, allow_nan=False)), min_size=1, max_size=25)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=GENERATED, after=GENERATED, grain=st.sampled_from(("session", "user")))
def test_property_features_ignore_everything_after_the_cutoff(spark, before, after, grain):
    start = datetime(2019, 10, 1, tzinfo=UTC)
    cutoff = start + timedelta(hours=2)

    def frame(events: list[tuple], offset: datetime) -> list[tuple]:
        return [(offset + timedelta(seconds=s), kind, product, str(product), None, f"b{product}", round(price, 2),
                 who, f"s{who}") for who, s, kind, product, price in events]

    schema = ("event_time TIMESTAMP, event_type STRING, product_id BIGINT, category_id STRING, category_code STRING, "
              "brand STRING, price DOUBLE, user_id BIGINT, user_session STRING")
    past = frame(before, start)
    past = [e for e in past if e[0] < cutoff]
    future = frame(after, cutoff) + [(cutoff + timedelta(seconds=1), "purchase", 1, "1", None, "b1", 1e9, 0, "s0")]

    def features(events: list[tuple]) -> list[dict]:
        rows = trainset.training_rows(spark.createDataFrame(events, schema), [cutoff], start, timedelta(hours=2),
                                      timedelta(minutes=30), grain)
        return sorted(({k: v for k, v in r.asDict().items() if k != "label"} for r in rows.collect()),
                      key=lambda r: r["entity_id"])

    assert features(past + future) == features(past)


def test_submit_runs_the_training_set_job_through_spark_submit(cronlake_env, spark):
    land_and_process(cronlake_env, spark, SLICE.name, slice_rows())  # in-process: one spark-submit is the point
    env = {**cronlake_env, "CRONLAKE_SPARK_MASTER": "local[2]"}
    job = [TRAINSET, *ARGS, "--output", "exports/by_submit", "--format", "csv"]
    result = run_cli([str(REPO / "scripts" / "submit"), *job], env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    output = Path(cronlake_env["CRONLAKE_LAKE_ROOT"].removeprefix("file://")) / "exports" / "by_submit"
    with open(next(output.glob("part-*.csv")), newline="") as handle:
        got = list(csv.DictReader(handle))
    manifest = json.loads((output / trainset.MANIFEST).read_text())
    assert manifest["rows"] == len(got) > 0 and manifest["format"] == "csv"
    assert manifest["positives"] == sum(r["label"] == "1" for r in got)
