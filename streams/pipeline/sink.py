"""The ClickHouse sink: batches topic records into inserts and commits offsets after each insert.

It runs its own consumer group (``<app_id>-sink``) with manual commits rather than a Faust
agent: Faust's ``take_events`` acks a batch in a ``finally`` block, so a worker stopped in the
middle of an insert would commit rows that never landed. Here an offset is committed only after
ClickHouse accepted the rows before it. It reads with ``read_committed``: records of aborted
Kafka transactions never reach ClickHouse.

Inserts are pipelined: up to ``MAX_IN_FLIGHT`` batches are inserted at once (each table of a batch
in its own thread, each thread with its own client) while the next batch is read, and batches are
committed in the order they were read, so an offset is never committed before every row before it
landed. While ClickHouse is down the sink pauses its partitions and retries with backoff, holding
at most ``MAX_IN_FLIGHT + 1`` batches in memory.

Records are JSON objects whose keys are column names; they are inserted as ``JSONEachRow``
without a Python round trip. Each insert carries a deduplication token derived from the offset
ranges it covers, and the tables are ReplacingMergeTree on the record id, so a redelivered batch
is not seen twice by hunters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
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
    topics.TRIAGE: "alert_triage",
    topics.AUDIT: "audit_log",
    topics.SUPPRESSED: "suppressed_findings",
}
INSERT_SETTINGS = {
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_numbers_as_strings": 1,
    "date_time_input_format": "best_effort",
    # Synchronous inserts (ClickHouse 26 turns async_insert on by default): the sink batches by itself,
    # and the deduplication token is what makes a retried batch harmless.
    "async_insert": 0,
}
# Batches inserted at once while the next one is read: ClickHouse parses and writes each insert
# mostly on one core, so two keep a second core busy; more only hold more memory.
MAX_IN_FLIGHT = 2


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
    # The consumer's position after the last fetch of each partition: past transaction markers that
    # follow the batch's last record, which consumers never receive (else a commit stays one short).
    positions: dict[TopicPartition, int] = field(default_factory=dict)

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

    def extend(self, tp: TopicPartition, table: str, messages: Sequence[Any]) -> None:
        """Add one fetch of a partition (aiokafka records, in offset order) without per-row calls.
        Records without a value (tombstones) insert nothing but are covered by the offset range."""
        if not messages:
            return
        self.saw_timestamp(messages[0].timestamp)
        values = [m.value for m in messages if m.value is not None]
        if values:
            if not self.count:
                self.started = time.monotonic()
            self.rows.setdefault(table, []).extend(values)
            self.count += len(values)
        first, _ = self.ranges.get(tp, (messages[0].offset, 0))
        self.ranges[tp] = (first, messages[-1].offset)

    def token(self, table: str) -> str:
        spans = ",".join(f"{tp.topic}:{tp.partition}:{a}-{b}" for tp, (a, b) in sorted(self.ranges.items()))
        return hashlib.blake2b(f"{table}|{spans}".encode(), digest_size=16).hexdigest()

    def commit_offsets(self) -> dict[TopicPartition, int]:
        return {tp: max(last + 1, self.positions.get(tp, 0)) for tp, (_, last) in self.ranges.items()}


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
        # Idle clients: an insert takes one (a ClickHouse session serves one query at a time) and puts it
        # back when the insert succeeded; a client whose insert failed is dropped (its connection may be dead).
        self._clients: list[Client] = []
        self._clients_lock = threading.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._batch = Batch()
        self._in_flight: deque[tuple[Batch, asyncio.Task[None]]] = deque()
        self._retrying = 0  # writes waiting for ClickHouse to come back
        self._lag: dict[TopicPartition, int] = {}
        self._flush_lock = asyncio.Lock()
        self.inserted = 0
        self.dead_lettered = 0

    # -- ClickHouse side (blocking calls, run in threads)
    def _insert(self, table: str, lines: list[bytes], token: str | None) -> None:
        with self._clients_lock:
            client = self._clients.pop() if self._clients else None
        if client is None:
            client = self._client_factory()
        insert_settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if token:
            insert_settings["insert_deduplication_token"] = token
        started = time.perf_counter()
        try:
            # A memoryview, not bytes: clickhouse-connect then sends the INSERT statement as a URL parameter
            # instead of prepending it to the body, a copy of the whole body as costly as the join itself.
            # Not compressed: on a fast link lz4 costs both sides more CPU than the bytes it saves.
            client.raw_insert(
                f"{self.database}.{table}",
                insert_block=memoryview(b"\n".join(lines)),  # type: ignore[arg-type]  # urllib3 sends buffers
                settings=insert_settings,
                fmt="JSONEachRow",
            )
        except BaseException as exc:
            if is_data_error(exc):  # the rows were bad, the connection is fine
                self._put_back(client)
            else:  # the connection may be broken: the next insert opens a new one
                _close_quietly(client)
            raise
        self._put_back(client)
        SINK_INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        SINK_ROWS.labels(table).inc(len(lines))

    def _put_back(self, client: Client) -> None:
        with self._clients_lock:
            self._clients.append(client)

    def close(self) -> None:
        """Close the idle ClickHouse clients."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            _close_quietly(client)

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
        self._pause()
        log.warning("ClickHouse sink cannot write (%s); retrying in %.1fs", reason, delay)
        await asyncio.sleep(delay)
        return min(delay * 2, 10.0)

    async def _write(self, batch: Batch) -> None:
        """Insert every table's rows (the tables in parallel threads), retrying transient failures until
        they succeed; rows ClickHouse rejects as bad data are dead-lettered and the rest of their batch
        still lands. A retried table keeps its deduplication token, so a table whose insert landed but
        whose answer was lost is not seen twice."""
        delay = 0.2
        pending = dict(batch.rows)
        retrying = False
        try:
            while pending:
                tables = list(pending)
                results = await asyncio.gather(
                    *(self._write_table(table, pending[table], batch.token(table)) for table in tables),
                    return_exceptions=True,
                )
                failure: BaseException | None = None
                for table, result in zip(tables, results, strict=True):
                    if result is None:
                        pending.pop(table)
                    elif isinstance(result, ClickHouseError | OSError | KafkaError):
                        failure = result
                    else:
                        raise result
                if failure is not None:
                    if not retrying:
                        retrying = True
                        self._retrying += 1
                    delay = await self._retry_later(delay, failure)
        finally:
            if retrying:
                self._retrying -= 1
        if not self._retrying:
            self._resume()

    async def _write_table(self, table: str, lines: list[bytes], token: str) -> None:
        try:
            await asyncio.to_thread(self._insert, table, lines, token)
        except ClickHouseError as exc:
            if not is_data_error(exc):
                raise
            rejected = await asyncio.to_thread(self._isolate_bad_rows, table, lines)
            await self._dead_letter(table, rejected)

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
        """Insert what is buffered, wait for the batches in flight, and commit the offsets after them.
        One flush at a time: a flush asked for by a rebalance waits for the one in progress, so
        partitions move only after their rows landed."""
        async with self._flush_lock:
            self._start_write()
            await self._settle(keep=0)

    async def _dispatch(self) -> None:
        """Start inserting the buffered batch; if more than ``MAX_IN_FLIGHT`` batches are then in flight,
        wait for the oldest ones. Commits every batch that has landed, in order."""
        async with self._flush_lock:
            self._start_write()
            await self._settle(keep=MAX_IN_FLIGHT)

    def _start_write(self) -> None:
        batch, self._batch = self._batch, Batch()
        if batch.count:
            self._in_flight.append((batch, asyncio.create_task(self._write(batch))))

    async def _settle(self, keep: int) -> None:
        """Wait for the oldest batches in flight until at most ``keep`` remain, and commit each batch
        that has landed, oldest first, stopping at the first one still being written: an offset is
        committed only when every batch read before it is in ClickHouse."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0][1].done()):
            batch, task = self._in_flight[0]
            await asyncio.shield(task)  # a cancelled waiter (the sink stopping) leaves the write to _final_flush
            self._in_flight.popleft()
            await self._landed(batch)

    async def _landed(self, batch: Batch) -> None:
        if batch.oldest_ms is not None:
            STAGE_LATENCY.labels("sink").observe(max(0.0, time.time() - batch.oldest_ms / 1000))
        if self._consumer is not None:
            await self._commit(self._consumer, batch)
            self._record_lag(self._consumer, batch)
        self.inserted += batch.count
        log.debug("sink inserted %d rows", batch.count)

    async def _commit_landed(self) -> None:
        """Commit the batches that have landed since the last look (no waiting for those in flight)."""
        if self._in_flight and self._in_flight[0][1].done():
            async with self._flush_lock:
                await self._settle(keep=len(self._in_flight))

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
        for tp, committed in batch.commit_offsets().items():
            high = consumer.highwater(tp) if tp in owned else None
            if high is not None:
                self._lag[tp] = max(0, high - committed)
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
            isolation_level="read_committed",  # records of aborted transactions never land
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
                    self._batch.extend(tp, self.topic_tables[tp.topic], messages)
                    # Everything before the position has been returned, so is in this batch or an earlier one.
                    with contextlib.suppress(IllegalStateError):  # revoked meanwhile: commits stop at last + 1
                        self._batch.positions[tp] = await self._consumer.position(tp)
                full = self._batch.count >= self.batch_rows
                if full or (self._batch.count and time.monotonic() - self._batch.started >= self.batch_seconds):
                    await self._dispatch()
                else:
                    await self._commit_landed()
        except asyncio.CancelledError:
            await asyncio.shield(self._final_flush())
            raise
        finally:
            await self._consumer.stop()
            self.close()

    async def _final_flush(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=10)
        except (TimeoutError, ClickHouseError, OSError) as exc:
            log.warning("sink stopped with unflushed batches; they will be redelivered: %s", exc)
        finally:
            for _, task in self._in_flight:
                task.cancel()
            self._in_flight.clear()


def _close_quietly(client: Client) -> None:
    try:
        client.close()
    except Exception as exc:  # noqa: BLE001 - a client being dropped; nothing to do about it
        log.debug("closing a ClickHouse client: %s", exc)


class _FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move to another worker, land and commit what was read from them."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.sink.flush()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
