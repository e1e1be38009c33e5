"""The pipeline engine: batch stages on one consumer and one transactional producer, exactly once.

The high-rate stages (normalize, detect, correlate) run here instead of as Faust agents. One
thread takes batches of records straight from Kafka (``Consumer.consume``), hands each topic's
records to its stage as plain function calls, and produces the stages' outputs with one
transactional producer. Every ``commit_interval_s`` it commits a Kafka transaction (KIP-447)
holding the outputs, the changelog records of every state key that changed and the input
offsets: all of them become visible to ``read_committed`` consumers together, or none does.

- One consumer per hop (``<app id>-<hop>``: normalize, detect, correlate), so each hop's partitions
  are balanced over the workers on their own; all of them commit through the one producer (one
  ``send_offsets_to_transaction`` per group in the same transaction).
- Assignment is cooperative-sticky. Before partitions move away the engine commits what it has
  processed of them; a store partition is restored from its changelog before the first batch of
  its input partition (inside the assignment callback).
- A transaction that fails (a produce error, a commit refused) is aborted: working state is
  dropped and each partition is rewound to the first record of the aborted transaction, so the
  records are processed once more and their outputs appear once.
- The transactional id is stable per worker slot (``instance_id``), so a restarted worker fences
  its killed predecessor and aborts its open transaction at once instead of leaving consumers
  waiting for the transaction timeout.
- A stage function that raises on a key's state (``StateSpoiled``: the engine's stores do not copy the
  state before every call) aborts the transaction the same way; its records are processed again with
  careful stores for ``CAREFUL_S``, so the record that raised is dead-lettered by its stage against the
  state as it was, and nothing else is lost or counted twice.
- Anything unexpected restarts the engine (new clients, stores restored) with backoff; the Faust
  worker around it keeps running.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.kafka.clients import batch_consumer_config, confluent_config
from infra.kafka.limits import TopicLimits
from infra.settings import Settings
from streams import topics as names
from streams.metrics import PIPELINE_COMMIT_SECONDS, PIPELINE_RECORDS, PIPELINE_TRANSACTIONS
from streams.pipeline.records import check_fits
from streams.pipeline.state import StateSpoiled, Store, StoreAccess
from streams.pipeline.threads import ConsumerThread, skip_error

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Message]], None]
OUTPUT_TOPICS = (names.DLQ, names.EVENTS, names.FINDINGS, names.ALERTS, names.INVENTORY)
TIMEOUT_S = 30.0  # transactional API calls and admin requests
CAREFUL_S = 30.0  # after a StateSpoiled abort: stores copy the state around every call for this long


class EngineError(RuntimeError):
    """A failure the engine cannot go on from without restarting its clients."""


class Restart(EngineError):  # noqa: N818 - a signal, not a failure
    """The engine restarts its clients on purpose (after an aborted transaction, lost partitions)."""


class Output:
    """The stages' one way out: ``send`` produces into the open transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        check_fits(topic, key, value, headers, self.max_bytes(topic))
        self.engine.produce(topic, key, value, headers=headers)

    def max_bytes(self, topic: str) -> int:
        limits = self.engine.limits
        if limits is None:
            msg = "the engine's clients are not open"
            raise EngineError(msg)
        return limits.max_bytes(topic)


def hop_group(app_id: str, hop: str) -> str:
    """The consumer group of one hop of app ``app_id``'s pipeline (Faust's own group is ``app_id``)."""
    return f"{app_id}-{hop}"


def changelog_topic(settings: Settings, store: str) -> str:
    return f"{settings.worker.app_id}-{store}-changelog"


