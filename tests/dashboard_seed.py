"""Seed MongoDB for the dashboard tests by running the real pipeline on a real Velib slice.

The slice (tests/fixtures/dashboard/): 3 days (2022-05-16..18, Europe/Paris) of history snapshots of 40 stations
in 6 communes, copied unchanged from /work/shared/data/velib, with those stations' GBFS information and v2.1 API
records. `seed()` seeds the deployment the CRONLAKE_* environment points at:

- rows are normalised by `ingest.velib.records`, with zones from the coordinates on the shipped boundaries as
  the producer and the replay assign them (9 zones: 4 arrondissements and 5 communes), and landed as a landing
  CSV (plus one file with a wrong header);
- the real batch job `velib_daily` runs in-process (Spark) → velib_station_daily / velib_zone_daily /
  a job_runs record, the bad file quarantined;
- the real `velib_capacity` job → velib_station_capacity (time empty / full per station, day and hour);
- one more file is landed (left waiting) and the real `lake_census` job counts the lake;
- the streaming job's update function (`process.velib.stream.LiveWriter.write_batch`) applies the slice as one
  micro-batch → velib_live_station / velib_live_zone / heartbeats;
- the real training job `velib_train` (few small trees) → velib_model_runs / velib_predictions;
- the real `retail_social` job on the real tweets of tests/fixtures/retail_social/ (the 165-line slice of
  2016-11-30 and the 26-tweet sample of 2021-04-24, which names no tracked brand) → retail_social_mentions /
  retail_social_daily;
- the real `retail_daily` job on the three UCI transaction slices of tests/fixtures/retail/ (2010-12-01..03) and
  the real `retail_olist` job on the Olist export slice of tests/fixtures/retail/olist/ (135 orders of 2017) →
  retail_daily / retail_sales_daily;
- the real `retail_logs` job on the Apache and zanbil Nginx log slices of tests/fixtures/retail_logs/ →
  retail_traffic_hourly / retail_top_pages / retail_sessions_daily;
- STAND-INS: kafka_lag (the landing consumer writes it only after consuming a real topic) and a few job_runs of
  jobs not run here (failed and died runs, so the health page has failures to show).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import ReplaceOne
from test_protocol import GOOD_FILES
from test_retail_logs import APACHE, ZANBIL
from test_retail_transactions import OLIST

from cronlake.contracts import velib
from cronlake.contracts.velib import STATION
from cronlake.contracts.velib_zones import ZoneMap
from cronlake.core.jobs import Job
from cronlake.core.lake import open_lake
from cronlake.core.mongo import ops_db
from cronlake.core.runner import RunContext
from cronlake.core.settings import Settings, load
from cronlake.ops import census
from ingest.velib.records import StationIndex, normalise_history_row
from process.retail import daily as retail_daily
from process.retail import logs as retail_logs
from process.retail import olist as retail_olist
from process.retail import social as retail_social
from process.velib import capacity as velib_capacity
from process.velib import daily as velib_daily
from process.velib import model as velib_model
from process.velib.stream import LiveWriter, valid_records

SLICE = Path(__file__).resolve().parent / "fixtures" / "dashboard"
TWEETS = tuple(SLICE.parent / "retail_social" / name for name in ("tweets_slice.jsonl.gz", "tweets_sample.json"))
UCI = SLICE.parent / "retail"


def load_records(folder: Path = SLICE) -> list[dict[str, Any]]:
    """The slice as normalised Velib records (times as ISO strings), one per snapshot identity (the copy observed
    first) as the producer would send them, in observation order."""
    meta = json.loads((folder / "stations.json").read_text(encoding="utf-8"))
    index = StationIndex.from_feeds([{"data": {"stations": meta["gbfs_station_information"]}}], meta["api_export"],
                                    ZoneMap.from_folder())
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    with gzip.open(folder / "velib_history_slice.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            record = normalise_history_row(row, index)
            unique.setdefault(velib.snapshot_identity(record), record)
    return sorted(unique.values(), key=lambda r: (r["observed_at"], r["station_code"]))


def csv_text(records: list[dict[str, Any]], header: list[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header or STATION.csv_header())
    writer.writerows(STATION.to_csv_row(record) for record in records)
    return buffer.getvalue()


def upsert(collection: Any, docs: list[dict[str, Any]]) -> None:
    if docs:
        collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs])


def seed_daily(settings: Settings, records: list[dict[str, Any]]) -> None:
    """Land the slice (and a file with a wrong header), run the real velib_daily job, then land one more file."""
    lake = open_lake(settings)
    lake.put_text("landing/velib/velib-slice.csv", csv_text(records))
    lake.put_text("landing/velib/velib-bad-header.csv", csv_text(records[:5], header=["a", "b"]))
    if velib_daily.JOB.main([]) != 0:
        raise RuntimeError("velib_daily failed while seeding the dashboard tests")
    lake.put_text("landing/velib/velib-waiting.csv", csv_text(records[-40:]))


def seed_capacity() -> None:
    if velib_capacity.JOB.main([]) != 0:
        raise RuntimeError("velib_capacity failed while seeding the dashboard tests")


def seed_census() -> None:
    if census.JOB.main([]) != 0:
        raise RuntimeError("lake_census failed while seeding the dashboard tests")


def seed_live(settings: Settings, records: list[dict[str, Any]]) -> None:
    """The streaming job's micro-batch update, applied to the whole slice as one batch."""
    context = RunContext(job="velib_stream", run_id=f"seed-{uuid.uuid4().hex[:6]}", settings=settings)
    good, malformed = valid_records(records, datetime.now(UTC))
    LiveWriter(context).write_batch(good, batch_id=0, malformed=malformed)


