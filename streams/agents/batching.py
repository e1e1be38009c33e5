"""Batch helpers for the agents: per-batch table state written once per changed key, batch metrics.

Faust writes a changelog record for every ``table[key] = value``, and a changelog record costs a
produce through Faust (tens of microseconds, more than a detector). Agents therefore take events in
batches (``stream.take_events``), keep each key's state in a ``TableBatch`` for the batch, and
write every changed key once at the end of the batch, on the partition of the event that touched
it (the partition that owns the key: keys are the events' own keys, so one worker owns each).
Events are acknowledged by Faust only after the batch is processed, and offsets are committed only
after the producer is flushed, so outputs and changelog records come before the commit (at least
once). A state is a private copy (detectors mutate it); ``guarded`` restores a key's state when the
code using it raises, so a failing detector leaves no half-made change behind.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from streams.metrics import STAGE_LATENCY

BATCH = 1000  # events per batch at most
BATCH_WITHIN_S = 0.05  # longest wait for a batch to fill


def batches(stream: Any, size: int = BATCH, within_s: float = BATCH_WITHIN_S) -> AsyncIterator[Sequence[Any]]:
    """A Faust stream's events in batches (``Stream.take_events``): each batch's events are
    acknowledged only once the agent asks for the next batch, i.e. after it is processed."""
    return stream.take_events(size, within=within_s)  # type: ignore[no-any-return]


def load_state(stored: dict[str, Any] | None) -> tuple[dict[str, Any], bytes]:
    """A private copy of a table's state (detectors mutate it) and its serialized form, to tell
    whether anything changed. Table values are JSON on their changelog."""
    if not stored:
        return {}, b"{}"
    before = orjson.dumps(stored)
    return orjson.loads(before), before


async def table_put(table: Any, partition: int, key: str, value: Any) -> None:
    """``table[key] = value`` with the changelog partition given, not taken from Faust's current
    event (a batch holds events of several partitions). The changelog record is sent like any
    output, not through Faust's ``send_soon`` buffer: a batch's burst of changed keys would overflow
    that buffer (100 records) and stall the consumer while it flushes."""
    await table.changelog_topic.send(
        key=key, value=value, partition=partition, key_serializer=table.key_serializer,
        value_serializer=table.value_serializer, callback=table._on_changelog_sent,  # noqa: SLF001 - as Faust's own
    )
    table.data[key] = value


class TableBatch:
    """One batch's view of a Faust table: each key read once, changed keys written once."""

    def __init__(self, table: Any) -> None:
        self.table = table
        # key -> [state, serialized state at the start of the batch, partition]
        self.entries: dict[str, list[Any]] = {}

    def get(self, key: str, partition: int) -> dict[str, Any]:
        """The batch's state for ``key`` (loaded from the table on first use)."""
        entry = self.entries.get(key)
        if entry is None:
            state, before = load_state(self.table.get(key))
            entry = self.entries[key] = [state, before, partition]
        return entry[0]  # type: ignore[no-any-return]

    @contextmanager
    def guarded(self, key: str, partition: int) -> Iterator[dict[str, Any]]:
        """The state for ``key``; if the block raises, the state is restored to what it was before."""
        state = self.get(key, partition)
        snapshot = orjson.dumps(state)
        try:
            yield state
        except BaseException:
            self.entries[key][0] = orjson.loads(snapshot)
            raise

    async def flush(self) -> int:
        """Write every key whose state changed during the batch; the number written."""
        written = 0
        for key, (state, before, partition) in self.entries.items():
            if orjson.dumps(state) != before:
                await table_put(self.table, partition, key, state)
                written += 1
        self.entries.clear()
        return written


def observe_latency(stage: str, messages: Sequence[Any], now: float | None = None) -> None:
    """``STAGE_LATENCY`` once per batch: from the oldest record's Kafka timestamp to now (an upper
    bound of every record's latency in the batch)."""
    stamps = [m.timestamp for m in messages if m.timestamp]
    if stamps:
        STAGE_LATENCY.labels(stage).observe(max(0.0, (time.time() if now is None else now) - min(stamps)))


def count_into(counter: Any, counts: Counter[str]) -> None:
    """Add per-label ``counts`` (one batch's) to a labelled Prometheus counter."""
    for label, n in counts.items():
        if n:
            counter.labels(label).inc(n)
