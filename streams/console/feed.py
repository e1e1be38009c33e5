"""The live alert feed behind ``/alerts/stream``: one Kafka reader per worker, fanned out to clients.

The worker reads every partition of ``aiwarden.alerts`` (no consumer group: it only watches) into a
bounded buffer and hands each new alert to every connected client. Each alert carries a **cursor**,
the next offset per partition after it (``"0:12,1:5"``), sent as the SSE event id. A client that
reconnects with ``Last-Event-ID`` gets exactly what it missed: from the buffer when it still holds
it, else read back from Kafka with a short-lived consumer. An alert is re-sent whenever correlation
updates it (a higher ``version``); clients upsert by ``alert_id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.kafka.clients import aiokafka_kwargs, confluent_config, partition_ids
from infra.settings import Settings
from streams import topics

log = logging.getLogger(__name__)

Cursor = dict[int, int]  # partition -> next offset


class CursorError(ValueError):
    """A ``Last-Event-ID`` that is not a cursor this feed wrote."""


def encode_cursor(cursor: Cursor) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))


def parse_cursor(text: str) -> Cursor:
    """``"0:12,1:5"`` -> ``{0: 12, 1: 5}``; raises ``CursorError`` naming the bad part."""
    cursor: Cursor = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        partition, sep, offset = part.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            msg = f"bad Last-Event-ID {text[:80]!r}: {part[:40]!r} is not partition:offset"
            raise CursorError(msg)
        cursor[int(partition)] = int(offset)
    return cursor


@dataclass(frozen=True, slots=True)
class FeedItem:
    partition: int
    offset: int
    alert: dict[str, Any]
    cursor: str  # the feed position right after this alert: resume from here


HEARTBEAT = None  # what ``follow`` yields when nothing happened for ``heartbeat_s``


class Overflow(Exception):  # noqa: N818 - a state, not an error of the caller
    """A client read too slowly and its queue filled: it must reconnect with its last cursor."""


@dataclass(eq=False, slots=True)
class _Follower:
    queue: asyncio.Queue[FeedItem]
    overflowed: bool = False


class AlertFeed:
    """Reads ``aiwarden.alerts`` into a buffer of ``buffer_size`` and fans it out to followers."""

    def __init__(
        self, settings: Settings, *, topic: str = topics.ALERTS, buffer_size: int = 2000,
        backlog_per_partition: int = 200, queue_size: int = 5000, max_replay: int = 20_000,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.buffer: deque[FeedItem] = deque(maxlen=buffer_size)
        self.backlog_per_partition = backlog_per_partition
        self.queue_size = queue_size
        self.max_replay = max_replay
        self.position: Cursor = {}  # next offset per partition, after everything buffered
        self.followers: set[_Follower] = set()
        self.ready = asyncio.Event()
        self.skipped = 0  # undecodable records on the alerts topic (logged, never sent)

    # -- reading

    async def run(self) -> None:
        """Read forever (cancel to stop): first ``backlog_per_partition`` alerts before the end, or on
        from ``position`` when called again after a failure."""
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(self.settings), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
            for tp in partitions:
                start = self.position.get(tp.partition, end[tp] - self.backlog_per_partition)
                start = max(begin[tp], min(start, end[tp]))
                consumer.seek(tp, start)
                self.position[tp.partition] = start
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for tp, messages in batches.items():
                    for message in messages:
                        self._append(tp.partition, message.offset, message.value)
        finally:
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        admin = AdminClient(confluent_config(self.settings))
        ids = await asyncio.to_thread(partition_ids, admin, self.topic)
        return [TopicPartition(self.topic, p) for p in ids]

    def _append(self, partition: int, offset: int, value: bytes | None) -> None:
        self.position[partition] = offset + 1
        alert = decode_alert(value, partition, offset)
        if alert is None:
            self.skipped += 1
            return
        item = FeedItem(partition, offset, alert, encode_cursor(self.position))
        self.buffer.append(item)
        for follower in list(self.followers):
            try:
                follower.queue.put_nowait(item)
            except asyncio.QueueFull:
                self.followers.discard(follower)
                follower.overflowed = True

    # -- following

    async def follow(
        self, cursor: Cursor | None = None, backlog: int = 50, heartbeat_s: float = 15.0
    ) -> AsyncIterator[FeedItem | None]:
        """Alerts after ``cursor`` (or the last ``backlog`` buffered ones), then live ones; yields
        ``HEARTBEAT`` after ``heartbeat_s`` of quiet. Raises ``Overflow`` if the client lags too far."""
        await self.ready.wait()
        follower = _Follower(asyncio.Queue(self.queue_size))
        self.followers.add(follower)
        sent: Cursor = {}
        try:
            if cursor is None:
                tail = list(self.buffer)[-backlog:] if backlog > 0 else []
                first = {id(item) for item in tail}
                for item in self.buffer:  # everything older than the tail counts as seen
                    if id(item) not in first:
                        sent[item.partition] = item.offset + 1
                for item in tail:
                    if _advance(sent, item):
                        yield item
            else:
                sent = dict(cursor)
                async for item in self._replay(cursor):
                    if _advance(sent, item):
                        yield item
                for item in list(self.buffer):
                    if _advance(sent, item):
                        yield item
            while True:
                if follower.overflowed:
                    raise Overflow
                try:
                    item = await asyncio.wait_for(follower.queue.get(), heartbeat_s)
                except TimeoutError:
                    yield HEARTBEAT
                    continue
                if _advance(sent, item):
                    yield item
        finally:
            self.followers.discard(follower)

    async def _replay(self, cursor: Cursor) -> AsyncIterator[FeedItem]:
        """What the buffer no longer holds between ``cursor`` and its first item, read from Kafka."""
        first: Cursor = {}
        for item in self.buffer:
            first.setdefault(item.partition, item.offset)
        targets = {p: first.get(p, self.position.get(p, 0)) for p in self.position}
        gaps = {p: o for p, o in cursor.items() if p in targets and o < targets[p]}
        if not gaps:
            return
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(self.settings), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            partitions = [TopicPartition(self.topic, p) for p in gaps]
            consumer.assign(partitions)
            begin = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(gaps[tp.partition], begin[tp]))
            position = dict(cursor)
            remaining, replayed = set(gaps), 0
            while remaining and replayed < self.max_replay:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                if not batches:
                    break
                for tp, messages in batches.items():
                    for message in messages:
                        if message.offset >= targets[tp.partition]:
                            remaining.discard(tp.partition)
                            break
                        position[tp.partition] = message.offset + 1
                        alert = decode_alert(message.value, tp.partition, message.offset)
                        replayed += 1
                        if alert is not None:
                            yield FeedItem(tp.partition, message.offset, alert, encode_cursor(position))
            if replayed >= self.max_replay:
                log.warning("alert stream replay stopped after %d alerts; the client skips the rest", replayed)
        finally:
            await consumer.stop()


def _advance(sent: Cursor, item: FeedItem) -> bool:
    """True (and ``sent`` moved on) unless the follower already had ``item``."""
    if item.offset < sent.get(item.partition, 0):
        return False
    sent[item.partition] = item.offset + 1
    return True


def decode_alert(value: bytes | None, partition: int, offset: int) -> dict[str, Any] | None:
    try:
        alert = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        log.warning("skipping undecodable record on %s partition %d offset %d: %s", topics.ALERTS, partition, offset,
                    exc)
        return None
    if not isinstance(alert, dict) or "alert_id" not in alert:
        log.warning("skipping non-alert record on %s partition %d offset %d", topics.ALERTS, partition, offset)
        return None
    return alert
