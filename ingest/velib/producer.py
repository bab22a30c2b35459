"""Velib producer (job `velib_produce`, every minute under cron): station snapshots → Kafka, each exactly once.

One run: fetch the stations from the live API (`--source api`) or a recorded file (`--source replay
--replay-file PATH`), normalise them (rows that do not fit go to `quarantine/velib_api/<run id>.rejects.jsonl`
in the lake with their reason) with `observed_at` = when they were fetched, drop the unchanged re-serves, and
produce the rest to `velib.topic(settings)` (key = station code, value = the record as JSON, `acks=all`,
idempotent when the broker supports it).

A station's record is sent when its snapshot identity (`velib.IDENTITY`: reported_at, counts and flags) differs
from the last one sent for the station, so a change of counts under the same reported_at is sent and an
unchanged re-serve is not (docs/data-contracts.md, "Snapshot identity"). Exactly once across runs, restarts and
outages rests on two small files under `<state>/velib/`:
- `sent/<topic>.json`: the identity last sent per station, updated only for records Kafka acknowledged.
- `spool/<topic>/*.jsonl`: records Kafka did not acknowledge (down or failing). The run then fails with a clear
  message; the next run sends the spool before new records, and deletes it only once the state is saved.
Both are written atomically (temporary file + rename). The one window left is Kafka storing a record whose
acknowledgement is lost: it is spooled and sent again (at-least-once at that edge; the copy carries the same
observed_at, and the batch job and the stream count an identity once).

A replay file that is not a recorded Velib format fails the run in one line with exit code 2.

    python -m cronlake.ops.run velib_produce [--source api|replay] [--replay-file PATH] [--nrows N]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cronlake.contracts import velib
from cronlake.contracts.velib_zones import DEFAULT_GEO_DIR, ZoneMap
from cronlake.core.files import JsonState
from cronlake.core.jobs import Job
from cronlake.core.lake import LocalLake
from cronlake.core.protocol import keep_rejects, reject
from cronlake.core.runner import JobError, RunContext
from cronlake.core.settings import SettingError, Settings
from ingest.velib.api import ApiSource, RetryPolicy, VelibApiError, VelibSource
from ingest.velib.records import RecordError
from ingest.velib.replay import ReplayFileError, open_replay

QUARANTINE_SOURCE = "velib_api"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velib_produce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("api", "replay"), default="api",
                        help="live Explore API v2.1 at CRONLAKE_VELIB_API_URL (default) or a recorded file")
    parser.add_argument("--replay-file", type=Path,
                        help="recorded file for --source replay: the open-data CSV with French labels (.csv, "
                             ".csv.gz or a .zip holding one CSV; the portal's export or the collected history, one "
                             "snapshot per run) or a v2.1 JSON answer (records page or export list)")
    parser.add_argument("--gbfs", type=Path, action="append", default=[],
                        help="GBFS station_information.json for a history replay (repeatable, first wins; "
                             "default: gbfs_*/station_information.json next to the replay file)")
    parser.add_argument("--stations-export", type=Path, action="append", default=[],
                        help="v2.1 export giving zones for a history replay (default: the newest "
                             "api_v21_export_*.json next to the replay file)")
    parser.add_argument("--nrows", type=int, default=None, help="fetch at most N stations (default: all)")
    parser.add_argument("--http-timeout", type=float, default=10.0, help="API request timeout, seconds")
    parser.add_argument("--http-attempts", type=int, default=4, help="tries per API request")
    parser.add_argument("--http-backoff", type=float, default=1.0,
                        help="first wait between API tries, seconds (doubles each time, capped at 30)")
    parser.add_argument("--kafka-timeout", type=float, default=10.0,
                        help="seconds to reach the broker and for one request")
    parser.add_argument("--send-timeout", type=float, default=30.0,
                        help="seconds for all records to be acknowledged before they are spooled")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic if it is created")
    parser.add_argument("--replication-factor", type=int, default=1, help="replication of a created topic")
    return parser


def describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


class SentState:
    """The identity last acknowledged per station, in `<state>/velib/sent/<topic>.json`
    (`{"last_sent": {station_code: [reported_at, counts..., flags...]}}`, fields in `velib.IDENTITY` order)."""

    def __init__(self, folder: Path, topic: str):
        self.file = JsonState(folder / "sent" / f"{topic}.json", {"last_sent": {}})
        self.last: dict[str, list[Any]] = self.file.value.setdefault("last_sent", {})

    def mark(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Records acknowledged, in the order they were sent."""
        for record in records:
            station, *rest = velib.snapshot_identity(record)
            self.last[station] = rest

    def save(self) -> None:
        self.file.save()


