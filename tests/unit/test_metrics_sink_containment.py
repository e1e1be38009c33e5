"""The sink and containment record their Prometheus metrics (streams/metrics.py): rows and insert time
per table, lag per topic and the sink stage latency, once per batch; webhook outcomes per status.
Fakes stand in for ClickHouse and Kafka here; the real services are in tests/integration."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from infra.settings import Settings
from streams import topics
from streams.agents.containment import record_action
from streams.metrics import value
from streams.pipeline.sink import ClickHouseSink

pytestmark = pytest.mark.unit


class FakeClient:
    def __init__(self) -> None:
        self.inserts: list[tuple[str, int]] = []

    def raw_insert(self, table: str, insert_block: bytes | memoryview, settings: dict[str, Any], **kwargs: Any) -> None:
        self.inserts.append((table, bytes(insert_block).count(b"\n") + 1))


class FakeConsumer:
    def __init__(self, highwater: dict[TopicPartition, int]) -> None:
        self.high = highwater
        self.committed: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.high)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)

    def paused(self) -> set[TopicPartition]:
        return set()


def test_sink_records_rows_insert_time_lag_and_latency() -> None:
    client = FakeClient()
    sink = ClickHouseSink(Settings(kafka={"bootstrap_servers": "unused:9092"}), client_factory=lambda: client)
    events, findings = TopicPartition(topics.EVENTS, 0), TopicPartition(topics.FINDINGS, 1)
    consumer = FakeConsumer({events: 110, findings: 7})
    sink._consumer = consumer  # type: ignore[assignment]  # noqa: SLF001
    rows_before = {table: value("aiwarden_sink_rows_total", table=table) for table in ("events", "findings")}
    inserts_before = value("aiwarden_sink_insert_seconds_count", table="events")
    latency_before = value("aiwarden_stage_latency_seconds_count", stage="sink")
    sink._batch.saw_timestamp(int(time.time() * 1000) - 2000)  # noqa: SLF001
    for offset in range(90, 100):
        sink._batch.add(events, offset, "events", orjson.dumps({"event_id": str(offset)}))  # noqa: SLF001
    sink._batch.add(findings, 4, "findings", b'{"finding_id": "f"}')  # noqa: SLF001
    asyncio.run(sink.flush())
    assert sorted(client.inserts) == [("aiwarden.events", 10), ("aiwarden.findings", 1)]  # tables in parallel
    assert consumer.committed == {events: 100, findings: 5}
    assert value("aiwarden_sink_rows_total", table="events") == rows_before["events"] + 10
    assert value("aiwarden_sink_rows_total", table="findings") == rows_before["findings"] + 1
    assert value("aiwarden_sink_insert_seconds_count", table="events") == inserts_before + 1
    assert value("aiwarden_sink_lag_records", topic=topics.EVENTS) == 10  # 110 - 100
    assert value("aiwarden_sink_lag_records", topic=topics.FINDINGS) == 2  # 7 - 5
    assert value("aiwarden_stage_latency_seconds_count", stage="sink") == latency_before + 1
    assert value("aiwarden_stage_latency_seconds_sum", stage="sink") >= 2.0


def test_sink_skips_partitions_a_rebalance_moved_away() -> None:
    """Rows of a partition revoked while they were written land, but are neither committed nor measured
    (the new owner redelivers them; FINAL folds the copies). This crashed the sink in the rebalance soak."""
    client = FakeClient()
    sink = ClickHouseSink(Settings(kafka={"bootstrap_servers": "unused:9092"}), client_factory=lambda: client)
    kept, moved = TopicPartition(topics.ALERTS, 0), TopicPartition(topics.ALERTS, 1)
    consumer = FakeConsumer({kept: 3})
    sink._consumer = consumer  # type: ignore[assignment]  # noqa: SLF001
    sink._batch.add(kept, 0, "alerts", b'{"alert_id": "a"}')  # noqa: SLF001
    sink._batch.add(moved, 5, "alerts", b'{"alert_id": "b"}')  # noqa: SLF001
    asyncio.run(sink.flush())
    assert client.inserts == [("aiwarden.alerts", 2)]
    assert consumer.committed == {kept: 1}
    assert value("aiwarden_sink_lag_records", topic=topics.ALERTS) == 2


def test_sink_commits_batches_in_read_order_when_a_later_one_lands_first() -> None:
    """Two batches are inserted at once; the second lands while the first is still being written. Its
    offsets are committed only after the first landed: a commit covers every row before it."""
    release = threading.Event()

    class SlowFirst(FakeClient):
        def raw_insert(
            self, table: str, insert_block: bytes | memoryview, settings: dict[str, Any], **kwargs: Any
        ) -> None:
            if b"first" in bytes(insert_block):
                assert release.wait(10)
            super().raw_insert(table, insert_block, settings, **kwargs)

    client = SlowFirst()
    sink = ClickHouseSink(Settings(kafka={"bootstrap_servers": "unused:9092"}), client_factory=lambda: client)
    tp = TopicPartition(topics.ALERTS, 0)
    consumer = FakeConsumer({tp: 2})
    sink._consumer = consumer  # type: ignore[assignment]  # noqa: SLF001

    async def scenario() -> None:
        sink._batch.add(tp, 0, "alerts", b'{"alert_id": "first"}')  # noqa: SLF001
        await sink._dispatch()  # noqa: SLF001
        sink._batch.add(tp, 1, "alerts", b'{"alert_id": "second"}')  # noqa: SLF001
        await sink._dispatch()  # noqa: SLF001
        assert len(sink._in_flight) == 2  # noqa: SLF001
        await asyncio.wait_for(asyncio.shield(sink._in_flight[1][1]), 10)  # noqa: SLF001
        await sink._commit_landed()  # noqa: SLF001
        assert consumer.committed == {}, "the second batch was committed before the first landed"
        assert sink.inserted == 0
        release.set()
        await sink.flush()

    asyncio.run(scenario())
    assert client.inserts == [("aiwarden.alerts", 1), ("aiwarden.alerts", 1)]
    assert consumer.committed == {tp: 2}
    assert sink.inserted == 2


def test_sink_commits_past_the_transaction_marker_after_its_rows() -> None:
    """On a topic written in transactions the consumer's position after a fetch is past the commit marker
    that follows the last record (consumers never receive markers): the commit goes there, not one short."""
    client = FakeClient()
    sink = ClickHouseSink(Settings(kafka={"bootstrap_servers": "unused:9092"}), client_factory=lambda: client)
    tp = TopicPartition(topics.EVENTS, 0)
    consumer = FakeConsumer({tp: 12})
    sink._consumer = consumer  # type: ignore[assignment]  # noqa: SLF001
    for offset in range(10):
        sink._batch.add(tp, offset, "events", b'{"event_id": "%d"}' % offset)  # noqa: SLF001
    sink._batch.positions[tp] = 11  # noqa: SLF001  # offset 10 is the marker
    asyncio.run(sink.flush())
    assert consumer.committed == {tp: 11}
    assert value("aiwarden_sink_lag_records", topic=topics.EVENTS) == 1  # 12 - 11


def test_containment_counts_each_outcome() -> None:
    sent: list[tuple[bytes, bytes]] = []

    class Topic:
        async def send(self, key: bytes, value: bytes) -> None:
            sent.append((key, value))

    action = {"action_id": "act-1", "alert_id": "alrt-1", "action": "quarantine_workload", "target": "pod:a/b"}
    before = {s: value("aiwarden_webhook_outcomes_total", outcome=s) for s in ("retrying", "delivered")}
    asyncio.run(record_action(Topic(), action, "retrying", 1))
    asyncio.run(record_action(Topic(), action, "retrying", 2))
    asyncio.run(record_action(Topic(), action, "delivered", 3))
    assert value("aiwarden_webhook_outcomes_total", outcome="retrying") == before["retrying"] + 2
    assert value("aiwarden_webhook_outcomes_total", outcome="delivered") == before["delivered"] + 1
    assert [orjson.loads(v)["status"] for _, v in sent] == ["retrying", "retrying", "delivered"]
    assert all(k == b"act-1" for k, _ in sent)
