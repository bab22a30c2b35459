"""Velib live averages (job `velib_stream`, long-running): Kafka → Spark Structured Streaming → MongoDB.

Reads the normalised station records from `velib.topic(settings)` through the `cronlake_kafka` Python data source
(`cronlake/core/kafka_source.py`), parses them by schema, and in `foreachBatch` maintains:

- `velib_live_station` (one document per station): latest snapshot, averages of mechanical bikes, e-bikes and
  free docks since the start of the local day, and over the last hour;
- `velib_live_zone` (one per commune/arrondissement): the same averages over the zone's samples;
- `velib_live_buckets` (helper): per station, its latest record, the identities counted at its newest
  `reported_at`, the day's running sums and per-minute sums of the last 60 minutes; the two public collections
  are recomputed from it.

Time is data time on the observation axis: "now" is the newest `observed_at` received, "today" is its
Europe/Paris day (`settings.tz`), "last hour" the 60 one-minute buckets (UTC) of `observed_at` ending with now's
minute. A station's record counts once: only if it was not observed before the station's last counted one (the
producer sends a station's records in observation order) and its snapshot identity (`velib.IDENTITY`) was not
counted already; this also makes a micro-batch replayed after a crash change nothing: see docs/streaming.md.

    python -m cronlake.ops.run velib_stream [--trigger-seconds 10] [--until-idle SECONDS] [--max-batches N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronlake.contracts import velib
from cronlake.contracts.velib import (
    FLAGS,
    LIVE_BUCKETS,
    LIVE_STATION,
    LIVE_ZONE,
    STATION,
    observation_order,
    snapshot_identity,
)
from cronlake.core import sink
from cronlake.core.jobs import Job
from cronlake.core.mongo import data_db
from cronlake.core.runner import RunContext, utcnow
from cronlake.core.streaming import Progress, add_arguments, beat, drive, kafka_messages

MEASURES = ("mechanical", "ebike", "docks_free")
WINDOW_MINUTES = 60
FUTURE_TOLERANCE = timedelta(hours=1)  # a clock that far ahead would freeze "now": such records are skipped
TIMES = STATION.of_kind("timestamp")


@dataclass
class Sums:
    """Sample count and sums of the averaged measures."""

    samples: int = 0
    mechanical: int = 0
    ebike: int = 0
    docks_free: int = 0

    def add_record(self, record: Mapping[str, Any]) -> None:
        self.samples += 1
        for measure in MEASURES:
            setattr(self, measure, getattr(self, measure) + record[measure])

    def merge(self, other: Sums) -> None:
        self.samples += other.samples
        for measure in MEASURES:
            setattr(self, measure, getattr(self, measure) + getattr(other, measure))

    def averages(self) -> dict[str, Any]:
        return {"samples": self.samples,
                **{f"avg_{m}": getattr(self, m) / self.samples if self.samples else None for m in MEASURES}}

    def as_list(self) -> list[int]:
        return [self.samples, *(getattr(self, m) for m in MEASURES)]


@dataclass
class StationState:
    """What the job keeps per station (persisted in `velib_live_buckets`). `seen`: the identities counted at the
    station's newest reported_at (as lists: station, reported_at, counts, flags), so a re-serve of one of them
    observed later does not count again."""

    station_code: str
    info: dict[str, Any]
    latest: dict[str, Any]
    day: str | None = None
    day_sums: Sums = field(default_factory=Sums)
    minutes: dict[datetime, Sums] = field(default_factory=dict)
    batch_id: int = -1
    seen: list[list[Any]] = field(default_factory=list)

    @property
    def observed_at(self) -> datetime:
        return self.latest["observed_at"]

    def counts(self, record: Mapping[str, Any]) -> bool:
        """Whether `record` is a new sample: not observed before the latest one, and an identity not yet counted."""
        if self.latest and record["observed_at"] < self.observed_at:
            return False
        return list(snapshot_identity(record)) not in self.seen

    def remember(self, record: Mapping[str, Any]) -> None:
        identity = list(snapshot_identity(record))
        newest = self.seen[0][1] if self.seen else None
        if newest is None or record["reported_at"] > newest:
            self.seen = [identity]
        elif record["reported_at"] == newest:
            self.seen.append(identity)

    def to_document(self, window_start: datetime) -> dict[str, Any]:
        return {"_id": self.station_code, "info": self.info, "latest": self.latest, "day": self.day,
                "day_sums": self.day_sums.as_list(), "batch_id": self.batch_id, "seen": self.seen,
                "minutes": [[minute, *sums.as_list()] for minute, sums in sorted(self.minutes.items())
                            if minute >= window_start]}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> StationState:
        latest = {"observed_at": doc["latest"]["reported_at"], **doc["latest"]}  # states written before observed_at
        return cls(doc["_id"], doc["info"], latest, doc["day"], Sums(*doc["day_sums"]),
                   {minute: Sums(*sums) for minute, *sums in doc["minutes"]}, doc["batch_id"], doc.get("seen", []))


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def window_start(now: datetime) -> datetime:
    """First minute of the last-hour window: the 60 one-minute buckets ending with now's minute."""
    return minute_of(now) - timedelta(minutes=WINDOW_MINUTES - 1)