class Spool:
    """Records waiting for Kafka, as JSON lines in `<state>/velib/spool/<topic>/<run id>.jsonl`."""

    def __init__(self, store: LocalLake, topic: str):
        self.store = store
        self.folder = f"spool/{topic}"

    def files(self) -> list[str]:
        return [f.path for f in self.store.list(self.folder) if f.path.endswith(".jsonl")]

    def read(self, files: Iterable[str]) -> list[dict[str, Any]]:
        return [json.loads(line) for path in files for line in self.store.read_text(path).splitlines() if line]

    def write(self, run_id: str, records: list[dict[str, Any]]) -> str:
        path = f"{self.folder}/{run_id}.jsonl"
        self.store.put_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return path

    def remove(self, files: Iterable[str]) -> None:
        for path in files:
            self.store.delete(path)


def select_unsent(records: Iterable[dict[str, Any]], last_sent: Mapping[str, list[Any]]
                  ) -> tuple[list[dict[str, Any]], int]:
    """The records whose identity differs from the last one sent for their station, in order; and how many were
    skipped as unchanged re-serves."""
    latest = {station: tuple(rest) for station, rest in last_sent.items()}
    chosen, duplicates = [], 0
    for record in records:
        station, *rest = velib.snapshot_identity(record)
        if latest.get(station) == tuple(rest):
            duplicates += 1
            continue
        latest[station] = tuple(rest)
        chosen.append(record)
    return chosen, duplicates


@dataclass
class SendResult:
    acknowledged: list[bool]
    error: str | None = None
    idempotent: bool | None = None
    partitions: dict[int, int] = field(default_factory=dict)


def ensure_topic(settings: Settings, partitions: int, replication_factor: int, timeout_ms: int) -> bool:
    """Create the topic if it is missing; return whether this call created it."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","), client_id="cronlake-velib-admin",
                             request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
    try:
        if velib.topic(settings) in admin.list_topics():
            return False
        admin.create_topics([NewTopic(velib.topic(settings), partitions, replication_factor)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def send(settings: Settings, records: list[dict[str, Any]], kafka_timeout_s: float, send_timeout_s: float
         ) -> SendResult:
    """Produce `records` in order and report, per record, whether Kafka acknowledged it."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    timeout_ms = int(kafka_timeout_s * 1000)
    delivery_timeout_ms = max(int(send_timeout_s * 1000), timeout_ms + 20)
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap.split(","), client_id="cronlake-velib-producer",
            acks="all", linger_ms=20, key_serializer=str.encode,
            value_serializer=lambda r: json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms, max_block_ms=timeout_ms,
            delivery_timeout_ms=delivery_timeout_ms,
        )
    except (KafkaError, OSError) as exc:
        return SendResult([False] * len(records), describe(exc))
    result = SendResult([False] * len(records), idempotent=bool(producer.config["enable_idempotence"]))
    futures = []
    try:
        for record in records:
            futures.append(producer.send(velib.topic(settings), key=record["station_code"], value=record))
    except KafkaError as exc:
        result.error = describe(exc)
    try:
        # longer than the delivery timeout, so every record ends acknowledged or failed (then spooled), none
        # still in flight; also for the records queued before a failed send
        producer.flush(timeout=(delivery_timeout_ms + timeout_ms) / 1000)
    except KafkaError as exc:
        result.error = result.error or describe(exc)
    for index, future in enumerate(futures):
        if future.is_done and future.succeeded():
            result.acknowledged[index] = True
            partition = future.value.partition
            result.partitions[partition] = result.partitions.get(partition, 0) + 1
        elif result.error is None:
            result.error = describe(future.exception) if future.is_done else (
                f"not acknowledged within {send_timeout_s:g}s")
    try:
        producer.close(timeout=kafka_timeout_s)
    except KafkaError as exc:  # the spool must still be written
        result.error = result.error or describe(exc)
    return result


def fetch(source: VelibSource, nrows: int | None) -> list[dict[str, Any]]:
    """The source's next rows; a replay file found unreadable past its header fails like a wrong file."""
    try:
        return source.fetch(nrows)
    except ReplayFileError as exc:
        raise SettingError(f"--replay-file: {exc}") from None


