"""Stand-ins for the engine around the stages in unit tests: confluent-kafka-like messages, an
``Out`` that records what is sent, in-memory stores and a commit that returns the changelog."""

from __future__ import annotations

from typing import Any

from schemas.codec import encode
from schemas.dead_letter import KAFKA_DEFAULT_MAX_MESSAGE_BYTES
from schemas.envelope import Event
from streams.pipeline.memory import Message, commit, memory_store
from streams.pipeline.records import check_fits
from streams.pipeline.state import StoreAccess

__all__ = ["Message", "Out", "commit", "committed", "event_message", "memory_store"]


class Out:
    """Records every send, and per topic; refuses a record over ``limits`` (per topic, else the stock
    max.message.bytes) as the engine's output does."""

    def __init__(self, limits: dict[str, int] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.limits = limits or {}

    def max_bytes(self, topic: str) -> int:
        return self.limits.get(topic, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        check_fits(topic, key, value, headers, self.max_bytes(topic))
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": headers})

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [sent for sent in self.sent if sent["topic"] == topic]


def committed(access: StoreAccess) -> dict[str, Any]:
    """Every committed key's state."""
    return dict(access.items())


def event_message(event: Event, partition: int = 0, offset: int = 0) -> Message:
    return Message(encode(event), event.entity_id.encode(), partition, offset)
