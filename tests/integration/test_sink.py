"""The ClickHouse sink on the real services: redelivery, a ClickHouse outage and rows ClickHouse rejects.

Each test runs `aiwarden worker` child processes under its own app id (so its own consumer groups,
``<app_id>`` for Faust and ``<app_id>-sink`` for the sink) and identifies its rows by the event ids
of a simulator run with a unique ``start_ms``. Its groups start at the topics' end
(``new_app_id``), so it reads only what it publishes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from infra import services
from infra.clickhouse.client import connect
from infra.kafka.clients import confluent_config
from infra.kafka.lag import group_lag
from infra.settings import Settings
from schemas.codec import encode
from schemas.sources import SOURCES
from streams import topics
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator
from streams.worker_process import WorkerProcess, new_app_id

pytestmark = pytest.mark.integration

FINAL_COUNT = "SELECT count(), uniqExact(event_id) FROM aiwarden.events FINAL WHERE event_id IN {ids:Array(String)}"
RAW_COUNT = "SELECT count() FROM aiwarden.events WHERE event_id IN {ids:Array(String)}"


# -- helpers
def unique_start_ms() -> int:
    return int(time.time() * 1000) - 3_600_000 + uuid.uuid4().int % 1_000_000


def wait_for(
    predicate: Callable[[], Any], timeout_s: float, worker: WorkerProcess | None = None, interval_s: float = 0.5
) -> Any:
    """Poll ``predicate`` until it is truthy or ``timeout_s`` passes; fail at once if ``worker`` died."""
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        if worker is not None:
            assert worker.running, f"worker exited:\n{worker.log_tail()}"
        time.sleep(interval_s)
        value = predicate()
    return value


def simulated_events(seed: int, duration_s: float, rate: float) -> list[tuple[str, dict[str, Any]]]:
    simulator = Simulator(SimConfig(seed=seed, duration_s=duration_s, rate=rate, start_ms=unique_start_ms()))
    return [(record.source, record.record) for record in simulator.records()]


def publish_run(settings: Settings, seed: int, duration_s: float, rate: float) -> list[str]:
    """Publish a simulator run to the raw topics; returns its distinct event ids."""
    publisher = Publisher(settings)
    ids = set()
    for source, record in simulated_events(seed, duration_s, rate):
        spec = SOURCES[source]
        ids.add(spec.normalize(record).event_id)
        publisher.publish_record(source, record, spec.primary_key(record))
    summary = publisher.flush()
    assert summary.failed == 0, summary.errors
    return sorted(ids)


class Kafka:
    """Offsets and consumer groups, read with librdkafka."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = confluent_config(settings)
        self.admin = AdminClient(self.config)

    def partitions(self, topic: str) -> list[int]:
        return sorted(self.admin.list_topics(topic, timeout=10).topics[topic].partitions)

    def offsets(self, topic: str, spec: OffsetSpec) -> dict[int, int]:
        request = {TopicPartition(topic, p): spec for p in self.partitions(topic)}
        futures = self.admin.list_offsets(request, request_timeout=10)
        return {tp.partition: future.result().offset for tp, future in futures.items()}

    def ends(self, topic: str = topics.EVENTS) -> dict[int, int]:
        return self.offsets(topic, OffsetSpec.latest())

    def committed(self, group: str, topic: str = topics.EVENTS) -> dict[int, int]:
        """The group's committed offsets on ``topic`` (partitions without a commit left out).

        Read with a consumer that never joins the group, not AdminClient.list_consumer_group_offsets:
        librdkafka 2.16 dereferences a NULL consumer group when that OffsetFetch answers with a
        coordinator error (e.g. while the broker still loads __consumer_offsets) and the process
        segfaults (confluentinc/librdkafka#5040, confluent-kafka-python#1982)."""
        consumer = Consumer({**self.config, "group.id": group, "enable.auto.commit": False})
        try:
            result = consumer.committed([TopicPartition(topic, p) for p in self.partitions(topic)], timeout=15)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in result if tp.offset >= 0}

    def caught_up(self, group: str, ends: dict[int, int], topic: str = topics.EVENTS) -> bool:
        done = self.committed(group, topic)
        return all(done.get(p, 0) >= end for p, end in ends.items())

    def lag(self, group: str, topic: str = topics.EVENTS) -> int:
        """Records the group has not committed on ``topic`` (transaction markers left out)."""
        return sum(group_lag(self.settings, group, [topic]).values())

    def state(self, group: str) -> tuple[ConsumerGroupState, int]:
        description = self.admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        return description.state, len(description.members)

    def no_members(self, group: str) -> bool:
        state, members = self.state(group)
        return not members and state in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)

    def running(self, group: str, ends: dict[int, int]) -> bool:
        """The group has a member and has committed up to ``ends``."""
        state, members = self.state(group)
        return state == ConsumerGroupState.STABLE and members > 0 and self.caught_up(group, ends)

    def rewind(self, group: str, to: dict[int, int], topic: str = topics.EVENTS) -> None:
        """Set the (member-less) group's committed offsets on ``topic``."""
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in to.items()])]
        result = self.admin.alter_consumer_group_offsets(request, request_timeout=10)[group].result()
        assert all(tp.error is None for tp in result.topic_partitions), result.topic_partitions


