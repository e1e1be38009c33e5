"""Stand-ins for the engine around the stages in unit tests: confluent-kafka-like messages, an
``Out`` that records what is sent, in-memory stores and a commit that returns the changelog."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from schemas.codec import encode
from schemas.dead_letter import KAFKA_DEFAULT_MAX_MESSAGE_BYTES
from schemas.envelope import Event
from streams.pipeline.records import check_fits
from streams.pipeline.state import Store, StoreAccess


class Message:
    """The surface of ``confluent_kafka.Message`` the stages use."""

    def __init__(self, value: bytes | None, key: bytes | None = None, partition: int = 0, offset: int = 0,
                 topic: str = "aiwarden.events", headers: Any = None) -> None:
        self._value, self._key, self._partition, self._offset = value, key, partition, offset
        self._topic, self._headers = topic, headers or None
        self._timestamp = int(time.time() * 1000)

    def error(self) -> Any:
        return None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return self._topic

    def headers(self) -> Any:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)


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


def memory_store(name: str = "state", partitions: int = 8, kind: str = "memory",
                 directory: Path | None = None) -> StoreAccess:
    """A store with ``partitions`` partitions open (as after an assignment)."""
    store = Store(name, "aiwarden.events", f"test-{name}-changelog", kind, directory or Path())
    for partition in range(partitions):
        store.open(partition)
    return StoreAccess(store)


def commit(*stores: StoreAccess) -> list[tuple[str, int, str]]:
    """Commit every store's open transaction as the engine does; the changelog records it wrote
    as (store, partition, key)."""
    written = []
    for access in stores:
        for partition, part in access.store.partitions.items():
            changes = part.changes()
            written += [(access.store.name, partition, key) for key, _ in changes]
            part.commit(changes)
    return written


def committed(access: StoreAccess) -> dict[str, Any]:
    """Every committed key's state."""
    return dict(access.items())


def event_message(event: Event, partition: int = 0, offset: int = 0) -> Message:
    return Message(encode(event), event.entity_id.encode(), partition, offset)
