"""An estate file edited under a running worker (real Kafka and ClickHouse): a model server in a namespace
the file does not approve raises an unsanctioned-AI finding; once the file approves the namespace, the
worker reloads it without a restart and a new model server there raises none, while the rest of
detection goes on (a miner in that same workload is still found)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client

from infra.estate import load
from infra.settings import Settings
from schemas.sources import SOURCES
from streams.publish import Publisher
from streams.simulator.estate import ESTATE_FILE
from streams.worker_process import WorkerProcess, new_app_id

pytestmark = pytest.mark.integration


def native(kind: str, namespace: str, pod: str, **blocks: Any) -> dict[str, Any]:
    container = uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{pod}").hex
    return {"schema": "aiwarden.runtime/v1", "id": uuid.uuid4().hex, "time": int(time.time() * 1000), "kind": kind,
            "host": "node-a-1", "cluster": "fresh-cluster", "namespace": namespace, "pod": pod,
            "container_id": container, "image": "ollama/ollama:0.3.14", **blocks}


def model_server(namespace: str, pod: str) -> dict[str, Any]:
    return native("process_exec", namespace, pod, process={"name": "ollama", "cmdline": "ollama serve"})


def publish(publisher: Publisher, *records: dict[str, Any]) -> None:
    for record in records:
        publisher.publish_record("native", record, SOURCES["native"].primary_key(record))
    assert publisher.flush().failed == 0


def detectors_on(ch: Client, pod: str) -> set[str]:
    rows = ch.query("SELECT DISTINCT detector FROM aiwarden.findings WHERE has(entities, {p:String})",
                    parameters={"p": pod}).result_rows
    return {row[0] for row in rows}


def wait_for(predicate, worker: WorkerProcess, timeout_s: float = 120.0, tick=None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while (value := predicate()) is False or value is None or value == set():
        assert worker.running, f"worker exited:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"gave up waiting:\n{worker.log_tail()}"
        if tick is not None:
            tick()
        time.sleep(0.5)
    return value


def test_an_edited_estate_file_reaches_a_running_worker(service_settings: Settings, ch: Client,
                                                        tmp_path: Path) -> None:
    namespace = f"research-{uuid.uuid4().hex[:6]}"
    estate = load(ESTATE_FILE)  # the simulator's estate, its policy path made absolute
    estate_path = tmp_path / "estate.yaml"
    estate_path.write_text(yaml.safe_dump(estate, sort_keys=False))

    app_id = new_app_id(service_settings, "estate")
    worker = WorkerProcess(service_settings, tmp_path / "worker.log", AIWARDEN_WORKER__APP_ID=app_id,
                           AIWARDEN_WORKER__ESTATE_RELOAD_INTERVAL_S="0.2").with_estate(estate_path).start()
    publisher = Publisher(service_settings)
    try:
        before = f"pod:{namespace}/ollama-before"
        publish(publisher, model_server(namespace, "ollama-before"))
        assert "unsanctioned_ai_workload" in wait_for(lambda: detectors_on(ch, before), worker)

        estate["detection"]["approved_namespaces"] = [*estate["detection"]["approved_namespaces"], namespace]
        estate_path.write_text(yaml.safe_dump(estate, sort_keys=False))
        # The detect stage polls the file between batches: ordinary traffic carries the reload.
        heartbeat = native("process_exec", "batch-jobs", "cron-0", image="busybox:1.36",
                           process={"name": "sleep", "cmdline": "sleep 30"})
        wait_for(lambda: "estate file reloaded by detect" in (worker.log_path.read_text(errors="replace")), worker,
                 tick=lambda: publish(publisher, {**heartbeat, "id": uuid.uuid4().hex}))
        log = worker.log_path.read_text(errors="replace")
        assert "AIWARDEN_DETECTION__APPROVED_NAMESPACES" in log and namespace in log

        after = f"pod:{namespace}/ollama-after"
        miner = native("dns_query", namespace, "ollama-after", process={"name": "ollama", "cmdline": "ollama serve"},
                       dns={"query": "pool.supportxmr.com"})
        # Same workload, same partition, in order: once the miner's finding is in, the model server was judged.
        publish(publisher, model_server(namespace, "ollama-after"), miner)
        found = wait_for(lambda: detectors_on(ch, after), worker)
        assert "cryptominer" in found
        assert "unsanctioned_ai_workload" not in found, found
        assert worker.running
    finally:
        worker.stop()