def wait_until_idle(kafka: Kafka, app: str, worker: WorkerProcess, timeout_s: float = 180) -> None:
    """Wait until the worker has normalized what the raw topics held and its sink has inserted it.

    Records produced before the sink has joined would share its first batch with later ones."""
    raw_ends = {topic: kafka.ends(topic) for topic in topics.RAW_TOPICS}
    normalized = wait_for(
        lambda: all(kafka.caught_up(app, raw_ends[t], t) for t in topics.RAW_TOPICS), timeout_s, worker
    )
    assert normalized, f"the worker did not catch up on the raw topics\n{worker.log_tail()}"
    ends = kafka.ends()
    assert wait_for(lambda: kafka.running(f"{app}-sink", ends), timeout_s, worker), worker.log_tail()


def final_counts(client: Any, ids: list[str]) -> tuple[int, int]:
    count, unique = client.query(FINAL_COUNT, parameters={"ids": ids}).result_rows[0]
    return int(count), int(unique)


def raw_count(client: Any, ids: list[str]) -> int:
    return int(client.query(RAW_COUNT, parameters={"ids": ids}).result_rows[0][0])


def sink_warnings(worker: WorkerProcess) -> list[str]:
    """The sink's retry warnings in the worker log (the first line of each)."""
    text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
    return [line for line in text.splitlines() if "ClickHouse sink cannot write" in line and "retrying in" in line]


