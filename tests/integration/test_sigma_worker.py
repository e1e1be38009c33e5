"""Sigma rules in a real worker: a simulated miner on a GPU node goes through Kafka, the pack's rule
fires in the detect stage and its finding correlates into an alert in ClickHouse; a user's own rule
folder, named by one setting, fires the same way; the pack's correlation rule (a prompt-injection
campaign per caller) fires through the re-key topic."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from detectors.sigma.rules import PACK_DIR, RuleSet
from infra.settings import Settings
from schemas.sources import SOURCES
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator
from streams.worker_process import WorkerProcess, start_groups_at_end

pytestmark = pytest.mark.integration

USER_RULE = """title: Miner wallet option (user rule)
id: {id}
status: test
author: A. User
logsource: {{product: linux, category: process_creation}}
detection:
  sel: {{CommandLine|contains|all: [' -u ', ' -p ', 'stratum']}}
  condition: sel
level: medium
"""


def wait_for(predicate, timeout_s: float, worker: WorkerProcess):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        assert worker.running, f"worker exited:\n{worker.log_tail()}"
        time.sleep(0.5)
        value = predicate()
    return value


def test_a_pack_rule_and_a_users_rule_fire_through_a_worker_into_alerts(
    service_settings: Settings, ch: Client, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    app_id = f"sigma-{uuid.uuid4().hex[:6]}"
    start_groups_at_end(service_settings, app_id)
    user_rules = tmp_path / "my-sigma"
    user_rules.mkdir()
    user_id = str(uuid.uuid4())
    (user_rules / "wallet.yml").write_text(USER_RULE.format(id=user_id))

    gpu_miner = next(r for r in RuleSet.load([PACK_DIR]).rules if r.title == "Crypto Miner on a GPU Node")
    start_ms = int(time.time() * 1000) - 2 * 3_600_000 + uuid.uuid4().int % 1_000_000
    records = list(Simulator(SimConfig(seed=5, duration_s=60, rate=50, scenarios=("cryptominer", "prompt_injection"),
                                       start_ms=start_ms)).records())
    miner_entities = {SOURCES[r.source].normalize(r.record).entity_id for r in records if r.attack == "cryptominer"}
    injection_entities = {SOURCES[r.source].normalize(r.record).entity_id for r in records
                          if r.attack == "prompt_injection"}
    pack = RuleSet.load([PACK_DIR])
    campaign = next(c for c in pack.correlations if c.title == "Jailbreak Phrases Repeated by One Caller")
    publisher = Publisher(service_settings)
    for record in records:
        spec = SOURCES[record.source]
        publisher.publish_record(record.source, record.record, spec.primary_key(record.record))
    assert publisher.flush().failed == 0

    worker = WorkerProcess(service_settings, tmp_path / "worker.log", AIWARDEN_WORKER__APP_ID=app_id,
                           AIWARDEN_SIGMA__RULES=f'["{user_rules}"]').start()
    try:
        query = ("SELECT alert_id, maturity, severity FROM aiwarden.alerts FINAL "
                 "WHERE has(detectors, {d:String}) AND hasAny(entities, {e:Array(String)})")

        def alerts(detector: str, entities: set[str] = miner_entities) -> list[tuple[str, str, str]]:
            rows = ch.query(query, parameters={"d": detector, "e": sorted(entities)}).result_rows
            return [tuple(row) for row in rows]

        pack_alerts = wait_for(lambda: alerts(gpu_miner.detector_id), 180, worker)
        assert pack_alerts, f"no alert from {gpu_miner.detector_id}:\n{worker.log_tail()}"
        assert any(severity == "critical" for _, _, severity in pack_alerts)
        user_alerts = wait_for(lambda: alerts(f"sigma:{user_id}"), 60, worker)
        assert user_alerts, f"no alert from the user's rule:\n{worker.log_tail()}"
        # a correlation rule of the pack: re-keyed by caller, counted in the re-keyed store
        campaign_alerts = wait_for(lambda: alerts(campaign.detector_id, injection_entities), 60, worker)
        assert campaign_alerts, f"no alert from the correlation {campaign.detector_id}:\n{worker.log_tail()}"
        finding = ch.query(
            "SELECT title, attributes['sigma_author'] FROM aiwarden.findings FINAL WHERE detector = {d:String} "
            "LIMIT 1", parameters={"d": f"sigma:{user_id}"}).result_rows
        assert finding == [("Miner wallet option (user rule)", "A. User")]
    finally:
        worker.stop()
