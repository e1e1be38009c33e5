"""How far a consumer group is behind, on topics written in Kafka transactions.

``end offset − committed offset`` overstates the lag of a group on a transactional topic: every
transaction leaves a marker record that consumers never receive, and a consumer that commits
``last offset + 1`` (aiokafka's, so Faust's and the sink's) stays one short of the end after the
last transaction. Here a small remainder is read (``read_committed``, from the committed offset):
a partition whose remainder holds no data record counts as caught up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from infra.kafka.clients import confluent_config
from infra.settings import Settings

CHECKED_REMAINDER = 8  # a remainder at most this long is read to tell markers from records
# librdkafka does not flag these retriable when reading watermarks, yet they only mean "leader not elected yet"
ELECTING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


def watermarks(consumer: Any, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    """``(low, high)`` watermarks of a partition, waiting out a topic created a moment ago whose leader is
    still being elected (at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in ELECTING) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def group_lag(settings: Settings, group: str, topic_names: Iterable[str],
              timeout_s: float = 15.0) -> dict[tuple[str, int], int]:
    """Per partition of ``topic_names``: records ``group`` has not committed yet (without joining it).
    A partition the group never committed counts from its start."""
    consumer = Consumer(confluent_config(settings, **{"group.id": group, "enable.auto.commit": False}))
    try:
        partitions = [TopicPartition(name, p) for name in topic_names
                      for p in consumer.list_topics(name, timeout=timeout_s).topics[name].partitions]
        lag: dict[tuple[str, int], int] = {}
        for tp in consumer.committed(partitions, timeout=timeout_s):
            low, high = watermarks(consumer, tp.topic, tp.partition, timeout_s)
            lag[(tp.topic, tp.partition)] = high - max(tp.offset, low, 0)
    finally:
        consumer.close()
    suspect = {key: n for key, n in lag.items() if 0 < n <= CHECKED_REMAINDER}
    if suspect:
        lag.update(_records_after(settings, suspect, timeout_s))
    return lag


def _records_after(settings: Settings, remainders: dict[tuple[str, int], int],
                   timeout_s: float) -> dict[tuple[str, int], int]:
    """Data records (``read_committed``) in the last ``n`` offsets of each partition."""
    probe = Consumer(confluent_config(settings, **{
        "group.id": f"lag-probe-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": True, "isolation.level": "read_committed",
    }))
    counts = dict.fromkeys(remainders, 0)
    try:
        assignment = []
        for (topic, partition), n in remainders.items():
            high = watermarks(probe, topic, partition, timeout_s)[1]
            assignment.append(TopicPartition(topic, partition, high - n))
        probe.assign(assignment)
        pending = set(remainders)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for message in probe.consume(100, 0.2):
                key = (str(message.topic()), int(message.partition() or 0))
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's name
                        pending.discard(key)
                    continue
                counts[key] += 1
        for key in pending:  # could not tell (an open transaction): count it as behind
            counts[key] = max(counts[key], 1)
    finally:
        probe.close()
    return counts
