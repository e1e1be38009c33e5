"""Faust's own consumer reads ``read_committed``, like every aiwarden consumer.

faust-streaming 0.15.3 reads ``read_uncommitted`` unless the whole app runs its own exactly-once
mode. The worker's Faust agents (containment) read ``aiwarden.alerts``, written in the pipeline
engine's Kafka transactions: read uncommitted, an alert of an aborted transaction could trigger
containment. This sets the isolation level on the consumer Faust creates (aiokafka reads it when
the consumer starts). Tied to the pinned Faust and aiokafka versions; ``tests/unit`` checks it.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_original = AIOKafkaConsumerThread._create_worker_consumer  # noqa: SLF001


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original(self, transport)
    consumer._isolation_level = "read_committed"  # noqa: SLF001 - read by AIOKafkaConsumer.start
    return consumer


def install() -> None:
    """Make every Faust worker consumer of this process read committed records only."""
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]  # noqa: SLF001