class InstanceSlot:
    """A worker slot on this machine: ``<state dir>/worker/<app id>/instance-N``, held by a file lock
    while the worker runs. Its name makes the transactional id, its folder holds on-disk stores."""

    def __init__(self, settings: Settings) -> None:
        base = settings.state_dir.resolve() / "worker" / settings.worker.app_id
        base.mkdir(parents=True, exist_ok=True)
        configured = settings.worker.instance_id
        self._lock: Any = None
        index = 0
        while True:
            name = configured or f"{socket.gethostname()}-{index}"
            path = base / (f"instance-{index}" if not configured else f"instance-{configured}")
            path.mkdir(parents=True, exist_ok=True)
            lock = (path / ".lock").open("a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                if configured:
                    msg = f"worker instance {configured!r} is already running in {path}"
                    raise EngineError(msg) from None
                index += 1
                continue
            self._lock, self.name, self.path = lock, name, path
            return

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class Engine(ConsumerThread):
    """Routes topics to stage handlers and runs them under Kafka transactions (see the module doc)."""

    thread_name = "aiwarden-pipeline"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        worker = settings.worker
        self.app_id = worker.app_id
        self.batch_records = worker.batch_records
        self.commit_interval_s = worker.commit_interval_s
        self.routes: dict[str, Handler] = {}
        self.hops: dict[str, list[str]] = {}  # hop -> its input topics
        self.internal_topics: dict[str, int] = {}  # topics the engine creates (name → partitions; 0: as input)
        self.stores: dict[str, Store] = {}
        self.assigned_callbacks: list[Callable[[set[str]], None]] = []
        self.tickers: list[Callable[[], bool]] = []
        self.output = Output(self)
        self.slot: InstanceSlot | None = None
        self._consumers: dict[str, Any] = {}  # hop -> consumer
        self._by_topic: dict[str, Any] = {}  # input topic -> its hop's consumer
        self._producer: Any = None
        self._abandoned: list[Any] = []  # producers stuck in a librdkafka call: kept alive, never used again
        self.limits: TopicLimits | None = None  # what each topic takes, read at every start of the clients
        self._restorer: Any = None
        self._fatal = False
        self._committed: dict[tuple[str, int], int] = {}  # input offsets committed by this engine
        self._idle_check = 0.0
        self._careful_until = 0.0  # stores are careful until then (after a StateSpoiled abort)
        self._reset_transaction()
        self.counters = {"records": 0, "transactions": 0, "aborted": 0, "restarts": 0, "restored": 0}

    # -- wiring (before start)
    def route(self, hop: str, topics: Iterable[str], handler: Handler) -> None:
        """Records of ``topics`` go to ``handler``; ``hop`` names the consumer group that reads them."""
        for topic in topics:
            self.routes[topic] = handler
            self.hops.setdefault(hop, []).append(topic)

    def internal_topic(self, name: str, partitions: int) -> str:
        self.internal_topics[name] = partitions
        return name

    def store(self, name: str, input_topic: str) -> StoreAccess:
        """A store partitioned like ``input_topic``, with its changelog topic."""
        store = Store(name, input_topic, changelog_topic(self.settings, name), self.settings.worker.state_store,
                      Path())
        store.set_careful(False)
        self.stores[name] = store
        return StoreAccess(store)

    def every_loop(self, ticker: Callable[[], bool]) -> None:
        """``ticker()`` on every turn of the loop, busy or idle (it keeps its own clock); it returns True
        when it changed state, which then goes out with the next commit."""
        self.tickers.append(ticker)

    def on_assigned(self, callback: Callable[[set[str]], None]) -> None:
        """``callback(topics)`` once per assignment, after the new partitions' stores are restored, with
        the topics they belong to."""
        self.assigned_callbacks.append(callback)

    # -- running in a thread
    def run(self) -> None:
        """Run until ``stop``; any failure restarts the clients after a backoff."""
        delay = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._run_once()
                return
            except Restart as exc:
                log.warning("pipeline engine restarting its clients: %s", exc)
                pause = 0.5
            except Exception:  # noqa: BLE001 - the engine restarts; the worker goes on
                if time.monotonic() - started > 300:  # it had been running well: start over with a short wait
                    delay = 1.0
                log.exception("pipeline engine failed; restarting in %.0fs", delay)
                pause, delay = delay, min(delay * 2, 30.0)
            self.counters["restarts"] += 1
            self._fatal = True
            self._close_clients()
            self._stop.wait(pause)

    def _run_once(self) -> None:
        self._fatal = False
        self._open_clients()
        consumers = list(self._consumers.values())
        busy = False
        try:
            while not self._stop.is_set():
                wait = 0.0 if busy else 0.05 / len(consumers)
                busy = False
                for consumer in consumers:
                    messages = consumer.consume(self.batch_records, wait)
                    self._raise_callback_error()
                    if messages:
                        busy = True
                        self._handle(messages)
                for ticker in self.tickers:
                    if ticker():
                        self._begin()
                now = time.monotonic()
                if self._open and now - self._opened >= self.commit_interval_s:
                    self.commit()
                elif not self._open and now - self._idle_check >= self.commit_interval_s:
                    # Idle: positions that moved over transaction markers only are committed too, so a
                    # drained partition's committed offset reaches its end.
                    self._idle_check = now
                    if self._moved_positions():
                        self._begin()
                        self.commit()
            self.commit()
        finally:
            self._close_clients()

    # -- clients
    def _open_clients(self) -> None:
        settings, worker = self.settings, self.settings.worker
        if self.slot is None:
            self.slot = InstanceSlot(settings)
        for store in self.stores.values():
            store.directory = self.slot.path / "stores"
        self._ensure_topics()
        # The stages' outputs in one request; any other topic is read when first produced to.
        self.limits = TopicLimits(settings, (*OUTPUT_TOPICS, *self.internal_topics))
        self._producer = Producer(confluent_config(settings, **{
            "transactional.id": self.transactional_id,
            "transaction.timeout.ms": int(worker.transaction_timeout_s * 1000),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "partitioner": "murmur2_random",  # the Java client's: keys land where Kafka Streams would put them
            "message.max.bytes": self.limits.client_max,
        }))
        # Fences a predecessor with the same transactional id and aborts its open transaction.
        self._producer.init_transactions(TIMEOUT_S)
        self._restorer = Consumer(confluent_config(settings, **{
            "group.id": f"{self.app_id}-restore", "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": "read_committed", "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10,
        }))
        self._callback_error = None
        for hop, hop_topics in self.hops.items():
            consumer = Consumer(batch_consumer_config(settings, hop_group(self.app_id, hop)))
            self._consumers[hop] = consumer
            self._by_topic.update(dict.fromkeys(hop_topics, consumer))
            consumer.subscribe(sorted(hop_topics), on_assign=self._guard(self._on_assign),
                               on_revoke=self._guard(self._on_revoke), on_lost=self._guard(self._on_lost))
        log.info("pipeline engine started: transactional id %s; %s", self.transactional_id,
                 "; ".join(f"group {hop_group(self.app_id, hop)}: {', '.join(t)}" for hop, t in self.hops.items()))

    @property
    def transactional_id(self) -> str:
        assert self.slot is not None  # noqa: S101 - set by _open_clients before any use
        return f"{self.app_id}-pipeline-{self.slot.name}"

    def _close_clients(self) -> None:
        consumers, self._consumers, self._by_topic = self._consumers, {}, {}
        for consumer in consumers.values():
            try:
                consumer.close()  # runs the revoke callback: commits unless the engine failed
            except (KafkaException, RuntimeError) as exc:
                log.warning("pipeline consumer close: %s", exc)
        if self._open:  # never committed: init_transactions of the next start aborts it on the broker
            self._rollback()
        for store in self.stores.values():
            for partition in list(store.partitions):
                store.close(partition)
        for client in (self._restorer,):
            if client is not None:
                client.close()
        self._restorer = None
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(5)
        if self._stop.is_set() and self.slot is not None:
            self.slot.release()
            self.slot = None

    def _ensure_topics(self) -> None:
        """Create the internal topics (re-key topics, compacted changelogs) that do not exist."""
        admin = AdminClient(confluent_config(self.settings))
        metadata = admin.list_topics(timeout=TIMEOUT_S).topics
        missing = sorted(set(self.routes) - set(metadata) - set(self.internal_topics))
        if missing:
            msg = f"topics missing: {', '.join(missing)} (run `aiwarden migrate`)"
            raise EngineError(msg)
        replication = self.settings.kafka.replication_factor
        wanted = [NewTopic(name, num_partitions=partitions or self.settings.kafka.partitions,
                           replication_factor=replication)
                  for name, partitions in self.internal_topics.items() if name not in metadata]
        for store in self.stores.values():
            if store.changelog in metadata:
                continue
            partitions = len(metadata[store.input_topic].partitions) if store.input_topic in metadata else (
                self.internal_topics.get(store.input_topic) or self.settings.kafka.partitions)
            wanted.append(NewTopic(store.changelog, num_partitions=partitions, replication_factor=replication,
                                   config={"cleanup.policy": "compact"}))
        if not wanted:
            return
        for name, future in admin.create_topics(wanted, operation_timeout=TIMEOUT_S).items():
            try:
                future.result(timeout=TIMEOUT_S)
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    # -- processing
    def _reset_transaction(self) -> None:
        self._open = False
        self._opened = 0.0
        self._first: dict[tuple[str, int], int] = {}  # first offset of the open transaction, per partition
        self._changelog_offsets: dict[tuple[str, int], int] = {}

    def _begin(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open, self._opened = True, time.monotonic()

    def _handle(self, messages: list[Any]) -> None:
        by_topic: dict[str, list[Any]] = {}
        first = self._first
        for message in messages:
            if skip_error(message, "pipeline"):
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            by_topic.setdefault(topic, []).append(message)
            tp = (topic, partition)
            if tp not in first:
                first[tp] = offset
        if not by_topic:
            return
        self._begin()
        for topic, batch in by_topic.items():
            try:
                self.routes[topic](batch)
            except StateSpoiled as exc:
                self._spoiled(exc)
                return
            PIPELINE_RECORDS.labels(topic).inc(len(batch))
            self.counters["records"] += len(batch)

    def _spoiled(self, exc: StateSpoiled) -> None:
        """A stage function raised on a state it may have half-changed: abort, and process the transaction's
        records again with careful stores (see the module docstring)."""
        log.warning("pipeline transaction aborted: %s (%r); its records are processed again with state copies",
                    exc, exc.__cause__)
        self._careful_until = time.monotonic() + CAREFUL_S
        for store in self.stores.values():  # before the abort: it may restart the engine
            store.set_careful(True)
        self._abort()

    def produce(self, topic: str, key: bytes | None, value: bytes | None, *, headers: Any = None,
                partition: int = -1, on_delivery: Any = None) -> None:
        """Produce into the open transaction; waits while the producer's queue is full."""
        self._begin()
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=on_delivery, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _changelog_delivered(self, error: Any, message: Any) -> None:
        if error is None:
            tp = (message.topic(), message.partition())
            self._changelog_offsets[tp] = max(self._changelog_offsets.get(tp, -1), message.offset())

    def commit(self) -> None:
        """Commit the open transaction (outputs, changed state, input offsets); an abortable failure
        aborts it and restarts the clients (``Restart``)."""
        if not self._open or self._producer is None:
            return
        started = time.perf_counter()
        changes: list[tuple[Store, int, list[tuple[str, bytes | None]]]] = []
        for store in self.stores.values():
            for partition, part in store.partitions.items():
                changed = part.changes()
                changes.append((store, partition, changed))
                for key, value in changed:
                    self.produce(store.changelog, key.encode(), value, partition=partition,
                                 on_delivery=self._changelog_delivered)
        # The consumer's positions, not last offset + 1: under read_committed they step over the
        # transaction markers, so a drained partition commits its end offset.
        moved = self._moved_positions()
        try:
            for consumer, offsets in moved:
                self._send_offsets(offsets, consumer.consumer_group_metadata())
            self._commit_transaction()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                log.warning("pipeline transaction aborted (%s); its records are processed again", error)
                self._abort()
                # A producer that failed a transaction is not trusted with the next one (librdkafka
                # was seen blocking in send_offsets_to_transaction after a broker restart): new clients.
                msg = f"after the aborted transaction ({error.str()})"
                raise Restart(msg) from exc
            raise
        self._committed.update({(tp.topic, tp.partition): tp.offset for _, offsets in moved for tp in offsets})
        for store, partition, changed in changes:
            offset = self._changelog_offsets.get((store.changelog, partition))
            store[partition].commit(changed, offset if store.kind == "rocksdb" else None)
        self._reset_transaction()
        if self._careful_until and time.monotonic() >= self._careful_until:
            self._careful_until = 0.0
            for store in self.stores.values():
                store.set_careful(False)
        self.counters["transactions"] += 1
        PIPELINE_TRANSACTIONS.labels("committed").inc()
        PIPELINE_COMMIT_SECONDS.observe(time.perf_counter() - started)

    def _moved_positions(self) -> list[tuple[Any, list[TopicPartition]]]:
        """Per consumer, its positions that differ from what was last committed."""
        committed = self._committed
        moved = []
        for consumer in self._consumers.values():
            offsets = [tp for tp in consumer.position(consumer.assignment())
                       if tp.offset >= 0 and committed.get((tp.topic, tp.partition)) != tp.offset]
            if offsets:
                moved.append((consumer, offsets))
        return moved

    def _send_offsets(self, offsets: list[TopicPartition], metadata: Any) -> None:
        """``send_offsets_to_transaction``, bounded: librdkafka 2.16 was seen blocking in it for minutes past
        its timeout after the group coordinator moved (a broker restart). The call runs in a helper thread;
        if it does not return in time, the producer is abandoned (kept referenced, never used again: the
        next one's ``init_transactions`` fences it) and the engine restarts with new clients."""
        producer = self._producer
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                producer.send_offsets_to_transaction(offsets, metadata, TIMEOUT_S)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the engine thread
                outcome.append(exc)

        helper = threading.Thread(target=call, name="aiwarden-send-offsets", daemon=True)
        helper.start()
        helper.join(TIMEOUT_S + 5)
        if helper.is_alive():
            self._abandoned.append(producer)
            self._producer = None
            self._fatal = True
            msg = f"send_offsets_to_transaction blocked for more than {TIMEOUT_S + 5:.0f}s (librdkafka)"
            raise Restart(msg)
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def _commit_transaction(self) -> None:
        for attempt in range(10):
            try:
                self._producer.commit_transaction(TIMEOUT_S)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not (isinstance(error, KafkaError) and error.retriable()) or attempt == 9:
                    raise
                log.warning("pipeline commit: %s; retrying", error)

    def _abort(self) -> None:
        """Abort the open transaction: drop working state, rewind each partition to the transaction's start."""
        rewind = dict(self._first)
        if self._producer is not None and not self._fatal:
            try:
                self._producer.abort_transaction(TIMEOUT_S)
            except KafkaException as exc:
                log.warning("pipeline abort failed (%s); restarting the engine", exc)
                self._fatal = True
        self._rollback()
        if self._fatal:
            msg = "transaction could not be aborted"
            raise EngineError(msg)
        for (topic, partition), offset in rewind.items():
            consumer = self._by_topic.get(topic)
            if consumer is not None and any(tp.topic == topic and tp.partition == partition
                                            for tp in consumer.assignment()):
                consumer.seek(TopicPartition(topic, partition, offset))

    def _rollback(self) -> None:
        for store in self.stores.values():
            for part in store.partitions.values():
                part.rollback()
        self._reset_transaction()
        self.counters["aborted"] += 1
        PIPELINE_TRANSACTIONS.labels("aborted").inc()

    # -- rebalance callbacks (run inside consume, on the engine's thread). An exception escaping a
    # callback comes out of librdkafka mangled (not an Exception): each keeps its own and the loop
    # raises it once consume returns.
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._restore([(store, tp.partition) for tp in partitions for store in self.stores.values()
                       if store.input_topic == tp.topic])
        if partitions:
            for callback in self.assigned_callbacks:
                callback({tp.topic for tp in partitions})
            log.info("pipeline assigned %s", _names(partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if not self._fatal and self._open:
            self.commit()  # what was processed of the partitions leaves with them
        self._drop(partitions)
        if partitions:
            log.info("pipeline revoked %s", _names(partitions))

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.warning("pipeline lost %s; aborting the open transaction", _names(partitions))
        if self._open:
            self._abort()
        self._drop(partitions)
        msg = "partitions lost (the group moved on without this worker)"
        raise Restart(msg)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._first.pop((tp.topic, tp.partition), None)
            self._committed.pop((tp.topic, tp.partition), None)
            for store in self.stores.values():
                if store.input_topic == tp.topic:
                    store.close(tp.partition)

    def _restore(self, wanted: list[tuple[Store, int]]) -> None:
        """Open store partitions and replay their changelogs (from a disk store's own offset, if any),
        all in one pass of the restore consumer."""
        started = time.monotonic()
        pending: dict[tuple[str, int], tuple[Store, int, int]] = {}  # changelog tp -> (store, partition, high)
        assignment = []
        for store, partition in wanted:
            part = store.open(partition)
            low, high = self._watermarks(TopicPartition(store.changelog, partition))
            applied = part.backend.changelog_offset()
            if applied is not None and applied + 1 < low:  # compaction removed records past the disk store
                store.close(partition)
                store.destroy(partition)
                part = store.open(partition)
                applied = None
            if high <= low or (applied is not None and applied + 1 >= high):
                continue
            pending[(store.changelog, partition)] = (store, partition, high)
            assignment.append(TopicPartition(store.changelog, partition,
                                             OFFSET_BEGINNING if applied is None else applied + 1))
        if not assignment:
            return
        by_changelog = {store.changelog: store for store, _ in wanted}
        restored: dict[tuple[str, int], int] = dict.fromkeys(pending, 0)
        self._restorer.assign(assignment)
        last_log = started
        try:
            while pending:
                changes: dict[tuple[str, int], list[tuple[str, bytes | None]]] = {}
                last: dict[tuple[str, int], int] = {}
                for message in self._restorer.consume(10_000, 0.05):
                    tp = (str(message.topic()), int(message.partition() or 0))
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001
                            raise KafkaException(error)
                        pending.pop(tp, None)
                        continue
                    changes.setdefault(tp, []).append((message.key().decode(), message.value()))
                    last[tp] = message.offset()
                for tp, changed in changes.items():
                    store = by_changelog[tp[0]]
                    store[tp[1]].commit(changed, last[tp] if store.kind == "rocksdb" else None)
                    restored[tp] += len(changed)
                    if tp in pending and last[tp] + 1 >= pending[tp][2]:
                        pending.pop(tp)
                if time.monotonic() - last_log > 10:
                    last_log = time.monotonic()
                    log.info("restoring %d changelog partitions: %d records so far", len(pending),
                             sum(restored.values()))
                if self._stop.is_set():
                    msg = "stopped while restoring"
                    raise EngineError(msg)
        finally:
            self._restorer.unassign()
        self.counters["restored"] += sum(restored.values())
        sizes = ", ".join(f"{by_changelog[t].name}[{p}] {n}" for (t, p), n in sorted(restored.items()))
        log.info("restored %d records in %.1fs: %s", sum(restored.values()), time.monotonic() - started, sizes)

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        """A partition's low and high watermarks, waiting out a leader not elected yet (a new topic, a
        restarted broker)."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                low, high = self._restorer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
                return int(low), int(high)
            except KafkaException as exc:
                error = exc.args[0]
                if time.monotonic() > deadline or (isinstance(error, KafkaError) and error.fatal()):
                    raise
                time.sleep(0.2)

    # -- introspection
    def state(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "stores": {name: store.size() for name, store in self.stores.items()},
            **self.counters,
        }


def _names(partitions: Sequence[TopicPartition]) -> str:
    grouped: dict[str, list[int]] = {}
    for tp in partitions:
        grouped.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{topic} {sorted(ps)}" for topic, ps in sorted(grouped.items()))


