"""Per-partition state for the pipeline stages: a write-back cache over a committed store.

The model is Kafka Streams' record cache under exactly-once. A store is partitioned like the input
topic it is bound to, so the worker owning an input partition owns that partition of the store.
Committed values are JSON bytes (a few hundred bytes per key, not a Python object graph), kept
in memory or on disk (``rocksdict``, the RocksDB binding faust-streaming uses). During a
transaction a key read for the first time is decoded into a working dict that detectors mutate
in place; at commit each key whose serialized form changed becomes one changelog record, in
the same Kafka transaction as the outputs and the input offsets, and is applied to the
committed store only once that transaction committed. An aborted transaction drops the working
copies: the store is exactly what the changelog holds.

``apply`` (a stage's function on one key's state) leaves no half-made change when the function raises.
A *careful* store (the default) serializes the state before every call and puts it back; the engine's
stores are not careful (that copy was ~5 µs of every event): a raise there is ``StateSpoiled``, the
engine aborts the transaction and processes its records again with careful stores for a while, so the
record that raised is handled (dead-lettered) against the state as it was.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

log = logging.getLogger(__name__)
T = TypeVar("T")

OFFSET_KEY = "\x00changelog-offset"  # the disk store's own record of how far it has applied its changelog


class StateSpoiled(Exception):  # noqa: N818 - what happened, not an error class name
    """A stage's function raised on a key of a store that is not careful: the key's working state may be
    half-changed, so the open transaction must be aborted (the engine does) and processed again."""

    def __init__(self, store: str, key: str) -> None:
        super().__init__(f"{store}: state of {key[:200]!r} half-changed by a raise")
        self.store, self.key = store, key


class Backend(Protocol):
    """Committed values of one store partition (``str`` key → JSON bytes)."""

    def get(self, key: str) -> bytes | None: ...
    def apply(self, changes: list[tuple[str, bytes | None]], changelog_offset: int | None) -> None: ...
    def changelog_offset(self) -> int | None: ...
    def items(self) -> Iterator[tuple[str, bytes]]: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


class MemoryBackend:
    """Committed values in a dict; rebuilt from the changelog on every assignment."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def apply(self, changes: list[tuple[str, bytes | None]], changelog_offset: int | None) -> None:
        data = self.data
        for key, value in changes:
            if value is None:
                data.pop(key, None)
            else:
                # A copy: a bytes object from orjson.dumps keeps ~4 KiB of RSS however short it is
                # (orjson 3.13), the exact-size copy ~60 B: it decides the memory per entity.
                data[key] = bytes(memoryview(value))

    def changelog_offset(self) -> int | None:
        return None

    def items(self) -> Iterator[tuple[str, bytes]]:
        return iter(list(self.data.items()))

    def __len__(self) -> int:
        return len(self.data)

    def close(self) -> None:
        self.data.clear()