# -- a. redelivery
def test_redelivered_events_are_not_lost_nor_seen_twice(
    service_settings: Settings, ch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    app = new_app_id(service_settings, "sink-redeliver")
    group = f"{app}-sink"
    kafka = Kafka(service_settings)
    starts = kafka.ends()  # where this test's events will begin on aiwarden.events
    ids = publish_run(service_settings, seed=21, duration_s=2, rate=500)

    first = WorkerProcess(service_settings, tmp_path / "worker-1.log", AIWARDEN_WORKER__APP_ID=app).start()
    try:
        landed = wait_for(lambda: final_counts(ch, ids)[0] >= len(ids), 180, first)
        assert landed, f"not all events landed: {final_counts(ch, ids)} of {len(ids)}\n{first.log_tail()}"
    finally:
        first.stop()
    assert wait_for(lambda: kafka.no_members(group), 60), f"{group} still has members"
    raw_after_first = raw_count(ch, ids)

    # Rewind the sink group on aiwarden.events to before this test's events: all of them are redelivered.
    ends = kafka.ends()
    kafka.rewind(group, starts)
    assert kafka.committed(group) == starts
    redelivered = sum(ends[p] - starts[p] for p in ends)

    second = WorkerProcess(service_settings, tmp_path / "worker-2.log", AIWARDEN_WORKER__APP_ID=app).start()
    try:
        reconsumed = wait_for(lambda: kafka.caught_up(group, ends), 180, second)
        assert reconsumed, f"the sink did not re-consume aiwarden.events: {kafka.committed(group)}"
        count, unique = final_counts(ch, ids)
        raw_after_second = raw_count(ch, ids)
    finally:
        second.stop()

    print(
        f"\nredelivery: {len(ids)} events, {redelivered} records redelivered on {topics.EVENTS}; raw rows "
        f"without FINAL: {raw_after_first} after the first pass, {raw_after_second} after the redelivery; "
        f"FINAL count {count}, uniqExact {unique}"
    )
    assert count == len(ids)
    assert unique == len(ids)
    assert raw_after_second >= len(ids)


# -- b. ClickHouse down
def restart_clickhouse(clickhouse: services.LocalClickHouse, url: str) -> float:
    """Start the fixture's ClickHouse again on its recorded ports; returns the seconds waited for them."""
    if clickhouse.status().healthy:
        return 0.0
    ports = clickhouse.ports()
    # LocalService.start keeps the recorded ports only while `port_free` says they are free, and
    # port_free binds without SO_REUSEADDR: the server's TIME_WAIT / FIN_WAIT sockets left by the stop
    # count as "in use" for up to a minute, and a new port would strand every client on the old URL.
    # Wait until they are released (instant once port_free sets SO_REUSEADDR).
    waited = time.monotonic()
    wait_for(lambda: all(services.port_free(p) for p in ports.values()), 120, interval_s=1.0)
    waited = time.monotonic() - waited
    clickhouse.start()
    assert clickhouse.address(clickhouse.ports()) == url, "ClickHouse came back on another port"
    return waited


def test_sink_holds_events_while_clickhouse_is_down_then_lands_them_once(
    service_settings: Settings, tmp_path: Path
) -> None:
    clickhouse = services.LocalClickHouse(Settings(state_dir=service_settings.state_dir))
    if clickhouse.pid() is None or clickhouse.address(clickhouse.ports()) != service_settings.clickhouse.url:
        pytest.skip("needs the local ClickHouse launcher (not an external server or a container)")
    url = service_settings.clickhouse.url
    assert url is not None
    app = new_app_id(service_settings, "sink-outage")
    group = f"{app}-sink"
    kafka = Kafka(service_settings)

    worker = WorkerProcess(service_settings, tmp_path / "worker.log", AIWARDEN_WORKER__APP_ID=app).start()
    try:
        # The sink is up and has inserted the backlog earlier tests left on the topics.
        wait_until_idle(kafka, app, worker)

        clickhouse.stop()
        try:
            down_since = time.monotonic()
            ids = publish_run(service_settings, seed=22, duration_s=2, rate=500)
            while time.monotonic() - down_since < 15:
                assert worker.running, f"worker exited while ClickHouse was down:\n{worker.log_tail()}"
                time.sleep(1)
            assert worker.running
            warnings = sink_warnings(worker)
            assert warnings, f"no retry warnings in the worker log:\n{worker.log_tail()}"
            # Nothing read during the outage is committed: the events wait on the topic.
            lag = kafka.lag(group)
            assert lag > 0, "the sink committed offsets of rows ClickHouse never received"
        finally:
            waited = restart_clickhouse(clickhouse, url)

        client = connect(service_settings)
        try:
            landed = wait_for(lambda: final_counts(client, ids)[0] >= len(ids), 120, worker)
            assert landed, f"{final_counts(client, ids)} of {len(ids)} landed after the restart\n{worker.log_tail()}"
            ends = kafka.ends()
            assert wait_for(lambda: kafka.caught_up(group, ends), 60, worker)
            count, unique = final_counts(client, ids)
            raw = raw_count(client, ids)
        finally:
            client.close()
        print(
            f"\noutage: {len(warnings)} retry warnings (first: {warnings[0].strip()[-160:]}); lag while down {lag}; "
            f"waited {waited:.1f}s for the old ports; {len(ids)} events, FINAL {count}, uniqExact {unique}, raw {raw}"
        )
        assert count == len(ids)
        assert unique == len(ids)
    finally:
        worker.stop()
        if not clickhouse.status().healthy:  # later tests share this server
            restart_clickhouse(clickhouse, url)


# -- c. rows ClickHouse rejects
def test_rows_clickhouse_rejects_are_dead_lettered_and_the_rest_of_the_batch_lands(
    service_settings: Settings, ch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    marker = uuid.uuid4().hex
    events = []
    for source, record in simulated_events(seed=23, duration_s=2, rate=300)[:40]:
        events.append(SOURCES[source].normalize(record))
    ids = sorted({event.event_id for event in events})
    # A JSON object ClickHouse refuses: a string where Int64 is due, a negative UInt16.
    bad = encode({"event_id": f"bad-{marker}", "time_ms": "not-a-number", "class_uid": -5, "message": marker})
    bad_ids = [f"bad-{marker}"]

    app = new_app_id(service_settings, "sink-reject")
    kafka = Kafka(service_settings)
    started = time.monotonic()
    worker = WorkerProcess(service_settings, tmp_path / "worker.log", AIWARDEN_WORKER__APP_ID=app).start()
    try:
        # Let the worker catch up first, so that the records below arrive together, in one small batch.
        wait_until_idle(kafka, app, worker)
        caught_up_s = time.monotonic() - started

        producer = Producer(confluent_config(service_settings, **{"linger.ms": 50}))
        middle = len(events) // 2
        for i, event in enumerate(events):
            if i == middle:
                producer.produce(topics.EVENTS, bad, b"bad", partition=0)
            producer.produce(topics.EVENTS, encode(event), event.entity_id.encode(), partition=0)
        assert producer.flush(30) == 0

        query = (
            "SELECT stage, reason, source, raw FROM aiwarden.dead_letters "
            "WHERE stage = 'sink' AND raw LIKE concat('%', {marker:String}, '%')"
        )
        letters = wait_for(lambda: list(ch.query(query, parameters={"marker": marker}).named_results()), 120, worker)
        assert letters, f"no sink dead letter for the rejected row\n{worker.log_tail()}"
        dead_lettered_s = time.monotonic() - started
        landed = wait_for(lambda: final_counts(ch, ids)[0] >= len(ids), 60, worker)
        assert landed, f"{final_counts(ch, ids)} of {len(ids)} valid rows landed\n{worker.log_tail()}"
        count, unique = final_counts(ch, ids)
        rejected_rows = final_counts(ch, bad_ids)[0]
    finally:
        worker.stop()

    print(
        f"\nrejected row dead-lettered (sink caught up after {caught_up_s:.1f}s, dead letter after "
        f"{dead_lettered_s:.1f}s): {letters[0]['reason'][:200]!r}"
    )
    assert count == unique == len(ids)
    assert rejected_rows == 0
    assert all(letter["stage"] == "sink" and letter["reason"] for letter in letters)
    assert marker in letters[0]["raw"]


# -- d. a rebalance mid-stream
def test_sinks_joining_and_leaving_mid_stream_land_every_event_once(
    service_settings: Settings, ch  # type: ignore[no-untyped-def]
) -> None:
    """Two sinks in one group (cooperative-sticky) while events keep coming: a second member joins, then
    the first leaves. Partitions move while batches are buffered and in flight; every event lands, FINAL
    counts each once, and the group's committed offsets reach the topic's end."""
    from streams.pipeline.sink import ClickHouseSink

    app = new_app_id(service_settings, "sink-rebalance")
    worker = service_settings.worker.model_copy(
        update={"app_id": app, "sink_batch_rows": 300, "sink_batch_seconds": 0.2, "session_timeout_s": 6.0})
    settings = service_settings.model_copy(update={"worker": worker})
    kafka = Kafka(settings)
    events = [SOURCES[source].normalize(record) for source, record in simulated_events(seed=24, duration_s=8, rate=500)]
    ids = sorted({event.event_id for event in events})
    producer = Producer(confluent_config(settings, **{"linger.ms": 5}))

    def publish(part: list[Any], chunks: int = 1) -> None:
        """Produce ``part`` in ``chunks`` a fifth of a second apart (a feed that goes on for a while)."""
        for i in range(chunks):
            for event in part[i * len(part) // chunks:(i + 1) * len(part) // chunks]:
                producer.produce(topics.EVENTS, encode(event), event.entity_id.encode())
                producer.poll(0)
            assert producer.flush(30) == 0
            time.sleep(0.2)

    first = ClickHouseSink(settings, topic_tables={topics.EVENTS: "events"})
    second = ClickHouseSink(settings, topic_tables={topics.EVENTS: "events"})
    thirds = [events[i * len(events) // 3:(i + 1) * len(events) // 3] for i in range(3)]
    feed = threading.Thread(target=publish, args=(thirds[2], 20))
    first.start()
    try:
        publish(thirds[0])
        assert wait_for(lambda: first.inserted > 0, 120), "the first sink inserted nothing"
        second.start()  # joins: some partitions move from the first, with rows buffered or in flight
        publish(thirds[1], 5)
        assert wait_for(lambda: second.state()["partitions"] > 0, 120), "the second sink never got a partition"
        feed.start()
        assert wait_for(lambda: second.inserted > 0, 120), "the second sink inserted nothing"
        first.stop()  # leaves while the feed goes on: its partitions move after it landed and committed them
        assert not first.alive
        feed.join(120)
        ends = kafka.ends()
        caught_up = wait_for(lambda: kafka.caught_up(f"{app}-sink", ends), 120)
        assert caught_up, f"the group did not commit to the end: {kafka.committed(f'{app}-sink')} of {ends}"
        chunks = [ids[i:i + 1000] for i in range(0, len(ids), 1000)]  # a query parameter's size is limited
        count, unique = (sum(column) for column in zip(*(final_counts(ch, chunk) for chunk in chunks), strict=True))
        raw = sum(raw_count(ch, chunk) for chunk in chunks)
    finally:
        first.stop()
        second.stop()
        if feed.ident is not None:
            feed.join(120)
    print(f"\nrebalance: {len(ids)} events; first sink {first.inserted} rows, second {second.inserted}; "
          f"FINAL {count}, uniqExact {unique}, raw rows before FINAL {raw}")
    assert count == unique == len(ids)
    # Partitions moved only after what was read of them landed and was committed: nothing re-inserted.
    assert raw == len(ids), f"{raw - len(ids)} rows inserted twice across the handovers"