def build_source(args: argparse.Namespace, settings: Settings) -> VelibSource:
    if args.source == "api":
        retry = RetryPolicy(attempts=args.http_attempts, backoff_s=args.http_backoff, timeout_s=args.http_timeout)
        zones = ZoneMap.from_folder(velib.geo_dir(settings) or DEFAULT_GEO_DIR)
        return ApiSource(velib.api_url(settings), retry, zone_map=zones)
    if args.replay_file is None:
        raise JobError("--source replay needs --replay-file PATH")
    try:
        return open_replay(args.replay_file, settings.state_path / "velib", args.gbfs, args.stations_export)
    except ReplayFileError as exc:
        raise SettingError(f"--replay-file: {exc}") from None


def by_time(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records in the order a station's snapshots must be sent: by observation, then report time."""
    return sorted(records, key=velib.observation_order)


def normalise_all(source: VelibSource, raw_rows: list[dict[str, Any]], run_id: str
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fetched rows normalised, by time; and the ones that do not fit, with their reason."""
    records, rejects = [], []
    for raw in raw_rows:
        try:
            records.append(source.normalise(raw))
        except RecordError as exc:
            rejects.append(reject(exc.reason, raw, run_id=run_id))
    return by_time(records), rejects


def run(context: RunContext, args: argparse.Namespace) -> None:
    settings = context.settings
    for name in ("rows_in", "rows_out", "records_quarantined", "sent", "sent_from_spool", "skipped_duplicates",
                 "spooled"):
        context.count(name, 0)
    store = LocalLake(settings.state_path / "velib")
    source = build_source(args, settings)
    state, spool = SentState(store.root, velib.topic(settings)), Spool(store, velib.topic(settings))
    spool_files = spool.files()
    spooled = by_time(spool.read(spool_files))
    if spool_files:
        context.log("spool.found", files=len(spool_files), records=len(spooled))

    fetch_error = None
    fresh: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    try:
        raw_rows = fetch(source, args.nrows)
        context.count("rows_in", len(raw_rows))
        context.log("fetch", source=args.source, rows=len(raw_rows))
        fresh, rejects = normalise_all(source, raw_rows, context.run_id)
    except VelibApiError as exc:
        fetch_error = str(exc)
        context.log("fetch.failed", error=fetch_error)

    batch, duplicates = select_unsent([*spooled, *fresh], state.last)
    context.count("skipped_duplicates", duplicates)
    from_spool = {velib.snapshot_identity(r) for r in spooled}
    send_error = deliver(context, args, batch, from_spool, state, spool) if batch else None
    spool.remove(spool_files)
    # after sending: a lake outage must not cost the minute's records
    keep_rejects(context, context.lake, f"quarantine/{QUARANTINE_SOURCE}/{context.run_id}", rejects)
    if send_error:
        raise JobError(send_error)
    if fetch_error:
        raise JobError(f"Velib API: {fetch_error}")


def deliver(context: RunContext, args: argparse.Namespace, batch: list[dict[str, Any]],
            from_spool: set[tuple[Any, ...]], state: SentState, spool: Spool) -> str | None:
    """Send the batch; spool what Kafka did not acknowledge, then save the state; return the failure, if any."""
    settings = context.settings
    try:
        ensure_topic(settings, args.partitions, args.replication_factor, int(args.kafka_timeout * 1000))
        result = send(settings, batch, args.kafka_timeout, args.send_timeout)
    except Exception as exc:  # noqa: BLE001 - whatever Kafka raises, the batch must reach the spool
        result = SendResult([False] * len(batch), describe(exc))
    acknowledged = [r for r, ok in zip(batch, result.acknowledged, strict=True) if ok]
    pending = [r for r, ok in zip(batch, result.acknowledged, strict=True) if not ok]
    context.count("rows_out", len(acknowledged))
    context.count("sent", len(acknowledged))
    context.count("sent_from_spool", sum(1 for r in acknowledged if velib.snapshot_identity(r) in from_spool))
    context.log("kafka.sent", topic=velib.topic(settings), acknowledged=len(acknowledged), pending=len(pending),
                idempotent=result.idempotent, partitions=result.partitions)
    error = None
    if pending:
        path = spool.write(context.run_id, pending)
        context.count("spooled", len(pending))
        error = (f"Kafka at {settings.kafka_bootstrap} did not acknowledge {len(pending)} of {len(batch)} records "
                 f"({result.error}); they are spooled in {spool.store.root / path} and the next run sends them first")
    state.mark(acknowledged)
    state.save()
    return error


JOB = Job("velib_produce", build_parser, run, needs=("lake",), kafka_topics=velib.topics)


if __name__ == "__main__":
    sys.exit(JOB.main())