class RocksBackend:
    """Committed values in one RocksDB per store partition; it records the changelog offset it has
    applied, so a restart replays only the changelog records written after it."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict, WriteBatch

        self._write_batch = WriteBatch
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.path = path
        self.db: Any = Rdict(str(path), options=options)
        self._count = sum(1 for _ in self.db.keys()) - (1 if self.db.get(OFFSET_KEY.encode()) is not None else 0)

    def get(self, key: str) -> bytes | None:
        value = self.db.get(key.encode())
        return bytes(value) if value is not None else None

    def apply(self, changes: list[tuple[str, bytes | None]], changelog_offset: int | None) -> None:
        batch = self._write_batch(raw_mode=True)
        for key, value in changes:
            raw_key = key.encode()
            existed = self.db.get(raw_key) is not None
            if value is None:
                if existed:
                    batch.delete(raw_key)
                    self._count -= 1
            else:
                batch.put(raw_key, value)
                self._count += 0 if existed else 1
        if changelog_offset is not None:
            batch.put(OFFSET_KEY.encode(), str(changelog_offset).encode())
        self.db.write(batch)

    def changelog_offset(self) -> int | None:
        value = self.db.get(OFFSET_KEY.encode())
        return int(value) if value is not None else None

    def items(self) -> Iterator[tuple[str, bytes]]:
        for key, value in self.db.items():
            if key != OFFSET_KEY.encode():
                yield bytes(key).decode(), bytes(value)

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self.db.close()



class StorePartition:
    """One partition of a store: committed values plus the working copies of the open transaction."""

    def __init__(self, backend: Backend, name: str = "", careful: bool = True) -> None:
        self.backend, self.name, self.careful = backend, name, careful
        # key -> [working state, committed bytes before the transaction (None: absent)]
        self.working: dict[str, list[Any]] = {}

    def get(self, key: str) -> dict[str, Any]:
        """The transaction's working state for ``key`` (decoded from the committed value on first use)."""
        entry = self.working.get(key)
        if entry is None:
            before = self.backend.get(key)
            entry = self.working[key] = [orjson.loads(before) if before else {}, before]
        return entry[0]  # type: ignore[no-any-return]

    def apply(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(state, *args)`` on ``key``'s working state. If it raises, a careful store puts the state
        back as it was before the call (a failing detector leaves no half-made change) and re-raises;
        another raises ``StateSpoiled`` (see the module docstring). A plain call, not a context manager:
        the stages make one per detector per event."""
        state = self.get(key)
        if not self.careful:
            try:
                return fn(state, *args)
            except Exception as exc:
                raise StateSpoiled(self.name, key) from exc
        snapshot = orjson.dumps(state)
        try:
            return fn(state, *args)
        except BaseException:
            self.working[key][0] = orjson.loads(snapshot)
            raise

    def set(self, key: str, value: dict[str, Any]) -> None:
        """Replace ``key``'s state in the transaction."""
        self.get(key)
        self.working[key][0] = value

    def changes(self) -> list[tuple[str, bytes | None]]:
        """Keys whose state changed in the transaction, with their new value (None: deleted, for an
        empty state). One per key however often it changed."""
        changed: list[tuple[str, bytes | None]] = []
        for key, (state, before) in self.working.items():
            now = orjson.dumps(state) if state else None
            if now != before:
                changed.append((key, now))
        return changed

    def commit(self, changes: list[tuple[str, bytes | None]], changelog_offset: int | None = None) -> None:
        """The transaction committed: its ``changes`` become the committed values."""
        if changes or changelog_offset is not None:
            self.backend.apply(changes, changelog_offset)
        self.working.clear()

    def rollback(self) -> None:
        """The transaction aborted: forget its working copies."""
        self.working.clear()

    def committed_items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, value in self.backend.items():
            yield key, orjson.loads(value)

    def __len__(self) -> int:
        return len(self.backend)


class Store:
    """A named store, partitioned like its input topic, with a compacted changelog topic."""

    def __init__(self, name: str, input_topic: str, changelog: str, kind: str, directory: Path) -> None:
        self.name, self.input_topic, self.changelog = name, input_topic, changelog
        self.kind, self.directory = kind, directory
        self.partitions: dict[int, StorePartition] = {}
        self.careful = True

    def set_careful(self, careful: bool) -> None:
        """Snapshot the state around every ``apply`` (True) or let a raise spoil the transaction."""
        self.careful = careful
        for part in self.partitions.values():
            part.careful = careful

    def open(self, partition: int) -> StorePartition:
        """A partition's store, empty or as the disk left it (the caller restores the rest)."""
        backend: Backend = (
            RocksBackend(self.directory / self.name / str(partition)) if self.kind == "rocksdb" else MemoryBackend()
        )
        store = self.partitions[partition] = StorePartition(backend, self.name, self.careful)
        return store

    def close(self, partition: int) -> None:
        store = self.partitions.pop(partition, None)
        if store is not None:
            store.backend.close()

    def destroy(self, partition: int) -> None:
        """Remove a closed partition's files (a disk store that can no longer catch up with its changelog)."""
        shutil.rmtree(self.directory / self.name / str(partition), ignore_errors=True)

    def __getitem__(self, partition: int) -> StorePartition:
        return self.partitions[partition]

    def size(self) -> int:
        return sum(len(p) for p in self.partitions.values())


class StoreAccess:
    """A store as the stages use it: by key and the partition of the input record."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str, partition: int) -> dict[str, Any]:
        return self.store[partition].get(key)

    def apply(self, key: str, partition: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(state, *args)`` on the key's state; the state is put back if it raises."""
        return self.store[partition].apply(key, fn, *args)

    def set(self, key: str, partition: int, value: dict[str, Any]) -> None:
        self.store[partition].set(key, value)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every committed key of the partitions held (for restoring models after an assignment)."""
        for partition in list(self.store.partitions.values()):
            yield from partition.committed_items()


