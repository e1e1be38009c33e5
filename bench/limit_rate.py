"""The limit: how fast can one Python process read the raw records at all? N simulated raw records
(the simulator's vendor formats, orjson-encoded as published) go to a topic of their own once
(``bench.limit``, as many partitions as the aiwarden topics); then they are read back from the start
with aiokafka (``getmany``, large batches) and with confluent-kafka (``consume(num_messages=…)``),
each value decoded with ``orjson.loads``. Each client reads ``repeats`` times (a fresh consumer each
time, no consumer group); the rate of a read is N over the time from its first record to its last.

No normalization, no detection, no produce: an upper bound for any worker built on these clients.

    python -m bench.run --only limit --limit-events 50000
"""

from __future__ import annotations

import asyncio
import statistics
import time
from itertools import cycle, islice
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.common import rate
from infra.kafka.clients import aiokafka_kwargs, confluent_config
from infra.settings import Settings
from schemas.sources import SOURCES
from streams.simulator import SimConfig, Simulator

TOPIC = "bench.limit"
POOL = 50_000  # distinct simulated records; a larger N cycles through them
BATCH = 10_000


def make_topic(settings: Settings) -> None:
    """(Re)create the benchmark's own topic, empty."""
    admin = AdminClient(confluent_config(settings))
    if TOPIC in admin.list_topics(timeout=10).topics:
        admin.delete_topics([TOPIC], operation_timeout=30)[TOPIC].result(30)
        time.sleep(2)  # deletion is asynchronous on the broker
    new = NewTopic(TOPIC, num_partitions=settings.kafka.partitions,
                   replication_factor=settings.kafka.replication_factor)
    for _ in range(20):
        try:
            admin.create_topics([new], operation_timeout=30)[TOPIC].result(30)
            return
        except KafkaException as exc:  # still being deleted
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            time.sleep(1)


def fill(settings: Settings, events: int) -> dict[str, Any]:
    simulator = Simulator(SimConfig(seed=11, duration_s=max(1.0, min(events, POOL) / 1000), rate=1000))
    pool = [
        (orjson.dumps(r.record), SOURCES[r.source].primary_key(r.record).encode())
        for r in islice(simulator.records(), min(events, POOL))
    ]
    producer = Producer(confluent_config(settings, **{
        "linger.ms": 20, "compression.type": "lz4", "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
    }))
    started = time.perf_counter()
    for value, key in islice(cycle(pool), events):
        while True:
            try:
                producer.produce(TOPIC, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        msg = "records still unsent after 60 s"
        raise RuntimeError(msg)
    elapsed = time.perf_counter() - started
    return {"produce_per_s": rate(events, elapsed),
            "mean_record_bytes": round(sum(len(v) for v, _ in pool) / len(pool))}


async def _aiokafka_read(settings: Settings, events: int) -> float:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AioTP

    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        partitions = [AioTP(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - first metadata may lag
            partitions = [AioTP(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count, first = 0, None
        while count < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                for record in records:
                    orjson.loads(record.value)
                count += sum(len(records) for records in batches.values())
        return time.perf_counter() - (first or time.perf_counter())
    finally:
        await consumer.stop()


def _confluent_read(settings: Settings, events: int) -> float:
    consumer = Consumer(confluent_config(settings, **{
        "group.id": "bench-limit", "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
        "max.partition.fetch.bytes": 16 << 20, "queued.min.messages": 200_000,
    }))
    try:
        partitions = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        count, first = 0, None
        while count < events:
            messages = consumer.consume(num_messages=BATCH, timeout=1.0)
            if messages and first is None:
                first = time.perf_counter()
            for message in messages:
                if message.error() is None:
                    orjson.loads(message.value())
                    count += 1
        return time.perf_counter() - (first or time.perf_counter())
    finally:
        consumer.close()


def run(settings: Settings, events: int = 300_000, repeats: int = 3) -> dict[str, Any]:
    make_topic(settings)
    result: dict[str, Any] = {"events": events, **fill(settings, events)}
    for name, read in (("aiokafka", lambda: asyncio.run(_aiokafka_read(settings, events))),
                       ("confluent", lambda: _confluent_read(settings, events))):
        rates = [rate(events, read()) or 0 for _ in range(repeats)]
        result[f"{name}_per_s"] = round(statistics.median(rates))
        result[f"{name}_runs_per_s"] = rates
    # The pipeline engine's client: the limit a worker can approach (aiokafka, Faust's, for comparison).
    result["limit_per_s"] = result["confluent_per_s"]
    result["limit_client"] = "confluent-kafka"
    return result
