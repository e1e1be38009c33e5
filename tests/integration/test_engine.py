"""The pipeline engine's exactly-once on the real broker: a transaction that never commits (its producer
fenced, or its process killed between produce and commit) leaves no output visible to a
``read_committed`` consumer, and its records are processed again exactly once, state included."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.sources import SOURCES
from streams import topics
from streams.pipeline.engine import Engine
from streams.pipeline.state import StateSpoiled
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator
from streams.worker_process import WorkerProcess, new_app_id
from tests.integration.test_sink import Kafka

pytestmark = pytest.mark.integration


def wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return value


def create_topics(settings: Settings, *names: str, partitions: int = 2) -> None:
    admin = AdminClient(confluent_config(settings))
    for future in admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1)
                                       for n in names]).values():
        future.result(30)


def read(settings: Settings, topic: str, isolation: str, since: dict[int, int] | None = None,
         idle_s: float = 3.0) -> list[Any]:
    """Every record on ``topic`` (after ``since``) a consumer with ``isolation`` sees within ``idle_s`` of quiet."""
    consumer = Consumer(confluent_config(settings, **{
        "group.id": f"probe-{uuid.uuid4().hex}", "enable.auto.commit": False, "isolation.level": isolation,
    }))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, (since or {}).get(p, 0)) for p in partitions])
    records: list[Any] = []
    quiet = time.monotonic()
    try:
        while time.monotonic() - quiet < idle_s:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    records.append(message)
                    quiet = time.monotonic()
    finally:
        consumer.close()
    return records


def copying_engine(settings: Settings, source: str, sink: str) -> Engine:
    """An engine whose one stage counts records per key (a store) and copies each with its count."""
    engine = Engine(settings)
    counts = engine.store("counts", source)

    def copy(batch: Any) -> None:
        for message in batch:
            state = counts.get(message.key().decode(), message.partition())
            state["n"] = state.get("n", 0) + 1
            engine.output.send(sink, message.key(), message.value() + b"|%d" % state["n"])

    engine.route("copy", [source], copy)
    return engine


def hundred_records(service_settings: Settings, tmp_path: Path, prefix: str,
                    commit_interval_s: float) -> tuple[Settings, str, str]:
    """Settings of an engine of its own (app id, state dir), and its source topic holding 100 records over
    7 keys; ``(settings, source, sink)``."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    source, sink = f"{name}-in", f"{name}-out"
    create_topics(service_settings, source, sink)
    worker = service_settings.worker.model_copy(update={"app_id": name, "commit_interval_s": commit_interval_s})
    settings = service_settings.model_copy(update={"worker": worker, "state_dir": tmp_path})
    producer = Producer(confluent_config(service_settings))
    for i in range(100):
        producer.produce(source, b"record-%d" % i, b"key-%d" % (i % 7))
    assert producer.flush(30) == 0
    return settings, source, sink


def test_a_fenced_transaction_leaves_nothing_and_is_redone_once(service_settings: Settings, tmp_path: Path) -> None:
    settings, source, sink = hundred_records(service_settings, tmp_path, "engine", commit_interval_s=3600.0)
    worker = settings.worker

    first = copying_engine(settings, source, sink)
    first.start()
    wait(lambda: first.counters["records"] >= 100, 60, "the first engine processed the records")
    wait(lambda: len(read(service_settings, sink, "read_uncommitted", idle_s=1)) >= 100, 30, "outputs produced")
    assert read(service_settings, sink, "read_committed", idle_s=1) == []  # in the open transaction
    # A successor with the same transactional id fences the first engine's producer.
    assert first.slot is not None
    successor = Producer(confluent_config(service_settings, **{"transactional.id": first.transactional_id}))
    successor.init_transactions(30)
    first.stop()  # its final commit is refused: fenced
    assert first.counters["transactions"] == 0

    second = copying_engine(settings.model_copy(update={"worker": worker.model_copy(
        update={"commit_interval_s": 0.1})}), source, sink)
    second.start()
    try:
        wait(lambda: second.counters["transactions"] > 0 and second.counters["records"] >= 100, 60,
             "the second engine processed and committed the records")
    finally:
        second.stop()
    committed = [m.value() for m in read(service_settings, sink, "read_committed")]
    assert sorted(v.split(b"|")[0] for v in committed) == sorted(b"record-%d" % i for i in range(100))
    per_key: dict[bytes, list[int]] = {}
    for message in read(service_settings, sink, "read_committed"):
        per_key.setdefault(message.key(), []).append(int(message.value().split(b"|")[1]))
    # The state the fenced transaction counted was dropped with it: each key counts from 1 once.
    assert all(sorted(counts) == list(range(1, len(counts) + 1)) for counts in per_key.values()), per_key


