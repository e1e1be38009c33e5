"""The ClickHouse sink: batches topic records into inserts and commits offsets after each insert.

It runs in a thread of its own on a confluent-kafka consumer (group ``<app_id>-sink``): librdkafka
fetches and decompresses in C without the GIL, so the sink costs the worker's pipeline engine (same
process) little more than handing the record values to the inserts. Offsets are committed by hand,
only after ClickHouse accepted every row before them. It reads with ``read_committed``: records of
aborted Kafka transactions never reach ClickHouse; its commits go to the consumer's position, past
the transaction markers that follow a batch's last record.

Inserts are pipelined: up to ``MAX_IN_FLIGHT`` batches are inserted at once (each table of a batch
in its own thread, each thread with its own client) while the next batch is read, and batches are
committed in the order they were read, so an offset is never committed before every row before it
landed. While ClickHouse is down the sink pauses its partitions and retries with backoff, holding
at most ``MAX_IN_FLIGHT + 1`` batches in memory.

Records are JSON objects whose keys are column names; they are inserted as ``JSONEachRow``
without a Python round trip (cheaper in total than converting them to Arrow in the worker: see
``bench/sink_formats.py``). Each insert carries a deduplication token derived from the offset ranges it
covers, and the tables are ReplacingMergeTree on the record id, so a redelivered batch is not seen
twice by hunters. Rows ClickHouse rejects as bad data are isolated and dead-lettered; the rest of
their batch lands.

Assignment is cooperative-sticky. Before partitions move away the sink inserts and commits what it
read of them (waiting at most ``REVOKE_WAIT_S``); partitions lost without a revoke, or revoked while
ClickHouse is down, are not committed by this member: whoever owns them next redelivers their rows,
which the deduplication and ``FINAL`` absorb.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from infra.clickhouse.client import connect
from infra.kafka.clients import batch_consumer_config, confluent_config
from infra.kafka.limits import TopicLimits
from infra.settings import Settings
from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from streams import topics
from streams.metrics import SINK_INSERT_SECONDS, SINK_LAG, SINK_ROWS, STAGE_LATENCY
from streams.pipeline.threads import ConsumerThread, skip_error

log = logging.getLogger(__name__)

# ClickHouse error codes that mean "this data is bad", not "the server is unwell".
DATA_ERROR_CODES = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 130, 131, 321, 349})
_CODE = re.compile(r"Code: (\d+)")
# Commit errors that mean the group moved the partitions on: the rows are in ClickHouse, the next owner
# redelivers them, and retrying cannot succeed.
REBALANCED = frozenset({KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                        KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST})  # noqa: SLF001

TOPIC_TABLES: dict[str, str] = {
    topics.EVENTS: "events",
    topics.DLQ: "dead_letters",
    topics.FINDINGS: "findings",
    topics.ALERTS: "alerts",
    topics.INVENTORY: "inventory",
    topics.VULNERABILITIES: "vulnerabilities",
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
REVOKE_WAIT_S = 30.0  # longest wait for in-flight inserts before revoked partitions move on
STOP_WAIT_S = 10.0  # longest wait for them when the sink stops

TP = tuple[str, int]  # (topic, partition)


def error_code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def is_data_error(exc: BaseException) -> bool:
    return isinstance(exc, DatabaseError) and not isinstance(exc, OperationalError) and (
        error_code(exc) in DATA_ERROR_CODES
    )


class Stopped(Exception):  # noqa: N818 - a signal, not a failure
    """The sink stopped while an insert was still waiting for ClickHouse."""


@dataclass
class Batch:
    """Rows per table, the offset range per partition they came from, and the assignment generation of
    each partition when it was read (a partition revoked or lost since then is not committed)."""

    rows: dict[str, list[bytes]] = field(default_factory=dict)
    ranges: dict[TP, tuple[int, int]] = field(default_factory=dict)
    generations: dict[TP, int] = field(default_factory=dict)
    count: int = 0
    started: float = field(default_factory=time.monotonic)
    oldest_ms: int | None = None  # the earliest Kafka timestamp seen (per run of a partition, not per record)
    # The consumer's positions when the batch was closed: past transaction markers that follow the
    # batch's last record, which consumers never receive (else a commit stays one short).
    positions: dict[TP, int] = field(default_factory=dict)
    futures: list[concurrent.futures.Future[None]] = field(default_factory=list)

    def saw_timestamp(self, timestamp_ms: int) -> None:
        if timestamp_ms > 0 and (self.oldest_ms is None or timestamp_ms < self.oldest_ms):
            self.oldest_ms = timestamp_ms

    def extend(self, tp: TP, generation: int, first: int, last: int, table: str, values: list[bytes]) -> None:
        """A run of one partition's records (offsets ``first`` to ``last``, in order) and their values:
        records without a value (tombstones) insert nothing but are covered by the range."""
        if values:
            if not self.count:  # the batch's age counts from its first row
                self.started = time.monotonic()
            self.rows.setdefault(table, []).extend(values)
            self.count += len(values)
        start, _ = self.ranges.get(tp, (first, first))
        self.ranges[tp] = (start, last)
        self.generations.setdefault(tp, generation)

    def token(self, table: str) -> str:
        spans = ",".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(self.ranges.items()))
        return hashlib.blake2b(f"{table}|{spans}".encode(), digest_size=16).hexdigest()

    def commit_offsets(self) -> dict[TP, int]:
        offsets = dict(self.positions)
        for tp, (_, last) in self.ranges.items():
            offsets[tp] = max(last + 1, offsets.get(tp, 0))
        return offsets

    @property
    def landed(self) -> bool:
        return all(future.done() for future in self.futures)


class ClickHouseSink(ConsumerThread):
    """Kafka topics → ClickHouse tables, at least once, without duplicates visible to hunters."""

    thread_name = "aiwarden-sink"

    def __init__(
        self,
        settings: Settings,
        topic_tables: dict[str, str] | None = None,
        client_factory: Callable[[], Client] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.topic_tables = topic_tables or TOPIC_TABLES
        self.database = settings.clickhouse.database
        self.batch_rows = settings.worker.sink_batch_rows
        self.batch_seconds = settings.worker.sink_batch_seconds
        self._client_factory = client_factory or (lambda: connect(settings))
        # Idle clients: an insert takes one (a ClickHouse session serves one query at a time) and puts it
        # back when the insert succeeded; a client whose insert failed is dropped (its connection may be dead).
        self._clients: list[Client] = []
        self._lock = threading.Lock()  # the idle clients, the retry count, the dead-letter producer
        self._writers: concurrent.futures.ThreadPoolExecutor | None = None
        self._consumer: Any = None
        self._producer: Producer | None = None
        self._dlq_limits: TopicLimits | None = None  # the dead-letter topic's real limit, read with the producer
        self._batch = Batch()
        self._in_flight: deque[Batch] = deque()
        self._retrying = 0  # table writes waiting for ClickHouse to come back
        self._paused: bool | None = False  # None: some partitions may differ (a new assignment)
        self._owned: dict[TP, int] = {}  # assigned partition -> generation of its assignment
        self._generation = 0
        self._committed: dict[TP, int] = {}  # offsets this member committed, per owned partition
        self._idle_check = 0.0
        self._lag: dict[TP, int] = {}
        self._give_up = threading.Event()  # retrying inserts stop waiting for ClickHouse (the sink stopped)
        self.inserted = 0
        self.dead_lettered = 0

    # -- running in a thread
    def start(self) -> None:
        """Run in a thread; ``stop`` inserts and commits what was read (waiting at most ``STOP_WAIT_S`` for
        ClickHouse), then leaves the group."""
        self._give_up.clear()
        super().start()

    def state(self) -> dict[str, Any]:
        return {"alive": self.alive, "inserted": self.inserted, "dead_lettered": self.dead_lettered,
                "partitions": len(self._owned), "retrying": self._retrying, "in_flight": len(self._in_flight)}

    def run(self) -> None:
        """Consume until ``stop``; a failure starts the consumer again after a backoff (what was not
        committed is redelivered)."""
        delay = 1.0
        try:
            while not self._stop.is_set():
                try:
                    self._run_once()
                except Exception:  # noqa: BLE001 - the sink starts over; the worker goes on
                    log.exception("ClickHouse sink failed; restarting in %.0fs", delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            writers, self._writers = self._writers, None
            if writers is not None:
                writers.shutdown(wait=False, cancel_futures=True)
            self.close()

    def _run_once(self) -> None:
        self._reset()
        consumer = Consumer(batch_consumer_config(
            self.settings, f"{self.settings.worker.app_id}-sink",
            # A batch is up to sink_batch_rows records of ~2 KB: prefetch about that much.
            **{"queued.max.messages.kbytes": 32_768, "fetch.max.bytes": 64 * 1024 * 1024}))
        self._consumer = consumer
        consumer.subscribe(list(self.topic_tables), on_assign=self._guard(self._on_assign),
                           on_revoke=self._guard(self._on_revoke), on_lost=self._guard(self._on_lost))
        try:
            while not self._stop.is_set():
                self._step(consumer)
            self.flush(STOP_WAIT_S)
        finally:
            if self._in_flight:
                log.warning("ClickHouse sink stopped with %d batches not landed; they will be redelivered",
                            len(self._in_flight))
            self._give_up.set()  # inserts still retrying give up: their rows are redelivered
            try:
                consumer.close()  # leaves the group; the revoke callback finds nothing left to flush
            except (KafkaException, RuntimeError) as exc:
                log.warning("sink consumer close: %s", exc)
            self._consumer = None

    def _reset(self) -> None:
        self._give_up.set()
        for batch in self._in_flight:
            concurrent.futures.wait(batch.futures, timeout=STOP_WAIT_S)
        self._give_up.clear()
        self._batch, self._in_flight = Batch(), deque()
        self._owned, self._committed, self._lag = {}, {}, {}
        self._paused, self._callback_error = False, None

    def _step(self, consumer: Any) -> None:
        """One turn: commit what landed, start inserting a due batch, read more unless full or retrying."""
        self._settle()
        batch = self._batch
        due = batch.count >= self.batch_rows or (
            batch.count and time.monotonic() - batch.started >= self.batch_seconds)
        if due and len(self._in_flight) < MAX_IN_FLIGHT and not self._retrying:
            self._dispatch()
        elif not batch.count and not self._in_flight and time.monotonic() - self._idle_check >= self.batch_seconds:
            self._idle_check = time.monotonic()
            self._commit_moved()
        hold = bool(self._retrying) or self._batch.count >= self.batch_rows
        self._pause(hold)
        if hold and self._in_flight:
            concurrent.futures.wait(self._in_flight[0].futures, timeout=0.1)
        messages = consumer.consume(max(1, self.batch_rows - self._batch.count), 0.0 if hold else 0.2)
        self._raise_callback_error()
        if messages:
            self._add(messages)

    def _add(self, messages: Sequence[Any]) -> None:
        """Add consumed records to the buffered batch, a run of one partition at a time (librdkafka returns
        each partition's records in runs): per record only its value and its partition are read (and on
        aiwarden.findings its headers: the correlate stage's re-keyed copies are not rows)."""
        last: TP | None = None
        head = tail = None
        run: list[bytes] = []
        findings = False
        for message in messages:
            if message.error() is not None and skip_error(message, "sink"):
                continue
            tp = (message.topic(), message.partition())
            if tp != last:
                if last is not None:
                    self._add_run(last, head, tail, run)
                last, head, run = tp, message, []
                findings = tp[0] == topics.FINDINGS
            value = message.value()
            if value is not None and not (findings and topics.forwarded(message)):  # a re-keyed copy: once is enough
                run.append(value)
            tail = message
        if last is not None:
            self._add_run(last, head, tail, run)

    def _add_run(self, tp: TP, head: Any, tail: Any, values: list[bytes]) -> None:
        self._batch.saw_timestamp(head.timestamp()[1])
        self._batch.extend(tp, self._owned.get(tp, -1), head.offset(), tail.offset(), self.topic_tables[tp[0]], values)

    # -- writing
    def _dispatch(self) -> None:
        """Close the buffered batch and start inserting it (each table in a thread of its own)."""
        batch, self._batch = self._batch, Batch()
        consumer = self._consumer
        if consumer is not None:
            # Everything before a position has been returned by consume, so is in this batch or an earlier one.
            for tp in consumer.position(consumer.assignment()):
                key = (tp.topic, tp.partition)
                if tp.offset >= 0 and key in self._owned:
                    batch.positions[key] = tp.offset
                    batch.generations.setdefault(key, self._owned[key])
        if not batch.ranges and not batch.positions:
            return
        if self._writers is None:
            self._writers = concurrent.futures.ThreadPoolExecutor(
                max_workers=(MAX_IN_FLIGHT + 1) * len(self.topic_tables), thread_name_prefix="aiwarden-sink-insert")
        batch.futures = [self._writers.submit(self._write_table, table, lines, batch.token(table))
                         for table, lines in batch.rows.items()]
        self._in_flight.append(batch)

    def _write_table(self, table: str, lines: list[bytes], token: str) -> None:
        """Insert one table's rows, retrying transient failures with backoff until they land (or the sink
        stops); rows ClickHouse rejects as bad data are dead-lettered and the rest lands. A retried insert
        keeps its deduplication token, so an insert that landed but whose answer was lost is not seen twice."""
        delay, retrying = 0.2, False
        try:
            while True:
                try:
                    try:
                        self._insert(table, lines, token)
                    except ClickHouseError as exc:
                        if not is_data_error(exc):
                            raise
                        self._dead_letter(table, self._isolate_bad_rows(table, lines))
                    return
                except (ClickHouseError, OSError, KafkaException) as exc:
                    if not retrying:
                        retrying = True
                        self._count_retrying(1)
                    log.warning("ClickHouse sink cannot write %s (%s); retrying in %.1fs", table, exc, delay)
                    if self._give_up.wait(delay):
                        raise Stopped(table) from exc
                    delay = min(delay * 2, 10.0)
        finally:
            if retrying:
                self._count_retrying(-1)

    def _count_retrying(self, step: int) -> None:
        with self._lock:
            self._retrying += step

    def _insert(self, table: str, lines: list[bytes], token: str | None) -> None:
        with self._lock:
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
        with self._lock:
            self._clients.append(client)

    def close(self) -> None:
        """Close the idle ClickHouse clients and the dead-letter producer."""
        with self._lock:
            clients, self._clients = self._clients, []
            producer, self._producer = self._producer, None
        for client in clients:
            _close_quietly(client)
        if producer is not None:
            producer.flush(10)

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

    def _dead_letter(self, table: str, rejected: list[tuple[bytes, str]]) -> None:
        """Produce the rejected rows to the dead-letter topic and wait until Kafka has them all."""
        if not rejected:
            return
        if table == TOPIC_TABLES[topics.DLQ]:
            # A dead letter the dead_letters table refuses would come straight back: log it instead.
            for line, reason in rejected:
                log.error("dead letter refused by ClickHouse (%s): %r", reason, line[:2000])
        else:
            self._produce_dead_letters(table, rejected)
        with self._lock:
            self.dead_lettered += len(rejected)

    def _produce_dead_letters(self, table: str, rejected: list[tuple[bytes, str]]) -> None:
        with self._lock:
            if self._producer is None:
                self._dlq_limits = TopicLimits(self.settings, (topics.DLQ,))
                self._producer = Producer(confluent_config(self.settings, acks="all", **{
                    "enable.idempotence": True, "message.max.bytes": self._dlq_limits.client_max}))
            assert self._dlq_limits is not None  # noqa: S101 - set with the producer
            producer, max_bytes = self._producer, self._dlq_limits.max_bytes(topics.DLQ)
        failures: list[Any] = []
        for line, reason in rejected:
            letter = DeadLetter.of(reason, table, "sink", line, {"table": table}, max_bytes)
            producer.produce(topics.DLQ, encode(letter.to_dict()),
                             on_delivery=lambda error, _message: failures.append(error) if error else None)
        left = producer.flush(30)
        if left or failures:
            msg = f"dead letters of {table} not delivered ({left} pending, first error: {failures[:1]})"
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, msg))  # noqa: SLF001

    # -- committing, in the order the batches were read
    def flush(self, timeout_s: float | None = None) -> bool:
        """Insert what is buffered and commit each batch as it lands, oldest first; waits at most
        ``timeout_s`` (None: until they landed). True when nothing is left in flight."""
        self._dispatch()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._in_flight:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = concurrent.futures.wait(self._in_flight[0].futures, timeout=remaining)
            self._settle()
            if self._in_flight and remaining == 0.0:
                return False
        if self._consumer is not None:
            self._commit_moved()
        return True

    def _settle(self) -> None:
        """Commit each batch that has landed, oldest first, stopping at the first one still being written:
        an offset is committed only when every batch read before it is in ClickHouse."""
        while self._in_flight and self._in_flight[0].landed:
            batch = self._in_flight.popleft()
            for future in batch.futures:
                error = future.exception()
                if error is not None:  # not a ClickHouse failure (those are retried): the sink starts over
                    raise error
            self._landed(batch)

    def _landed(self, batch: Batch) -> None:
        if batch.oldest_ms is not None:
            STAGE_LATENCY.labels("sink").observe(max(0.0, time.time() - batch.oldest_ms / 1000))
        self._commit(batch)
        self._record_lag(batch)
        self.inserted += batch.count
        log.debug("sink inserted %d rows", batch.count)

    def _commit(self, batch: Batch) -> None:
        """Commit after the insert, the partitions this member still owns since it read them. A commit
        the group refuses (the partitions moved) is not fatal: the rows are in ClickHouse and whoever reads
        the partitions next redelivers them, which ReplacingMergeTree absorbs. Retried while transient."""
        owned, committed = self._owned, self._committed
        offsets = {tp: offset for tp, offset in batch.commit_offsets().items()
                   if owned.get(tp, -2) == batch.generations.get(tp) and committed.get(tp) != offset}
        if offsets and self._consumer is not None:
            self._commit_offsets(offsets, batch.count)

    def _commit_moved(self) -> None:
        """Idle: commit positions that moved over transaction markers only, so that a drained partition's
        committed offset reaches the partition's end."""
        consumer = self._consumer
        if consumer is None or not self._owned:
            return
        moved = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(consumer.assignment())
                 if tp.offset >= 0 and self._committed.get((tp.topic, tp.partition)) != tp.offset
                 and (tp.topic, tp.partition) in self._owned}
        if moved:
            self._commit_offsets(moved, 0)

    def _commit_offsets(self, offsets: dict[TP, int], rows: int) -> None:
        delay = 0.2
        for _ in range(8):
            try:
                result = self._consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
                failed = [tp for tp in result or () if tp.error is not None]
                if not failed:
                    self._committed.update(offsets)
                    return
                error = failed[0].error
            except KafkaException as exc:
                error = exc.args[0]
            if error.code() == KafkaError._NO_OFFSET:  # noqa: SLF001 - nothing new to commit
                return
            if error.code() in REBALANCED:
                log.warning("sink commit refused after a rebalance; the rows will be redelivered: %s", error)
                return
            if not error.retriable() and error.code() != KafkaError._TIMED_OUT:  # noqa: SLF001
                break
            log.warning("sink commit failed (%s); retrying in %.1fs", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        log.warning("sink commit kept failing; %d rows will be redelivered", rows)

    def _record_lag(self, batch: Batch) -> None:
        """``SINK_LAG`` per topic from the high-water marks librdkafka already has (no request), over the
        partitions this member still owns (a rebalance may have moved some while the batch was written)."""
        consumer, owned = self._consumer, self._owned
        self._lag = {tp: lag for tp, lag in self._lag.items() if tp in owned}
        if consumer is not None:
            for tp, offset in batch.commit_offsets().items():
                if tp in owned:
                    _, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                    if high is not None and high >= 0:
                        self._lag[tp] = max(0, high - offset)
        per_topic = dict.fromkeys(self.topic_tables, 0)
        for (topic, _), lag in self._lag.items():
            per_topic[topic] = per_topic.get(topic, 0) + lag
        for topic, lag in per_topic.items():
            SINK_LAG.labels(topic).set(lag)

    def _pause(self, hold: bool) -> None:
        consumer = self._consumer
        if consumer is None or hold == self._paused:
            return
        assignment = consumer.assignment()
        if hold:
            consumer.pause(assignment)
        else:
            consumer.resume(assignment)
        self._paused = hold

    # -- rebalance callbacks (run inside consume, on the sink's thread)
    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._generation += 1
        for tp in partitions:
            self._owned[(tp.topic, tp.partition)] = self._generation
        self._paused = None  # new partitions start fetching: the next turn pauses or resumes them all

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """Before partitions move to another member, land and commit what was read from them."""
        if partitions and not self.flush(0.0 if self._give_up.is_set() else REVOKE_WAIT_S):
            log.warning("ClickHouse sink gave up partitions with rows not landed; they will be redelivered")
        self._forget(partitions)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """The group moved on without this member: nothing of these partitions may be committed."""
        log.warning("ClickHouse sink lost %d partitions; their rows not committed will be redelivered",
                    len(partitions))
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._owned.pop(key, None)
            self._committed.pop(key, None)


def _close_quietly(client: Client) -> None:
    try:
        client.close()
    except Exception as exc:  # noqa: BLE001 - a client being dropped; nothing to do about it
        log.debug("closing a ClickHouse client: %s", exc)
