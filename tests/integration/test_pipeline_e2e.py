"""End to end on the real services: confluent-kafka producer → raw topics → faust-streaming
normalize agent → aiwarden.events → ClickHouse sink → rows read back and compared."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest

from infra.settings import Settings
from schemas.sources import SOURCES
from streams.publish import Publisher
from streams.simulator import SOURCES as SIMULATOR_SOURCES
from streams.simulator import SimConfig, Simulator
from streams.worker_process import WorkerProcess, start_groups_at_end

pytestmark = pytest.mark.integration

SIMULATED_SOURCES = set(SIMULATOR_SOURCES)  # every source the simulator emits (its scanner reports too)


def wait_for(predicate, timeout_s: float, worker: WorkerProcess):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        assert worker.running, f"worker exited:\n{worker.log_tail()}"
        time.sleep(0.5)
        value = predicate()
    return value


def test_events_flow_from_kafka_through_faust_into_clickhouse(
    service_settings: Settings, ch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    app_id = f"e2e-{uuid.uuid4().hex[:6]}"
    start_groups_at_end(service_settings, app_id)  # the worker reads only what this test publishes
    start_ms = int(time.time() * 1000) - 3_600_000 + uuid.uuid4().int % 1_000_000
    simulator = Simulator(SimConfig(seed=11, duration_s=2, rate=300, start_ms=start_ms))
    records = list(simulator.records())
    expected = {}
    publisher = Publisher(service_settings)
    for record in records:
        spec = SOURCES[record.source]
        event = spec.normalize(record.record)
        expected[event.event_id] = event
        publisher.publish_record(record.source, record.record, spec.primary_key(record.record))
    summary = publisher.flush()
    assert summary.failed == 0 and sum(summary.published.values()) == len(records)

    worker = WorkerProcess(service_settings, tmp_path / "worker.log", AIWARDEN_WORKER__APP_ID=app_id).start()
    try:
        ids = list(expected)
        query = "SELECT count() FROM aiwarden.events FINAL WHERE event_id IN {ids:Array(String)}"
        landed = wait_for(
            lambda: ch.query(query, parameters={"ids": ids}).result_rows[0][0] >= len(ids), 120, worker
        )
        assert landed, f"not all events landed:\n{worker.log_tail()}"
        rows = ch.query(
            "SELECT event_id, source, entity_id, time_ms, entities, class_uid FROM aiwarden.events FINAL "
            "WHERE event_id IN {ids:Array(String)}",
            parameters={"ids": ids},
        ).named_results()
        got = {row["event_id"]: row for row in rows}
        assert set(got) == set(expected)
        for event_id, event in expected.items():
            row = got[event_id]
            assert (row["source"], row["entity_id"], row["time_ms"], row["class_uid"]) == (
                event.source, event.entity_id, event.time_ms, event.class_uid
            )
            assert row["entities"] == event.entities
        # Every source the simulator emits (OpenTelemetry GenAI records come only from `aiwarden ingest`).
        assert {e.source for e in expected.values()} == SIMULATED_SOURCES
    finally:
        worker.stop()


def test_bad_records_reach_the_dead_letter_table(
    service_settings: Settings, ch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """Bad input on a raw topic (bypassing the publisher's checks) is dead-lettered by the worker."""
    from confluent_kafka import Producer

    from infra.kafka.clients import confluent_config
    from streams import topics

    marker = uuid.uuid4().hex
    producer = Producer(confluent_config(service_settings))
    bad = [
        f'{{"rule": "x", "marker": "{marker}"'.encode(),  # truncated JSON
        f'["{marker}"]'.encode(),  # not an object
        b"\xff" + marker.encode(),  # not UTF-8
        f'{{"who-knows": "{marker}"}}'.encode(),  # unknown source
    ]
    for value in bad:
        producer.produce(topics.RAW_INFERENCE, value)
    assert producer.flush(30) == 0
    worker = WorkerProcess(service_settings, tmp_path / "worker.log", AIWARDEN_WORKER__APP_ID=f"dlq-{marker[:6]}")
    worker.start()
    try:
        query = (
            "SELECT stage, reason, raw, raw_encoding, position FROM aiwarden.dead_letters "
            "WHERE position['topic'] = 'aiwarden.raw.inference'"
        )

        def original(row) -> bytes:  # type: ignore[no-untyped-def]
            return base64.b64decode(row["raw"]) if row["raw_encoding"] == "base64" else row["raw"].encode()

        def letters():  # type: ignore[no-untyped-def]
            return [r for r in ch.query(query).named_results() if marker.encode() in original(r)]

        found = wait_for(lambda: len({r["raw"] for r in letters()}) >= len(bad), 120, worker)
        assert found, worker.log_tail()
        rows = letters()
        assert sorted(original(r) for r in rows) == sorted(bad)
        assert all(r["stage"] == "normalize" and r["reason"] for r in rows)
        assert any(r["raw_encoding"] == "base64" for r in rows)
        assert any("unknown source" in r["reason"] for r in rows)
    finally:
        worker.stop()
