"""Killing and restarting a worker keeps tables and model state (integration test on the real broker).

A worker detects over a simulator run whose event time spans many short detection windows, so its
anomaly models learn observations and checkpoint them. It is then killed with SIGKILL (no clean
stop: no final commit, no final checkpoint) and a new worker with the same app id is started
without publishing anything new. The new worker must recover every table from its changelog and
restore each anomaly model from its last checkpoint. Finally the same records are published again:
the redelivered events must not duplicate alerts (deterministic alert ids).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from infra.kafka.clients import confluent_config
from infra.kafka.lag import group_lag
from infra.services import free_port
from infra.settings import Settings
from schemas.sources import SOURCES
from streams import topics
from streams.pipeline.build import pipeline_groups
from streams.publish import Publisher
from streams.simulator import SOURCES as SIMULATOR_SOURCES
from streams.simulator import SimConfig, SimRecord, Simulator
from streams.worker_process import WorkerProcess, start_groups_at_end
from tests.integration.signin import make_accounts

pytestmark = pytest.mark.integration

T = TypeVar("T")

WINDOW_S = 5
DURATION_S = 120  # event time: 24 detection windows
RATE = 60  # records per second of event time: 7,200 records
TABLES = ("detector-state", "inventory-state", "model-checkpoints", "correlation-state")
# Which consumer group reads which topic (the pipeline engine: <app id>-pipeline; the sink: <app id>-sink).
SINK_TOPICS = (topics.EVENTS, topics.FINDINGS, topics.ALERTS, topics.INVENTORY, topics.DLQ)

SIMULATED_SOURCES = set(SIMULATOR_SOURCES)  # every source the simulator emits (its scanner reports too)


def wait_for(predicate: Callable[[], T], timeout_s: float, worker: WorkerProcess, poll_s: float = 1.0) -> T:
    """Poll ``predicate`` until it returns something truthy or ``timeout_s`` passes (its last value)."""
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        assert worker.running, f"worker exited:\n{worker.log_tail()}"
        time.sleep(poll_s)
        value = predicate()
    return value


def worker_state(port: int, token: str) -> dict[str, Any] | None:
    """``GET /aiwarden/state`` of the worker on ``port`` (signed in with API ``token``), None while it does
    not answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/aiwarden/state",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - fixed http://127.0.0.1 URL
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def checkpointed(settings: Settings, app_id: str) -> dict[str, int]:
    """The most-trained checkpoint per detector on ``<app_id>-model-checkpoints-changelog``: the last
    value of each ``detector|partition`` key, then the highest ``n`` per detector."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    topic = f"{app_id}-model-checkpoints-changelog"
    consumer = Consumer(confluent_config(settings, **{
        "group.id": f"probe-{uuid.uuid4().hex}", "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "enable.partition.eof": True,  # the end: a transactional changelog's last offset is a marker, never read
    }))
    latest: dict[str, int] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            return {}
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()  # noqa: SLF001
                ends.pop(message.partition(), None)
                continue
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
            key = message.key().decode()  # store keys are UTF-8, values JSON on the changelog
            if message.value() is None:
                latest.pop(key, None)
                continue
            latest[key] = int(orjson.loads(message.value())["n"])
        assert not ends, f"could not read {topic} to its end: {ends}"
    finally:
        consumer.close()
    best: dict[str, int] = {}
    for key, n in latest.items():
        detector_id = key.split("|", 1)[0]
        best[detector_id] = max(n, best.get(detector_id, 0))
    return best


def drained(settings: Settings, app_id: str) -> bool:
    """Every partition the worker consumes is committed up to its end, by the agents and by the sink."""
    groups = (*pipeline_groups(app_id).items(), (f"{app_id}-sink", SINK_TOPICS))
    return not any(any(group_lag(settings, group, names).values()) for group, names in groups)


def settled(settings: Settings, app_id: str, port: int, token: str) -> Callable[[], dict[str, Any] | None]:
    """A predicate: the worker's state once everything published so far is processed and committed
    (twice in a row, a couple of seconds apart, with the same state: nothing was still in flight)."""
    previous: list[dict[str, Any] | None] = [None]

    def check() -> dict[str, Any] | None:
        if not drained(settings, app_id):
            previous[0] = None
            return None
        state = worker_state(port, token)
        if state is None:
            return None
        stable = {"tables": state["tables"], "models": state["models"]}
        if stable == previous[0]:
            return state
        previous[0] = stable
        return None

    return check


def publish(settings: Settings, records: list[SimRecord]) -> None:
    publisher = Publisher(settings)
    for record in records:
        spec = SOURCES[record.source]
        publisher.publish_record(record.source, record.record, spec.primary_key(record.record))
    summary = publisher.flush()
    assert summary.failed == 0 and sum(summary.published.values()) == len(records)


@pytest.mark.timeout(1800)
def test_killed_worker_restarts_with_its_tables_and_models(
    service_settings: Settings, ch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    app_id = f"restart-{uuid.uuid4().hex[:8]}"
    # Event times two to three days in the past (other tests use the last few hours), aligned to the
    # detection window; they tell this run's events and alerts apart in ClickHouse.
    window_ms = WINDOW_S * 1000
    start_ms = (int(time.time() * 1000) - 3 * 86_400_000 + uuid.uuid4().int % 86_400_000) // window_ms * window_ms
    end_ms = start_ms + DURATION_S * 1000
    records = list(Simulator(SimConfig(seed=23, duration_s=DURATION_S, rate=RATE, start_ms=start_ms)).records())
    assert {r.source for r in records} == SIMULATED_SOURCES
    event_ids = [SOURCES[r.source].normalize(r.record).event_id for r in records]
    overrides = {
        "AIWARDEN_WORKER__APP_ID": app_id,
        "AIWARDEN_WORKER__CHECKPOINT_INTERVAL_S": "1",
        "AIWARDEN_DETECTION__WINDOW_S": str(WINDOW_S),
    }
    token = make_accounts(service_settings)["viewer"].token  # /aiwarden/state needs a sign-in
    start_groups_at_end(service_settings, app_id)  # the worker reads only this test's records
    publish(service_settings, records)

    def run_alerts() -> tuple[int, int]:
        row = ch.query(
            "SELECT count(), uniqExact(alert_id) FROM aiwarden.alerts FINAL "
            "WHERE first_seen >= {start:Int64} AND first_seen < {end:Int64}",
            parameters={"start": start_ms, "end": end_ms},
        ).result_rows[0]
        return int(row[0]), int(row[1])

    started = time.monotonic()
    first_port = free_port()
    first = WorkerProcess(service_settings, tmp_path / "worker-1.log",
                          AIWARDEN_WORKER__WEB_PORT=str(first_port), **overrides).start()
    second: WorkerProcess | None = None
    try:
        # --- 1. the first worker processes the run: state, models, checkpoints --------------------
        def ready() -> dict[str, Any] | None:
            state = worker_state(first_port, token)
            if state is None or not all(state["tables"].get(t, 0) > 0 for t in TABLES[:3]):
                return None
            models = state["models"]
            return state if models and all(n > 0 for n in models.values()) else None

        assert wait_for(ready, 300, first), f"no state or model observations:\n{first.log_tail()}"
        landed = wait_for(
            lambda: ch.query(
                "SELECT uniqExact(event_id) FROM aiwarden.events WHERE time_ms >= {start:Int64} "
                "AND time_ms < {end:Int64}",
                parameters={"start": start_ms, "end": end_ms},
            ).result_rows[0][0] >= len(set(event_ids)),
            300, first, poll_s=2.0,
        )
        assert landed, f"not all events landed:\n{first.log_tail()}"
        before = wait_for(settled(service_settings, app_id, first_port, token), 300, first, poll_s=3.0)
        assert before, f"the worker never caught up:\n{first.log_tail()}"
        saved = checkpointed(service_settings, app_id)
        assert set(saved) == set(before["models"]) and all(n > 0 for n in saved.values()), (saved, before)
        alerts_before = run_alerts()

        # --- 2. kill -9, restart with the same app id, publish nothing --------------------------
        first.kill()
        assert not first.running
        saved = checkpointed(service_settings, app_id)  # the changelog as the killed worker left it
        second_port = free_port()
        second = WorkerProcess(service_settings, tmp_path / "worker-2.log",
                               AIWARDEN_WORKER__WEB_PORT=str(second_port), **overrides).start()
        restarted = time.monotonic()

        def tables_recovered() -> dict[str, Any] | None:
            state = worker_state(second_port, token)
            if state is None or not all(state["tables"].get(t, 0) >= n for t, n in before["tables"].items()):
                return None
            return state

        tables = wait_for(tables_recovered, 300, second)
        assert tables, (
            f"tables not recovered: before {before['tables']}, now {worker_state(second_port, token)}\n"
            f"{second.log_tail(80)}"
        )
        tables_s = time.monotonic() - restarted

        def models_restored() -> dict[str, Any] | None:
            state = worker_state(second_port, token)
            if state is None or not all(state["models"].get(d, 0) >= n for d, n in saved.items()):
                return None
            return state

        # Models are restored right after the tables' recovery: a short wait once the tables are back.
        after = wait_for(models_restored, 60, second)
        assert after, (
            f"models not restored from their checkpoints: checkpointed {saved}, before the kill "
            f"{before['models']}, now {worker_state(second_port, token)}\n{second.log_tail(80)}"
        )
        recovery_s = time.monotonic() - restarted
        assert second.wait_for_log("restored", 60), f"no model restored:\n{second.log_tail(80)}"
        log_text = second.log_path.read_text(errors="replace")
        for detector_id, n in saved.items():
            logged = re.findall(rf"restored {detector_id} model checkpoint \((\d+) observations\)", log_text)
            assert logged and int(logged[-1]) >= n, (detector_id, n, logged)

        # --- 3. the same records again: redelivered events never duplicate alerts ----------------
        publish(service_settings, records)
        assert wait_for(settled(service_settings, app_id, second_port, token), 300, second, poll_s=3.0), \
            second.log_tail()
        count, unique = run_alerts()
        assert unique > 0, "the run raised no alerts"
        assert count == unique, f"{count} alert rows for {unique} alert ids"
        assert unique >= alerts_before[1]
        finding_rows, finding_ids = ch.query(
            "SELECT count(), uniqExact(finding_id) FROM aiwarden.findings FINAL "
            "WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64}",
            parameters={"start": start_ms, "end": end_ms},
        ).result_rows[0]
        twice = ch.query(
            "SELECT finding_id, detector, entity_id, time_ms, summary FROM aiwarden.findings FINAL "
            "WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64} AND finding_id IN ("
            "SELECT finding_id FROM aiwarden.findings FINAL WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64} "
            "GROUP BY finding_id HAVING count() > 1) ORDER BY finding_id, time_ms",
            parameters={"start": start_ms, "end": end_ms},
        ).result_rows if finding_rows != finding_ids else []
        assert finding_ids > 0 and finding_rows == finding_ids, (finding_rows, finding_ids, twice)
        raw_rows = ch.query(
            "SELECT count() FROM aiwarden.alerts WHERE first_seen >= {start:Int64} AND first_seen < {end:Int64}",
            parameters={"start": start_ms, "end": end_ms},
        ).result_rows[0][0]
        final = worker_state(second_port, token)
        print(
            f"\nworker restart: {len(records)} records, app {app_id}"
            f"\n  before kill: tables {before['tables']} models {before['models']} checkpointed {saved}"
            f"\n  after restart: tables {after['tables']} models {after['models']}"
            f"\n  after re-publishing: tables {final and final['tables']} models {final and final['models']}"
            f"\n  after restart: tables back in {tables_s:.1f}s, models in {recovery_s:.1f}s"
            f"\n  alerts before kill (rows, ids) {alerts_before}, after re-publishing {(count, unique)} "
            f"({raw_rows} rows without FINAL); findings {(finding_rows, finding_ids)}"
            f"\n  total {time.monotonic() - started:.1f}s"
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
