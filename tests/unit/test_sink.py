"""The ClickHouse sink's batching, ordering, commits, rebalances, retries and rejected rows, with fakes for
ClickHouse and for the confluent-kafka consumer (the real services are in tests/integration/test_sink.py).
Each test drives the sink's own loop step (``_step``) or its rebalance callbacks as librdkafka would."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from infra.settings import Settings
from streams import topics
from streams.metrics import value
from streams.pipeline.sink import ClickHouseSink, Stopped
from tests.unit.pipeline_fakes import Message

pytestmark = pytest.mark.unit


def settings(**worker: Any) -> Settings:
    return Settings(kafka={"bootstrap_servers": "unused:9092"}, worker={"sink_batch_seconds": 0.01, **worker})


class FakeClient:
    """Records each insert (table, rows); rows containing a ``fail_on`` marker fail as ClickHouse would."""

    def __init__(self) -> None:
        self.inserts: list[tuple[str, int, bytes]] = []
        self.tokens: list[str] = []
        self.down = threading.Event()  # set: every insert fails as when ClickHouse is unreachable
        self.lock = threading.Lock()

    def raw_insert(self, table: str, insert_block: bytes | memoryview, settings: dict[str, Any], **_: Any) -> None:
        body = bytes(insert_block)
        if self.down.is_set():
            raise OperationalError("Error HTTPConnectionPool: Connection refused")
        if b"bad-row" in body:
            raise DatabaseError("Received ClickHouse exception, code: 27, server response: Code: 27. "
                                "DB::Exception: Cannot parse input (CANNOT_PARSE_INPUT_ASSERTION_FAILED)")
        with self.lock:
            self.inserts.append((table, body.count(b"\n") + 1, body))
            self.tokens.append(settings.get("insert_deduplication_token", ""))

    def close(self) -> None:
        return None


class Gated(FakeClient):
    """Inserts of rows containing ``marker`` (every insert: b"") wait until ``release`` is set."""

    def __init__(self, marker: bytes = b"") -> None:
        super().__init__()
        self.marker = marker
        self.release = threading.Event()

    def raw_insert(self, table: str, insert_block: bytes | memoryview, settings: dict[str, Any], **_: Any) -> None:
        if self.marker in bytes(insert_block):
            assert self.release.wait(10)
        super().raw_insert(table, insert_block, settings)


class FakeConsumer:
    """The surface of ``confluent_kafka.Consumer`` the sink uses: assignment, positions, commits, pauses."""

    def __init__(self, high: dict[tuple[str, int], int]) -> None:
        self.high = high
        self.assigned: list[tuple[str, int]] = list(high)
        self.positions: dict[tuple[str, int], int] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.paused: set[tuple[str, int]] = set()
        self.queue: list[Message] = []
        self.refuse: KafkaError | None = None

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), -1001))
                for tp in partitions]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert asynchronous is False
        if self.refuse is not None:
            raise KafkaException(self.refuse)
        for tp in offsets:
            assert (tp.topic, tp.partition) in self.assigned, f"committed {tp} it does not own"
            self.committed[(tp.topic, tp.partition)] = tp.offset
        return offsets

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "the sink reads the cached high-water mark (no request per batch)"
        return 0, self.high.get((tp.topic, tp.partition), -1)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        ready = [m for m in self.queue if (m.topic(), m.partition()) not in self.paused][:num_messages]
        for message in ready:
            self.queue.remove(message)
            if message.error() is None:
                self.positions[(message.topic(), message.partition())] = message.offset() + 1
        return ready

    def feed(self, topic: str, partition: int, offsets: range, body: bytes = b"row") -> None:
        for offset in offsets:
            self.queue.append(Message(orjson.dumps({"id": f"{body.decode()}-{offset}"}), partition=partition,
                                      offset=offset, topic=topic))


def sink_with(client: FakeClient, consumer: FakeConsumer, **worker: Any) -> ClickHouseSink:
    sink = ClickHouseSink(settings(**worker), client_factory=lambda: client)  # type: ignore[arg-type, return-value]
    sink._consumer = consumer  # noqa: SLF001
    sink._on_assign(consumer, consumer.assignment())  # noqa: SLF001
    return sink


def run_until(sink: ClickHouseSink, consumer: FakeConsumer, done: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the sink did not get there"
        sink._step(consumer)  # noqa: SLF001


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def test_sink_records_rows_insert_time_lag_and_latency() -> None:
    client = FakeClient()
    events, findings = (topics.EVENTS, 0), (topics.FINDINGS, 1)
    consumer = FakeConsumer({events: 110, findings: 7})
    sink = sink_with(client, consumer, sink_batch_rows=100)
    rows_before = {table: value("aiwarden_sink_rows_total", table=table) for table in ("events", "findings")}
    inserts_before = value("aiwarden_sink_insert_seconds_count", table="events")
    latency_before = value("aiwarden_stage_latency_seconds_count", stage="sink")
    consumer.feed(topics.EVENTS, 0, range(90, 100))
    consumer.feed(topics.FINDINGS, 1, range(4, 5))
    for message in consumer.queue[:1]:
        message._timestamp = int(time.time() * 1000) - 2000  # noqa: SLF001
    sink._step(consumer)  # noqa: SLF001
    assert sink.flush(10)
    assert sorted((t, n) for t, n, _ in client.inserts) == [("aiwarden.events", 10), ("aiwarden.findings", 1)]
    assert consumer.committed == {events: 100, findings: 5}
    assert value("aiwarden_sink_rows_total", table="events") == rows_before["events"] + 10
    assert value("aiwarden_sink_rows_total", table="findings") == rows_before["findings"] + 1
    assert value("aiwarden_sink_insert_seconds_count", table="events") == inserts_before + 1
    assert value("aiwarden_sink_lag_records", topic=topics.EVENTS) == 10  # 110 - 100
    assert value("aiwarden_sink_lag_records", topic=topics.FINDINGS) == 2  # 7 - 5
    assert value("aiwarden_stage_latency_seconds_count", stage="sink") == latency_before + 1
    assert value("aiwarden_stage_latency_seconds_sum", stage="sink") >= 2.0
    assert sink.inserted == 11


def test_sink_splits_batches_at_batch_rows_and_pipelines_them() -> None:
    client = FakeClient()
    consumer = FakeConsumer({(topics.EVENTS, 0): 250})
    sink = sink_with(client, consumer, sink_batch_rows=100)
    consumer.feed(topics.EVENTS, 0, range(250))
    run_until(sink, consumer, lambda: not consumer.queue and sink.inserted >= 200)
    assert sink.flush(10)
    assert [n for _, n, _ in client.inserts] == [100, 100, 50]
    assert len(set(client.tokens)) == 3, "each batch has its own deduplication token"
    assert consumer.committed == {(topics.EVENTS, 0): 250}


def test_sink_commits_batches_in_read_order_when_a_later_one_lands_first() -> None:
    """Two batches are inserted at once; the second lands while the first is still being written. Its
    offsets are committed only after the first landed: a commit covers every row before it."""
    client = Gated(b"first")
    key = (topics.ALERTS, 0)
    consumer = FakeConsumer({key: 2})
    sink = sink_with(client, consumer, sink_batch_rows=1)
    consumer.feed(topics.ALERTS, 0, range(0, 1), b"first")
    consumer.feed(topics.ALERTS, 0, range(1, 2), b"second")
    run_until(sink, consumer, lambda: len(sink._in_flight) == 2)  # noqa: SLF001
    assert sink._in_flight[1].futures[0].result(10) is None  # noqa: SLF001  # the second landed
    sink._step(consumer)  # noqa: SLF001
    assert consumer.committed == {}, "the second batch was committed before the first landed"
    assert sink.inserted == 0
    client.release.set()
    assert sink.flush(10)
    assert consumer.committed == {key: 2}
    assert sink.inserted == 2


def test_sink_commits_past_the_transaction_marker_after_its_rows() -> None:
    """On a topic written in transactions the consumer's position after a fetch is past the commit marker
    that follows the last record (consumers never receive markers): the commit goes there, not one short."""
    client = FakeClient()
    key = (topics.EVENTS, 0)
    consumer = FakeConsumer({key: 12})
    sink = sink_with(client, consumer)
    consumer.feed(topics.EVENTS, 0, range(10))
    sink._step(consumer)  # noqa: SLF001
    consumer.positions[key] = 11  # offset 10 is the marker
    assert sink.flush(10)
    assert consumer.committed == {key: 11}
    assert value("aiwarden_sink_lag_records", topic=topics.EVENTS) == 1  # 12 - 11
    # Idle, the position moves over another marker only: it is committed too (the partition's end).
    consumer.positions[key] = 12
    sink._idle_check = 0.0  # noqa: SLF001
    sink._step(consumer)  # noqa: SLF001
    assert consumer.committed == {key: 12}
    assert not client.inserts[1:], "nothing to insert for a marker"


def test_sink_flushes_and_commits_revoked_partitions_before_they_move() -> None:
    """A revoke mid-batch (rows buffered, a batch in flight): the sink lands and commits what it read of
    the partitions before they go; what it keeps goes on."""
    client = Gated()
    kept, moved = (topics.EVENTS, 0), (topics.EVENTS, 1)
    consumer = FakeConsumer({kept: 100, moved: 100})
    sink = sink_with(client, consumer, sink_batch_rows=5)
    consumer.feed(topics.EVENTS, 0, range(5))
    run_until(sink, consumer, lambda: len(sink._in_flight) == 1)  # noqa: SLF001
    consumer.feed(topics.EVENTS, 1, range(3))
    sink.batch_seconds = 60.0  # the second batch stays buffered
    run_until(sink, consumer, lambda: not consumer.queue)
    assert sink._batch.count == 3  # noqa: SLF001
    threading.Timer(0.2, client.release.set).start()
    sink._on_revoke(consumer, [tp(*moved)])  # noqa: SLF001
    assert consumer.committed == {kept: 5, moved: 3}
    consumer.assigned.remove(moved)
    assert sink.inserted == 8
    assert not sink._in_flight and not sink._batch.count  # noqa: SLF001
    # What comes later of the revoked partition is not this member's to commit.
    consumer.positions[moved] = 50
    consumer.feed(topics.EVENTS, 0, range(5, 7))
    run_until(sink, consumer, lambda: not consumer.queue)
    assert sink.flush(10)
    assert consumer.committed == {kept: 7, moved: 3}


def test_sink_never_commits_partitions_lost_or_reassigned_while_their_batch_was_written() -> None:
    """Partitions lost (the group moved on without this member) while their rows were being written: the
    rows land, but neither their offsets nor the partition's later position are committed, even when the
    partition comes back in a new assignment (its new owner may have committed further in between)."""
    client = Gated()
    kept, lost = (topics.ALERTS, 0), (topics.ALERTS, 1)
    consumer = FakeConsumer({kept: 3, lost: 9})
    sink = sink_with(client, consumer, sink_batch_rows=4)
    consumer.feed(topics.ALERTS, 0, range(2))
    consumer.feed(topics.ALERTS, 1, range(2))
    run_until(sink, consumer, lambda: len(sink._in_flight) == 1)  # noqa: SLF001
    sink._on_lost(consumer, [tp(*lost)])  # noqa: SLF001
    sink._on_assign(consumer, [tp(*lost)])  # noqa: SLF001  # back in a later assignment,
    consumer.positions.pop(lost)  # which starts from the group's committed offset, not known yet
    client.release.set()
    assert sink.flush(10)
    assert [n for _, n, _ in client.inserts] == [4]
    assert consumer.committed == {kept: 2}


def test_sink_pauses_and_retries_while_clickhouse_is_down_then_commits() -> None:
    client = FakeClient()
    client.down.set()
    key = (topics.EVENTS, 0)
    consumer = FakeConsumer({key: 20})
    sink = sink_with(client, consumer, sink_batch_rows=10)
    consumer.feed(topics.EVENTS, 0, range(20))
    run_until(sink, consumer, lambda: sink._retrying > 0)  # noqa: SLF001
    run_until(sink, consumer, lambda: consumer.paused == {key})
    assert consumer.committed == {}
    # A partition assigned while ClickHouse is down is held back too, and resumed with the others.
    added = (topics.EVENTS, 1)
    consumer.assigned.append(added)
    sink._on_assign(consumer, [tp(*added)])  # noqa: SLF001
    sink._step(consumer)  # noqa: SLF001
    assert consumer.paused == {key, added}
    assert consumer.committed == {}
    client.down.clear()
    run_until(sink, consumer, lambda: consumer.committed.get(key) == 20 and not consumer.paused, timeout_s=30)
    assert [n for _, n, _ in client.inserts] == [10, 10]
    assert sink._retrying == 0  # noqa: SLF001


def test_rows_clickhouse_rejects_are_dead_lettered_and_the_rest_of_the_batch_lands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = FakeClient()
    key = (topics.EVENTS, 0)
    consumer = FakeConsumer({key: 20})
    sink = sink_with(client, consumer, sink_batch_rows=20)
    letters: list[tuple[str, list[tuple[bytes, str]]]] = []
    monkeypatch.setattr(sink, "_produce_dead_letters", lambda table, rejected: letters.append((table, rejected)))
    consumer.feed(topics.EVENTS, 0, range(0, 7))
    consumer.feed(topics.EVENTS, 0, range(7, 8), b"bad-row")
    consumer.feed(topics.EVENTS, 0, range(8, 20))
    sink._step(consumer)  # noqa: SLF001
    assert sink.flush(10)
    assert sum(n for _, n, _ in client.inserts) == 19
    assert [(table, [row for row, _ in rejected]) for table, rejected in letters] == [
        ("events", [b'{"id":"bad-row-7"}'])]
    assert "Code: 27" in letters[0][1][0][1]
    assert sink.dead_lettered == 1
    assert consumer.committed == {key: 20}


def test_a_commit_refused_after_a_rebalance_is_not_fatal() -> None:
    client = FakeClient()
    key = (topics.EVENTS, 0)
    consumer = FakeConsumer({key: 5})
    sink = sink_with(client, consumer)
    consumer.refuse = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)
    consumer.feed(topics.EVENTS, 0, range(5))
    sink._step(consumer)  # noqa: SLF001
    assert sink.flush(10)
    assert sink.inserted == 5
    assert consumer.committed == {}


def test_sink_runs_and_stops_as_a_thread_when_kafka_is_unreachable() -> None:
    """The worker starts and stops the sink like the engine: stop returns even if Kafka never answered."""
    sink = ClickHouseSink(Settings(kafka={"bootstrap_servers": "127.0.0.1:1"}), client_factory=FakeClient)  # type: ignore[arg-type]
    sink.start()
    assert sink.alive
    started = time.monotonic()
    sink.stop(30)
    assert not sink.alive
    assert time.monotonic() - started < 30
    assert sink.state()["alive"] is False


def test_runs_of_partitions_tombstones_and_partition_ends_make_one_batch() -> None:
    """Records come in runs per partition, interleaved; a tombstone inserts nothing but its offset is
    committed; a partition-end event is no record."""

    class PartitionEnd(Message):
        def error(self) -> Any:
            return KafkaError(KafkaError._PARTITION_EOF)  # noqa: SLF001

    client = FakeClient()
    a, b = (topics.EVENTS, 0), (topics.EVENTS, 1)
    consumer = FakeConsumer({a: 10, b: 10})
    sink = sink_with(client, consumer)
    consumer.feed(topics.EVENTS, 0, range(0, 3))
    consumer.feed(topics.EVENTS, 1, range(5, 7))
    consumer.queue.append(Message(None, partition=1, offset=7, topic=topics.EVENTS))  # a tombstone
    consumer.feed(topics.EVENTS, 0, range(3, 4))
    consumer.queue.append(PartitionEnd(None, partition=0, offset=4, topic=topics.EVENTS))
    sink._step(consumer)  # noqa: SLF001
    batch = sink._batch  # noqa: SLF001
    assert batch.count == 6
    assert batch.ranges == {a: (0, 3), b: (5, 7)}
    assert sink.flush(10)
    assert consumer.committed == {a: 4, b: 8}
    assert [n for _, n, _ in client.inserts] == [6]


def test_a_sink_stopping_while_clickhouse_is_down_commits_nothing_and_lets_its_inserts_go() -> None:
    """Stopping waits a bounded time for ClickHouse; what did not land is not committed (redelivered to
    whoever reads the partitions next) and the retrying inserts end."""
    client = FakeClient()
    client.down.set()
    key = (topics.EVENTS, 0)
    consumer = FakeConsumer({key: 5})
    sink = sink_with(client, consumer)
    consumer.feed(topics.EVENTS, 0, range(5))
    run_until(sink, consumer, lambda: sink._retrying > 0)  # noqa: SLF001
    started = time.monotonic()
    assert sink.flush(0.5) is False
    assert time.monotonic() - started < 5
    assert consumer.committed == {}
    sink._give_up.set()  # noqa: SLF001  # what the sink's loop does when it stops
    futures = sink._in_flight[0].futures  # noqa: SLF001
    for future in futures:
        with pytest.raises(Stopped):
            future.result(10)
    assert sink._retrying == 0  # noqa: SLF001
    assert not client.inserts


def test_the_correlate_stages_re_keyed_copies_of_findings_are_not_rows_but_are_committed() -> None:
    """A finding the correlate stage forwarded to another anchor is on aiwarden.findings twice: the row is
    written once, and the copy's offset is committed with the rest."""
    client = FakeClient()
    tp = (topics.FINDINGS, 0)
    consumer = FakeConsumer({tp: 3})
    sink = sink_with(client, consumer)
    consumer.feed(topics.FINDINGS, 0, range(0, 2))
    consumer.queue.append(Message(orjson.dumps({"id": "row-0"}), b"principal:ana", partition=0, offset=2,
                                  topic=topics.FINDINGS, headers=[(topics.FORWARDED_HEADER, b"pod:ml/vllm-0")]))
    sink._step(consumer)  # noqa: SLF001
    assert sink.flush(10)
    assert [(table, n) for table, n, _ in client.inserts] == [("aiwarden.findings", 2)]
    assert consumer.committed == {tp: 3}
