"""Every alert of a simulated run, through the real pipeline (Kafka transactions, ClickHouse): each version is
an OCSF 1.5.0 Detection Finding on aiwarden.ocsf (read_committed, exactly once), valid against the schema, and
``aiwarden alerts export --format ocsf`` gives the same alerts from ClickHouse."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.clickhouse.client import connect
from infra.kafka.clients import confluent_config
from infra.settings import Settings
from streams import topics
from streams.integrations.export import iter_alerts, write_alerts
from streams.integrations.ocsf import CREATE, OCSF_VERSION, validate
from streams.worker_process import settings_env, start_groups_at_end
from tests.integration.invariants import (
    SLACK_MS,
    Feeder,
    Run,
    caught_up,
    event_counts,
    lags,
    run_alerts,
    topic_ends,
    wait_until,
    worker,
)

pytestmark = pytest.mark.integration

RULE_SCENARIOS = ("prompt_injection", "model_inversion", "shadow_ai_egress", "exposed_inference", "data_poisoning",
                  "weights_exfiltration", "model_server_shell", "cryptominer", "stolen_api_key", "logging_tampering")


def read_committed(settings: Settings, topic: str, since: dict[int, int]) -> list[dict[str, Any]]:
    """Every record on ``topic`` after ``since`` to its current end, as a read_committed consumer sees it."""
    ends = topic_ends(settings, topic)
    consumer = Consumer(confluent_config(settings, **{
        "group.id": f"ocsf-reader-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
        "isolation.level": "read_committed", "enable.partition.eof": True,
    }))
    pending = {p for p, end in ends.items() if end > since.get(p, 0)}
    consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in pending])
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    try:
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error() is not None:  # partition EOF: the end (markers included) is reached
                    pending.discard(message.partition())
                    continue
                records.append(orjson.loads(message.value()))
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
        assert not pending, f"could not read {topic} to its end"
    finally:
        consumer.close()
    return records


def test_every_alert_of_a_simulated_run_is_an_ocsf_detection_finding(
    service_settings: Settings, ch: Any, tmp_path: Path
) -> None:
    app_id = f"ocsf-{uuid.uuid4().hex[:6]}"
    start_groups_at_end(service_settings, app_id)
    run = Run.simulate(seed=5, duration_s=90, rate=100, scenarios=RULE_SCENARIOS, hours_back=90)
    ocsf_from = topic_ends(service_settings, topics.OCSF)
    started = worker(service_settings, tmp_path / "worker.log", app_id)
    try:
        feeder = Feeder(service_settings, run, seconds=10)
        feeder.start()
        feeder.finish()
        wait_until(lambda: event_counts(ch, run)[1] >= len(run.event_ids), 240,
                   f"{len(run.event_ids)} events in ClickHouse", [started])
        wait_until(lambda: caught_up(service_settings, app_id), 240, "every group committed to the end", [started],
                   interval_s=2.0, detail=lambda: f"lag {lags(service_settings, app_id)}")
        alerts = wait_until(lambda: run_alerts(ch, run), 60, "alerts in ClickHouse", [started])
    finally:
        started.stop()

    records = read_committed(service_settings, topics.OCSF, ocsf_from)
    ours = [r for r in records if r["finding_info"]["uid"] in {a["alert_id"] for a in alerts}]
    problems = {r["metadata"]["uid"]: p for r in records if (p := validate(r))}
    assert not problems, f"records that are not valid OCSF {OCSF_VERSION} Detection Findings: {problems}"
    uids = [r["metadata"]["uid"] for r in ours]
    assert len(uids) == len(set(uids)), "an alert version on aiwarden.ocsf twice (read_committed)"

    versions = {row["alert_id"]: row["version"] for row in ch.query(
        "SELECT alert_id, version FROM aiwarden.alerts FINAL WHERE alert_id IN {ids:Array(String)}",
        parameters={"ids": [a["alert_id"] for a in alerts]}).named_results()}
    for alert_id, version in versions.items():
        mine = {r["metadata"]["uid"]: r for r in ours if r["finding_info"]["uid"] == alert_id}
        assert set(mine) == {f"{alert_id}:{v}" for v in range(1, version + 1)}, alert_id  # every version, once
        assert [r["activity_id"] for r in mine.values()].count(CREATE) == 1
    detectors = {a["detectors"][0] for a in alerts}
    assert len(detectors) >= 5, f"the run should raise alerts from many detectors: {detectors}"

    client = connect(service_settings, readonly=True)
    try:
        out = io.StringIO()
        count = write_alerts(iter_alerts(client, "aiwarden", run.start_ms - SLACK_MS, page_rows=7), "ocsf", out)
    finally:
        client.close()
    exported = {r["finding_info"]["uid"]: r for r in map(orjson.loads, out.getvalue().splitlines())}
    assert count == len(out.getvalue().splitlines()) and set(versions) <= set(exported)
    for alert_id, version in versions.items():
        assert exported[alert_id]["metadata"]["uid"] == f"{alert_id}:{version}"
        assert validate(exported[alert_id]) == []

    # the command line, in aiwarden's own shape
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env.update(settings_env(service_settings))
    since_h = int((time.time() * 1000 - run.start_ms + SLACK_MS) / 3_600_000) + 1
    done = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "export", "--format", "jsonl",
                           "--since", f"{since_h}h"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = {a["alert_id"]: a for a in map(orjson.loads, done.stdout.splitlines())}
    assert {a: lines[a]["version"] for a in versions} == versions and f"exported {len(lines)} alerts" in done.stderr
    print(f"OCSF e2e: {len(run.event_ids)} events, {len(versions)} alerts of {len(detectors)} lead detectors, "
          f"{len(ours)} alert versions on {topics.OCSF}, all valid OCSF {OCSF_VERSION}")