def seed_model() -> None:
    """The real training job on the processed slice (few small trees: the page is under test, not the model)."""
    if velib_model.JOB.main(["--trees", "8", "--max-depth", "5"]) != 0:
        raise RuntimeError("velib_train failed while seeding the dashboard tests")


def land_and_run(settings: Settings, job: Job, source: str, paths: tuple[Path, ...] | list[Path]) -> None:
    """Land the fixture files unchanged in `landing/<source>/`, then run the real `job` once on them."""
    lake = open_lake(settings)
    for path in paths:
        lake.put_bytes(f"landing/{source}/{path.name}", path.read_bytes())
    if job.main([]) != 0:
        raise RuntimeError(f"{job.name} failed while seeding the dashboard tests")


def seed_social(settings: Settings) -> None:
    """The real retail_social job on the real tweet slice and sample."""
    land_and_run(settings, retail_social.JOB, retail_social.SOURCE, TWEETS)


def seed_sales(settings: Settings) -> None:
    """The real retail_daily job on the UCI slices and the real retail_olist job on the Olist export slice."""
    land_and_run(settings, retail_daily.JOB, retail_daily.SOURCE, [UCI / name for name in GOOD_FILES])
    land_and_run(settings, retail_olist.JOB, retail_olist.SOURCE, sorted(OLIST.glob("*.csv")))


def seed_traffic(settings: Settings) -> None:
    """The real retail_logs job on the Apache and zanbil log slices (the site is the file name's first word)."""
    land_and_run(settings, retail_logs.JOB, retail_logs.SOURCE, (APACHE, ZANBIL))


def seed_ops(settings: Settings) -> None:
    """Stand-ins: runs of jobs not run here (with failures) and the landing consumer's kafka_lag."""
    now = datetime.now(UTC).replace(microsecond=0)

    def run(job: str, minutes_ago: int, status: str, error: str | None = None, **counters: int) -> dict[str, Any]:
        started = now - timedelta(minutes=minutes_ago)
        return {"_id": f"{job}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", "job": job, "args": [],
                "host": "seed-host", "pid": 4242, "started_at": started,
                "ended_at": None if status == "running" else started + timedelta(seconds=42), "status": status,
                "rows_in": counters.get("rows_in", 0), "rows_out": counters.get("rows_out", 0),
                "records_quarantined": 0, "files_archived": counters.get("files_archived", 0),
                "files_quarantined": 0, "error": error, "duration_s": None if status == "running" else 42.0,
                "extra": {}}

    runs = [
        run("velib_daily", 1500, "failed", "JobError: the lake at file:///x does not answer"),
        run("velib_land", 30, "succeeded", rows_in=1400, rows_out=1400, files_archived=1),
        run("velib_land", 5, "failed", "CRONLAKE_KAFKA_BOOTSTRAP: no Kafka broker answers at 127.0.0.1:9092"),
        run("velib_stream", 600, "died", "process ended without recording an end"),
        run("velib_stream", 300, "running"),
    ]
    lag = {"_id": f"cronlake-landing|{velib.topic(settings)}", "group": "cronlake-landing",
           "topic": velib.topic(settings), "lag": 17, "partitions": {"0": 10, "1": 7}, "updated_at": now}
    upsert(ops_db(settings).job_runs, runs)
    upsert(ops_db(settings).kafka_lag, [lag])


def seed() -> None:
    """Fill every collection the dashboard reads, in the deployment the CRONLAKE_* environment points at."""
    settings = load()
    records = load_records()
    seed_ops(settings)
    seed_daily(settings, records)
    seed_capacity()
    seed_census()
    seed_live(settings, records)
    seed_model()
    seed_social(settings)
    seed_sales(settings)
    seed_traffic(settings)
