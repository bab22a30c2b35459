"""A PySpark 4 Python streaming data source over kafka-python: `spark.readStream.format("cronlake_kafka")`.

Spark's own Kafka connector is a JVM package that would have to be downloaded at runtime; this source needs
nothing but kafka-python, already a dependency. It reads one topic with explicit per-partition offsets (assign +
seek, no consumer group), so the only record of progress is Spark's checkpoint: offsets are JSON dicts
`{"<partition>": <next offset>}` written to the checkpoint's offset log before a micro-batch runs, and a restarted
query re-reads exactly the ranges of the batch it had not committed.

    spark.dataSource.register(KafkaDataSource)
    frame = (spark.readStream.format("cronlake_kafka").option("bootstrap", "127.0.0.1:9092")
             .option("topic", "<topic>").option("startingOffsets", "earliest")
             .option("maxOffsetsPerTrigger", "20000").load())

Rows: topic, partition, offset, timestamp (broker/producer time), key and value (UTF-8 text).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows

from cronlake.core.kafka_client import end_offsets, new_consumer

SOURCE_NAME = "cronlake_kafka"
SCHEMA = "topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP, key STRING, value STRING"
ARROW_BATCH_ROWS = 10000
READ_STALL_S = 60.0  # a partition range that yields nothing new for this long is an error, not a wait

Offsets = dict[str, int]


@dataclass
class PartitionRange(InputPartition):
    """Offsets [start, end) of one topic partition: one Spark task."""

    topic: str
    partition: int
    start: int
    end: int


def arrow_batch(messages: list[Any]) -> Any:
    """Messages as one Arrow record batch of SCHEMA: much cheaper for Spark to take than one tuple per row."""
    import pyarrow as pa

    def text(raw: bytes | None) -> str | None:
        return None if raw is None else raw.decode("utf-8", "replace")

    return pa.RecordBatch.from_arrays([
        pa.array([m.topic for m in messages], pa.string()),
        pa.array([m.partition for m in messages], pa.int32()),
        pa.array([m.offset for m in messages], pa.int64()),
        pa.array([m.timestamp * 1000 for m in messages], pa.timestamp("us", tz="UTC")),
        pa.array([text(m.key) for m in messages], pa.string()),
        pa.array([text(m.value) for m in messages], pa.string()),
    ], names=["topic", "partition", "offset", "timestamp", "key", "value"])


def split_limit(start: Offsets, available: Offsets, max_rows: int) -> Offsets:
    """End offsets reading at most `max_rows` in all, shared among partitions in proportion to their backlog."""
    backlog = {p: available[p] - start.get(p, 0) for p in available}
    total = sum(backlog.values())
    if total <= max_rows:
        return dict(available)
    shares = {p: backlog[p] * max_rows // total for p in backlog}
    spare = max_rows - sum(shares.values())
    for p in sorted(backlog, key=lambda q: backlog[q] - shares[q], reverse=True)[:spare]:
        shares[p] += 1
    return {p: start.get(p, 0) + shares[p] for p in available}


class KafkaStreamReader(DataSourceStreamReader):
    """Plans micro-batches as per-partition offset ranges and reads each range in a Spark task."""

    def __init__(self, options: Mapping[str, str]):
        self.bootstrap = options["bootstrap"]
        self.topic = options["topic"]
        self.starting = options.get("startingOffsets") or "earliest"
        if self.starting not in ("earliest", "latest"):
            raise ValueError(f"startingOffsets must be earliest or latest, got {self.starting!r}")
        limit = options.get("maxOffsetsPerTrigger")
        self.max_rows = int(limit) if limit else None
        self._consumer: Any = None
        self._latest: Offsets | None = None

    @property
    def consumer(self) -> Any:
        if self._consumer is None:
            self._consumer = new_consumer(self.bootstrap)
        return self._consumer

    def _partitions(self) -> list[Any]:
        from kafka import TopicPartition

        numbers = self.consumer.partitions_for_topic(self.topic) or set()
        return [TopicPartition(self.topic, p) for p in sorted(numbers)]

    def _bounds(self, earliest: bool) -> Offsets:
        partitions = self._partitions()
        if not partitions:
            return {}
        found = self.consumer.beginning_offsets(partitions) if earliest else end_offsets(self.consumer, partitions)
        return {str(tp.partition): int(offset) for tp, offset in found.items()}

    def initialOffset(self) -> Offsets:
        return self._bounds(earliest=self.starting == "earliest")

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        ends = self._bounds(earliest=False)
        # A partition that appeared after `start` was planned is read from its beginning.
        first = self._bounds(earliest=True) if set(ends) - set(start) else {}
        begin = {**first, **start}
        # An end answer short of what was already read must never move a partition back (re-reading it).
        available = {p: max(offset, begin.get(p, 0)) for p, offset in ends.items()}
        self._latest = {**begin, **available}
        if isinstance(limit, ReadMaxRows):
            return {**begin, **split_limit(begin, available, limit.max_rows)}
        return self._latest

    def reportLatestOffset(self) -> Offsets | None:
        """The end seen by the last `latestOffset` (for the query's progress reports)."""
        return self._latest

    def partitions(self, start: Offsets, end: Offsets) -> list[PartitionRange]:
        ranges = []
        for partition, stop in sorted(end.items(), key=lambda item: int(item[0])):
            begin = start.get(partition, 0)
            if stop > begin:
                ranges.append(PartitionRange(self.topic, int(partition), begin, stop))
        return ranges

    def read(self, partition: PartitionRange) -> Iterator[tuple]:
        from kafka import TopicPartition

        consumer = new_consumer(self.bootstrap)
        try:
            tp = TopicPartition(partition.topic, partition.partition)
            consumer.assign([tp])
            consumer.seek(tp, partition.start)
            position, last_progress = partition.start, time.monotonic()
            while position < partition.end:
                fetched = [m for m in consumer.poll(timeout_ms=500, max_records=ARROW_BATCH_ROWS).get(tp, [])
                           if partition.start <= m.offset < partition.end]
                if fetched:
                    yield arrow_batch(fetched)
                # Compacted or transactional topics can skip offsets: the consumer position is the truth.
                new_position = consumer.position(tp)
                if new_position > position:
                    position, last_progress = new_position, time.monotonic()
                elif time.monotonic() - last_progress > READ_STALL_S:
                    raise RuntimeError(f"{partition.topic}[{partition.partition}]: no progress at offset {position} "
                                       f"for {READ_STALL_S:.0f}s (range {partition.start}-{partition.end})")
        finally:
            consumer.close()

    def commit(self, end: Offsets) -> None:
        """Nothing to do: progress lives in Spark's checkpoint, not in a Kafka consumer group."""

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class KafkaDataSource(DataSource):
    """`format("cronlake_kafka")`; options: bootstrap, topic, startingOffsets, maxOffsetsPerTrigger."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: Any) -> KafkaStreamReader:
        for required in ("bootstrap", "topic"):
            if not self.options.get(required):
                raise ValueError(f"{SOURCE_NAME}: option {required!r} is required")
        return KafkaStreamReader(self.options)
