"""The ClickHouse sink: batches topic records into inserts and commits offsets after each insert.

It runs its own consumer group (``<app_id>-sink``) with manual commits rather than a Faust
agent: Faust's ``take_events`` acks a batch in a ``finally`` block, so a worker stopped in the
middle of an insert would commit rows that never landed. Here an offset is committed only after
ClickHouse accepted the rows before it. While ClickHouse is down the sink pauses its partitions
and retries with backoff, holding at most one batch in memory.

Records are JSON objects whose keys are column names; they are inserted as ``JSONEachRow``
without a Python round trip. Each insert carries a deduplication token derived from the offset
ranges it covers, and the tables are ReplacingMergeTree on the record id, so a redelivered batch
is not seen twice by hunters.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from infra.clickhouse.client import connect
from infra.kafka.clients import aiokafka_kwargs
from infra.settings import Settings
from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from streams import topics
from streams.metrics import SINK_INSERT_SECONDS, SINK_LAG, SINK_ROWS, STAGE_LATENCY

log = logging.getLogger(__name__)

# ClickHouse error codes that mean "this data is bad", not "the server is unwell".
DATA_ERROR_CODES = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 130, 131, 321, 349})
_CODE = re.compile(r"Code: (\d+)")

TOPIC_TABLES: dict[str, str] = {
    topics.EVENTS: "events",
    topics.DLQ: "dead_letters",
    topics.FINDINGS: "findings",
    topics.ALERTS: "alerts",
    topics.INVENTORY: "inventory",
    topics.ACTION_LOG: "actions",
}
INSERT_SETTINGS = {
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_numbers_as_strings": 1,
    "date_time_input_format": "best_effort",
}


def error_code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def is_data_error(exc: BaseException) -> bool:
    return isinstance(exc, DatabaseError) and not isinstance(exc, OperationalError) and (
        error_code(exc) in DATA_ERROR_CODES
    )


@dataclass
class Batch:
    """Rows per table and the offset range per partition they came from."""

    rows: dict[str, list[bytes]] = field(default_factory=dict)
    ranges: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    count: int = 0
    started: float = field(default_factory=time.monotonic)
    oldest_ms: int | None = None  # the earliest Kafka timestamp seen (per fetch, not per record)

    def saw_timestamp(self, timestamp_ms: int) -> None:
        if timestamp_ms > 0 and (self.oldest_ms is None or timestamp_ms < self.oldest_ms):
            self.oldest_ms = timestamp_ms

    def add(self, tp: TopicPartition, offset: int, table: str, value: bytes) -> None:
        if not self.count:  # the batch's age counts from its first row
            self.started = time.monotonic()
        self.rows.setdefault(table, []).append(value)
        first, _ = self.ranges.get(tp, (offset, offset))
        self.ranges[tp] = (first, offset)
        self.count += 1

    def token(self, table: str) -> str:
        spans = ",".join(f"{tp.topic}:{tp.partition}:{a}-{b}" for tp, (a, b) in sorted(self.ranges.items()))
        return hashlib.blake2b(f"{table}|{spans}".encode(), digest_size=16).hexdigest()

    def commit_offsets(self) -> dict[TopicPartition, int]:
        return {tp: last + 1 for tp, (_, last) in self.ranges.items()}


class ClickHouseSink:
    """Kafka topics → ClickHouse tables, at least once, without duplicates visible to hunters."""

    def __init__(
        self,
        settings: Settings,
        topic_tables: dict[str, str] | None = None,
        client_factory: Callable[[], Client] | None = None,
    ) -> None:
        self.settings = settings
        self.topic_tables = topic_tables or TOPIC_TABLES
        self.database = settings.clickhouse.database
        self.batch_rows = settings.worker.sink_batch_rows
        self.batch_seconds = settings.worker.sink_batch_seconds
        self._client_factory = client_factory or (lambda: connect(settings))
        self._client: Client | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._batch = Batch()
        self._lag: dict[TopicPartition, int] = {}
        self._flush_lock = asyncio.Lock()
        self.inserted = 0
        self.dead_lettered = 0

    # -- ClickHouse side (blocking calls, run in a thread)
    def _insert(self, table: str, lines: list[bytes], token: str | None) -> None:
        if self._client is None:
            self._client = self._client_factory()
        insert_settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if token:
            insert_settings["insert_deduplication_token"] = token
        started = time.perf_counter()
        self._client.raw_insert(
            f"{self.database}.{table}", insert_block=b"\n".join(lines), settings=insert_settings, fmt="JSONEachRow"
        )
        SINK_INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        SINK_ROWS.labels(table).inc(len(lines))

    def _isolate_bad_rows(self, table: str, lines: list[bytes]) -> list[tuple[bytes, str]]:
        """After a data error: insert halves, splitting only those ClickHouse rejects, down to single
        rows (O(bad rows × log n) inserts); returns the rejected rows with ClickHouse's reason."""
        try:
            self._insert(table, lines, hashlib.blake2b(b"\n".join(lines), digest_size=16).hexdigest())
            return []
        except ClickHouseError as exc:
            if not is_data_error(exc):
                raise
            if len(lines) == 1:
                return [(lines[0], f"ClickHouse rejected the row for {table}: {str(exc)[:500]}")]
        middle = len(lines) // 2
        return self._isolate_bad_rows(table, lines[:middle]) + self._isolate_bad_rows(table, lines[middle:])

    async def _retry_later(self, delay: float, reason: object) -> float:
        """Pause consumption and wait ``delay``; returns the next (doubled, capped) delay."""
        self._client = None
        self._pause()
        log.warning("ClickHouse sink cannot write (%s); retrying in %.1fs", reason, delay)
        await asyncio.sleep(delay)
        return min(delay * 2, 10.0)

    async def _write(self, batch: Batch) -> None:
        """Insert every table's rows, retrying transient failures until they succeed; rows ClickHouse
        rejects as bad data are dead-lettered and the rest of their batch still lands."""
        delay = 0.2
        pending = dict(batch.rows)
        while pending:
            table, lines = next(iter(pending.items()))
            try:
                try:
                    await asyncio.to_thread(self._insert, table, lines, batch.token(table))
                except ClickHouseError as exc:
                    if not is_data_error(exc):
                        raise
                    rejected = await asyncio.to_thread(self._isolate_bad_rows, table, lines)
                    await self._dead_letter(table, rejected)
            except (ClickHouseError, OSError, KafkaError) as exc:
                delay = await self._retry_later(delay, exc)
                continue
            pending.pop(table)
        self._resume()

    async def _dead_letter(self, table: str, rejected: list[tuple[bytes, str]]) -> None:
        if not rejected:
            return
        if table == TOPIC_TABLES[topics.DLQ]:
            # A dead letter the dead_letters table refuses would come straight back: log it instead.
            for line, reason in rejected:
                log.error("dead letter refused by ClickHouse (%s): %r", reason, line[:2000])
            self.dead_lettered += len(rejected)
            return
        producer = AIOKafkaProducer(**aiokafka_kwargs(self.settings), acks="all")
        await producer.start()
        try:
            for line, reason in rejected:
                letter = DeadLetter.of(reason, table, "sink", line, {"table": table})
                await producer.send_and_wait(topics.DLQ, encode(letter.to_dict()))
        finally:
            await producer.stop()
        self.dead_lettered += len(rejected)

    def _pause(self) -> None:
        if self._consumer is not None:
            self._consumer.pause(*self._consumer.assignment())

    def _resume(self) -> None:
        if self._consumer is not None:
            paused = self._consumer.paused()
            if paused:
                self._consumer.resume(*paused)

    async def flush(self) -> None:
        """Insert what is buffered, then commit the offsets after it. One flush at a time: a flush asked
        for by a rebalance waits for the one in flight, so partitions move only after their rows landed."""
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._batch = self._batch, Batch()
        if not batch.count:
            return
        await self._write(batch)
        if batch.oldest_ms is not None:
            STAGE_LATENCY.labels("sink").observe(max(0.0, time.time() - batch.oldest_ms / 1000))
        if self._consumer is not None:
            await self._commit(self._consumer, batch)
            self._record_lag(self._consumer, batch)
        self.inserted += batch.count
        log.debug("sink inserted %d rows", batch.count)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Commit after the insert. A commit that fails (the broker restarting, the group rebalancing
        away the partitions) is not fatal: the rows are in ClickHouse and whoever reads the partitions
        next redelivers them, which ReplacingMergeTree absorbs. Retried while it is transient."""
        offsets = batch.commit_offsets()
        delay = 0.2
        for _ in range(8):
            owned = consumer.assignment()
            offsets = {tp: o for tp, o in offsets.items() if tp in owned}
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
                return
            except CommitFailedError as exc:  # partitions moved to another member: not ours to commit
                log.warning("sink commit refused after a rebalance; the rows will be redelivered: %s", exc)
                return
            except KafkaError as exc:
                log.warning("sink commit failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.warning("sink commit kept failing; %d rows will be redelivered", batch.count)

    def _record_lag(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """``SINK_LAG`` per topic from the fetch high-water marks the consumer already has (no request),
        over the partitions it still owns (a rebalance may have moved some while the batch was written)."""
        owned = consumer.assignment()
        self._lag = {tp: lag for tp, lag in self._lag.items() if tp in owned}
        for tp, (_, last) in batch.ranges.items():
            high = consumer.highwater(tp) if tp in owned else None
            if high is not None:
                self._lag[tp] = max(0, high - last - 1)
        per_topic = dict.fromkeys(self.topic_tables, 0)
        for tp, lag in self._lag.items():
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + lag
        for topic, lag in per_topic.items():
            SINK_LAG.labels(topic).set(lag)

    # -- Kafka side
    async def run(self) -> None:
        listener = _FlushOnRevoke(self)
        self._consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(self.settings),
            group_id=f"{self.settings.worker.app_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_rows,
            session_timeout_ms=int(self.settings.worker.session_timeout_s * 1000),
            heartbeat_interval_ms=max(500, int(self.settings.worker.session_timeout_s * 250)),
            fetch_max_bytes=64 * 1024 * 1024,
            # Liveness is the heartbeat; a long ClickHouse outage must not evict the sink from its group.
            max_poll_interval_ms=24 * 3600 * 1000,
        )
        self._consumer.subscribe(list(self.topic_tables), listener=listener)
        await self._consumer.start()
        try:
            while True:
                room = max(1, self.batch_rows - self._batch.count)
                records = await self._consumer.getmany(timeout_ms=200, max_records=room)
                for tp, messages in records.items():
                    table = self.topic_tables[tp.topic]
                    if messages:
                        self._batch.saw_timestamp(messages[0].timestamp)
                    for message in messages:
                        if message.value is not None:
                            self._batch.add(tp, message.offset, table, message.value)
                full = self._batch.count >= self.batch_rows
                if full or (self._batch.count and time.monotonic() - self._batch.started >= self.batch_seconds):
                    await self.flush()
        except asyncio.CancelledError:
            await asyncio.shield(self._final_flush())
            raise
        finally:
            await self._consumer.stop()

    async def _final_flush(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=10)
        except (TimeoutError, ClickHouseError, OSError) as exc:
            log.warning("sink stopped with an unflushed batch; it will be redelivered: %s", exc)


class _FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move to another worker, land and commit what was read from them."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.sink.flush()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