def test_a_worker_killed_before_its_commit_leaves_no_output(service_settings: Settings, tmp_path: Path) -> None:
    app_id = new_app_id(service_settings, "engine-kill")
    since = {topics.EVENTS: Kafka(service_settings).ends(topics.EVENTS)}
    records = list(Simulator(SimConfig(seed=31, duration_s=30, rate=50)).records())
    publisher = Publisher(service_settings)
    for record in records:
        publisher.publish_record(record.source, record.record, SOURCES[record.source].primary_key(record.record))
    assert publisher.flush().failed == 0
    event_ids = {SOURCES[r.source].normalize(r.record).event_id for r in records}

    never = WorkerProcess(service_settings, tmp_path / "never-commits.log", AIWARDEN_WORKER__APP_ID=app_id,
                          AIWARDEN_WORKER__COMMIT_INTERVAL_S="3600").start()
    try:
        wait(lambda: len(read(service_settings, topics.EVENTS, "read_uncommitted", since[topics.EVENTS], 1))
             >= len(records), 120, f"the worker produced its events\n{never.log_tail()}")
        assert read(service_settings, topics.EVENTS, "read_committed", since[topics.EVENTS], 1) == []
    finally:
        never.kill()

    restarted = WorkerProcess(service_settings, tmp_path / "restarted.log", AIWARDEN_WORKER__APP_ID=app_id).start()
    try:
        def committed_events() -> list[str]:
            messages = read(service_settings, topics.EVENTS, "read_committed", since[topics.EVENTS], 2)
            return [orjson.loads(m.value())["event_id"] for m in messages]

        seen = wait(lambda: (ids := committed_events()) and set(ids) >= event_ids and ids, 120,
                    f"the restarted worker committed the events\n{restarted.log_tail()}")
    finally:
        restarted.stop()
    mine = [event_id for event_id in seen if event_id in event_ids]
    assert len(mine) == len(set(mine)) == len(event_ids), "an event appears twice (or is missing)"



def test_the_disk_store_restarts_from_its_own_state(service_settings: Settings, tmp_path: Path) -> None:
    """With ``state_store=rocksdb`` a restarted engine replays only the changelog written after its
    disk store, and its state goes on from where it was."""
    name = f"engine-rocks-{uuid.uuid4().hex[:8]}"
    source, sink = f"{name}-in", f"{name}-out"
    create_topics(service_settings, source, sink)
    worker = service_settings.worker.model_copy(update={"app_id": name, "state_store": "rocksdb"})
    settings = service_settings.model_copy(update={"worker": worker, "state_dir": tmp_path})
    producer = Producer(confluent_config(service_settings))

    def publish(start: int) -> None:
        for i in range(start, start + 50):
            producer.produce(source, b"record-%d" % i, b"key-%d" % (i % 5))
        assert producer.flush(30) == 0

    publish(0)
    first = copying_engine(settings, source, sink)
    first.start()
    wait(lambda: first.counters["records"] >= 50 and first.counters["transactions"] > 0, 60, "first run committed")
    first.stop()
    assert list((tmp_path / "worker" / name).glob("instance-*/stores/counts/*"))  # RocksDB on disk

    publish(50)
    second = copying_engine(settings, source, sink)
    second.start()
    try:
        wait(lambda: second.counters["records"] >= 50, 60, "second run processed the new records")
    finally:
        second.stop()
    assert second.counters["restored"] == 0  # nothing to replay: the disk store was up to date
    counts = sorted(int(m.value().split(b"|")[1]) for m in read(service_settings, sink, "read_committed")
                    if m.key() == b"key-0")
    assert counts == list(range(1, 21))  # 10 records of key-0 per run, counted on from the first run


def test_a_stage_that_raises_on_a_state_is_redone_with_copies_and_loses_nothing(
    service_settings: Settings, tmp_path: Path
) -> None:
    """The engine's stores do not copy a key's state around every call: a stage function that raises after
    changing the state aborts the transaction (``StateSpoiled``), whose records are processed again with
    careful stores. The record that raised is dead-lettered by its stage once, every other record is copied
    once, and the counts carry no trace of the half-made change."""
    settings, source, sink = hundred_records(service_settings, tmp_path, "engine-spoil", commit_interval_s=0.1)
    dlq = f"{settings.worker.app_id}-dlq"
    create_topics(service_settings, dlq)

    engine = Engine(settings)
    counts = engine.store("counts", source)

    def count(state: dict[str, Any], value: bytes) -> int:
        state["n"] = state.get("n", 0) + 1
        if value == b"record-42":  # a detector bug, after it changed the state
            raise ValueError("cannot handle record-42")
        return int(state["n"])

    def copy(batch: Any) -> None:
        for message in batch:
            try:
                n = counts.apply(message.key().decode(), message.partition(), count, message.value())
            except StateSpoiled:
                raise
            except ValueError as exc:
                engine.output.send(dlq, message.key(), str(exc).encode())
                continue
            engine.output.send(sink, message.key(), message.value() + b"|%d" % n)

    engine.route("copy", [source], copy)
    engine.start()
    try:
        wait(lambda: engine.counters["transactions"] > 0 and len(read(service_settings, sink, "read_committed",
                                                                        idle_s=1)) >= 99, 60, "the records copied")
    finally:
        engine.stop()
    assert engine.counters["aborted"] >= 1  # the spoiled transaction
    copied = read(service_settings, sink, "read_committed")
    assert sorted(m.value().split(b"|")[0] for m in copied) == sorted(b"record-%d" % i for i in range(100) if i != 42)
    per_key: dict[bytes, list[int]] = {}
    for message in copied:
        per_key.setdefault(message.key(), []).append(int(message.value().split(b"|")[1]))
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in per_key.values()), per_key  # no half-made count
    assert [m.value() for m in read(service_settings, dlq, "read_committed")] == [b"cannot handle record-42"]