def local_day(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).date().isoformat()


def parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else None


class LiveAverages:
    """The live state of every station, and the documents it implies at data time `now`."""

    def __init__(self, tz: ZoneInfo, states: Iterable[StationState] = ()):
        self.tz = tz
        self.states = {state.station_code: state for state in states}
        self.now = max((s.observed_at for s in self.states.values()), default=None)

    def apply(self, records: list[dict[str, Any]], batch_id: int) -> tuple[dict[str, StationState], int]:
        """New states of the stations `records` advance (not yet installed) and how many records counted.

        `records` carry `reported_at` and `observed_at` as aware datetimes. A record observed before its
        station's latest one, or whose identity was counted already, is ignored: an unchanged re-serve, a replay
        of an applied batch, or late data.
        """
        by_station: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            by_station[record["station_code"]].append(record)
        states, samples = {}, {}
        for code, station_records in by_station.items():
            old = self.states.get(code)
            state = StationState(code, {}, {}) if old is None else replace(
                old, day_sums=replace(old.day_sums), minutes={m: replace(s) for m, s in old.minutes.items()},
                seen=list(old.seen))
            fresh = []
            for record in sorted(station_records, key=observation_order):
                if state.counts(record):
                    state.remember(record)
                    state.latest = record
                    fresh.append(record)
            if fresh:
                states[code], samples[code] = state, fresh
        now = max([r[-1]["observed_at"] for r in samples.values()] + ([self.now] if self.now else []), default=None)
        if now is None:
            return {}, 0
        today, start = local_day(now, self.tz), window_start(now)
        for code, state in states.items():
            fresh = samples[code]
            if state.day != today:
                state.day, state.day_sums = today, Sums()
            for record in fresh:
                if local_day(record["observed_at"], self.tz) == today:
                    state.day_sums.add_record(record)
                minute = minute_of(record["observed_at"])
                if minute >= start:
                    state.minutes.setdefault(minute, Sums()).add_record(record)
            state.minutes = {m: sums for m, sums in state.minutes.items() if m >= start}
            last = fresh[-1]
            state.info = {"name": last["name"], "zone": last["zone"], "lat": last["lat"], "lon": last["lon"],
                          "capacity": last["capacity"]}
            state.latest = {"reported_at": last["reported_at"], "observed_at": last["observed_at"],
                            "bikes": last["bikes"], **{m: last[m] for m in MEASURES}, **{f: last[f] for f in FLAGS}}
            state.batch_id = batch_id
        return states, sum(len(fresh) for fresh in samples.values())

    def install(self, changed: Mapping[str, StationState]) -> None:
        self.states.update(changed)
        self.now = max((s.observed_at for s in self.states.values()), default=None)

    def now_after(self, changed: Mapping[str, StationState]) -> datetime | None:
        return max([s.observed_at for s in changed.values()] + ([self.now] if self.now else []), default=None)

    def summaries(self, states: Mapping[str, StationState], now: datetime) -> tuple[dict, dict]:
        """(today, last_hour) Sums of every station of `states` at time `now`."""
        today, start = local_day(now, self.tz), window_start(now)
        day_sums, hour_sums = {}, {}
        for code, state in states.items():
            day_sums[code] = state.day_sums if state.day == today else Sums()
            hour = Sums()
            for minute, sums in state.minutes.items():
                if minute >= start:
                    hour.merge(sums)
            hour_sums[code] = hour
        return day_sums, hour_sums

    def documents(self, changed: Mapping[str, StationState]) -> tuple[list[dict], list[dict]]:
        """Station and zone documents (without `updated_at`) with `changed` applied."""
        states = {**self.states, **changed}
        now = self.now_after(changed)
        if now is None:
            return [], []
        today, since = local_day(now, self.tz), window_start(now)
        day_sums, hour_sums = self.summaries(states, now)
        stations = []
        zone_day: dict[str, Sums] = defaultdict(Sums)
        zone_hour: dict[str, Sums] = defaultdict(Sums)
        zone_count: dict[str, int] = defaultdict(int)
        for code, state in sorted(states.items()):
            stations.append({"_id": code, "station_code": code, **state.info, "latest": state.latest,
                             "today": {"day": today, **day_sums[code].averages()},
                             "last_hour": {**hour_sums[code].averages(), "since": since}})
            zone = state.info["zone"]
            zone_count[zone] += 1
            zone_day[zone].merge(day_sums[code])
            zone_hour[zone].merge(hour_sums[code])
        zones = [{"_id": zone, "zone": zone, "stations": zone_count[zone],
                  "today": {"day": today, **zone_day[zone].averages()},
                  "last_hour": {**zone_hour[zone].averages(), "since": since}}
                 for zone in sorted(zone_count)]
        return stations, zones


