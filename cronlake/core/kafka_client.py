"""Kafka reads shared by the landing consumer and the Spark streaming source: group-less consumers and true end
offsets (the embedded broker under-reports them), and topic creation for producers."""

from __future__ import annotations

from typing import Any


def new_consumer(bootstrap: str) -> Any:
    """A group-less consumer: offsets come from Spark's checkpoint, never from Kafka."""
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_wait_ms=50, client_id="cronlake-spark-source")


def end_offsets(consumer: Any, partitions: list[Any]) -> dict[Any, int]:
    """The next offset to be written in each partition (at least: a partition not fetched in time keeps the
    broker's ListOffsets answer, and the next call catches up).

    Some brokers (the embedded tansu) answer ListOffsets(latest) with the last record batch's base offset + 1,
    short of the real end; one fetch from there returns that batch and the partition's high watermark.
    """
    reported = consumer.end_offsets(partitions)
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, reported[tp])
    fetched = consumer.poll(timeout_ms=200, max_records=100000)
    return {tp: max(reported[tp], consumer.position(tp), consumer.highwater(tp) or 0) if tp in fetched
            else reported[tp] for tp in partitions}


def ensure_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int, timeout_ms: int) -> bool:
    """Create `topic` if it is missing; return whether this call created it."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="cronlake-admin",
                             request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
    try:
        if topic in admin.list_topics():
            return False
        admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()
