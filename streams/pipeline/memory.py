"""The stages without Kafka: a consumed message in memory, in-memory stores and their commit. Unit tests
(``tests/unit/pipeline_fakes``) and ``bench.quality_offline`` run the worker's stage classes over them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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


def memory_store(name: str = "state", partitions: int = 8, kind: str = "memory",
                 directory: Path | None = None) -> StoreAccess:
    """A store with ``partitions`` partitions open (as after an assignment)."""
    store = Store(name, "aiwarden.events", f"memory-{name}-changelog", kind, directory or Path())
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