def load_states(context: RunContext) -> list[StationState]:
    return [StationState.from_document(doc) for doc in data_db(context.settings)[LIVE_BUCKETS.name].find()]


class LiveWriter:
    """Applies micro-batches to MongoDB: public documents first, then the helper states they derive from."""

    def __init__(self, context: RunContext):
        self.context = context
        self.db = data_db(context.settings)
        self.live = LiveAverages(context.settings.tz, load_states(context))
        self.published: dict[tuple[str, str], dict] = {}
        context.log("stream.state_loaded", stations=len(self.live.states),
                    now=self.live.now.isoformat() if self.live.now else None)

    def changed_documents(self, collection: str, documents: list[dict]) -> list[dict]:
        return [doc for doc in documents if self.published.get((collection, doc["_id"])) != doc]

    def write_batch(self, records: list[dict[str, Any]], batch_id: int, malformed: int,
                    read_seconds: float = 0.0) -> None:
        started = time.monotonic()
        changed, counted = self.live.apply(records, batch_id)
        stations, zones = self.live.documents(changed)
        stamp = utcnow()
        written = {}
        for collection, documents in ((LIVE_STATION, stations), (LIVE_ZONE, zones)):
            fresh = self.changed_documents(collection.name, documents)
            sink.upsert(self.db, collection, [{**d, "updated_at": stamp} for d in fresh], replace=True)
            written[collection.name] = fresh
        now = self.live.now_after(changed)
        if changed:
            start = window_start(now)
            sink.upsert(self.db, LIVE_BUCKETS, [state.to_document(start) for state in changed.values()], replace=True)
        self.live.install(changed)
        for collection, documents in written.items():
            self.published.update({(collection, d["_id"]): d for d in documents})
        beat(self.context, batch_id)
        self.context.count("rows_in", len(records) + malformed)
        self.context.count("rows_out", counted)
        self.context.count("records_quarantined", malformed)
        self.context.count("batches")
        self.context.log("stream.batch", batch_id=batch_id, records=len(records), counted=counted,
                         ignored=len(records) - counted, malformed=malformed,
                         stations_written=len(written[LIVE_STATION.name]), zones_written=len(written[LIVE_ZONE.name]),
                         now=now.isoformat() if now else None,
                         read_seconds=round(read_seconds, 3), write_seconds=round(time.monotonic() - started, 3))


def valid_records(rows: Iterable[Mapping[str, Any]], horizon: datetime) -> tuple[list[dict[str, Any]], int]:
    """Rows with every required field and parseable times, observed not beyond `horizon`; and the others' count."""
    good, bad = [], 0
    for row in rows:
        record = dict(row)
        times = {name: parse_time(record[name]) if record.get(name) else None for name in TIMES}
        if (any(moment is None for moment in times.values()) or times["observed_at"] > horizon
                or any(record.get(name) is None for name in STATION.not_null)):
            bad += 1
            continue
        good.append({**record, **times})
    return good, bad


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=JOB.name, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, trigger_seconds=10.0, max_offsets=50000)
    return parser


def run(context: RunContext, args: argparse.Namespace) -> None:
    from pyspark.sql import functions as F

    writer, progress = LiveWriter(context), Progress()
    checkpoint = context.lake.uri(f"checkpoints/{JOB.name}")
    parsed = (kafka_messages(context, velib.topic(context.settings), args)
              .select(F.from_json("value", STATION.spark_schema(text_timestamps=True)).alias("r")).select("r.*"))

    def on_batch(batch: Any, batch_id: int) -> None:
        started = time.monotonic()
        rows = batch.toArrow().to_pylist()  # Arrow: much cheaper than collect() for thousands of rows
        records, malformed = valid_records(rows, utcnow() + FUTURE_TOLERANCE)
        writer.write_batch(records, batch_id, malformed, read_seconds=time.monotonic() - started)
        progress.batch_done(bool(rows))

    query = (parsed.writeStream.queryName(JOB.name).foreachBatch(on_batch).option("checkpointLocation", checkpoint)
             .trigger(processingTime=f"{args.trigger_seconds} seconds").start())
    context.log("stream.started", topic=velib.topic(context.settings), checkpoint=checkpoint,
                trigger_seconds=args.trigger_seconds)
    drive(context, query, args, progress)


JOB = Job("velib_stream", build_parser, run, needs=("kafka", "lake", "spark"), long_running=True,
          kafka_topics=velib.topics)


if __name__ == "__main__":
    sys.exit(JOB.main())
