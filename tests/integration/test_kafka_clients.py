"""The pinned Apache Kafka broker works with every client aiwarden uses: confluent-kafka
(idempotent and transactional producers), aiokafka 0.14 (Faust's client)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from infra.kafka.clients import aiokafka_kwargs, confluent_config
from infra.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture()
def topic(service_settings: Settings) -> str:
    name = f"test.clients.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(confluent_config(service_settings))
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
    return name


def test_confluent_to_aiokafka(service_settings: Settings, topic: str) -> None:
    producer = Producer(confluent_config(service_settings, **{"enable.idempotence": True, "acks": "all"}))
    for i in range(100):
        producer.produce(topic, f"v{i}".encode(), f"k{i % 7}".encode())
    assert producer.flush(30) == 0

    async def consume() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic, **aiokafka_kwargs(service_settings), group_id=f"g-{topic}", auto_offset_reset="earliest"
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            while len(got) < 100:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                got += [m.value for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        return got

    assert sorted(asyncio.run(consume())) == sorted(f"v{i}".encode() for i in range(100))


def test_aiokafka_to_confluent_with_transactions(service_settings: Settings, topic: str) -> None:
    async def produce() -> None:
        producer = AIOKafkaProducer(**aiokafka_kwargs(service_settings), acks="all", compression_type="lz4")
        await producer.start()
        try:
            for i in range(50):
                await producer.send(topic, f"a{i}".encode(), key=b"k")
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    txn = Producer(confluent_config(service_settings, **{"transactional.id": f"tx-{topic}"}))
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(50):
        txn.produce(topic, f"t{i}".encode(), b"k")
    txn.commit_transaction(30)

    consumer = Consumer(
        confluent_config(
            service_settings,
            **{"group.id": f"c-{topic}", "auto.offset.reset": "earliest", "isolation.level": "read_committed"},
        )
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        for _ in range(60):
            got += [m.value() for m in consumer.consume(200, timeout=1.0) if m.error() is None]
            if len(got) >= 100:
                break
    finally:
        consumer.close()
    assert sorted(got) == sorted([f"a{i}".encode() for i in range(50)] + [f"t{i}".encode() for i in range(50)])
