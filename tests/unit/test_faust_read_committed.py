"""Faust's worker consumer reads ``read_committed`` (streams/faust_read_committed.py), and the aiokafka
attribute it sets is the one the pinned aiokafka reads when the consumer starts."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from streams import faust_read_committed

pytestmark = pytest.mark.unit


def test_faust_worker_consumer_is_made_read_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_read_committed, "_original",
                        lambda self, transport: SimpleNamespace(_isolation_level="read_uncommitted"))
    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer",
                        AIOKafkaConsumerThread._create_worker_consumer)
    faust_read_committed.install()
    consumer = AIOKafkaConsumerThread._create_worker_consumer(object(), object())  # type: ignore[arg-type]
    assert consumer._isolation_level == "read_committed"


def test_aiokafka_keeps_the_isolation_level_where_it_is_set() -> None:
    async def level() -> str:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        try:
            return str(consumer._isolation_level)  # the attribute start() hands to its fetcher
        finally:
            await consumer.stop()

    assert asyncio.run(level()) == "read_uncommitted"
