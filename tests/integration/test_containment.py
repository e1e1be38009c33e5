"""Containment end to end over real HTTP: simulated model-server compromise → alert → policy → one
signed quarantine delivery verified by the reference receiver; delivery waits for a receiver that is
down; dry-run sends nothing. Real Kafka, real ClickHouse, real HTTP."""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.services import free_port
from infra.settings import Settings
from schemas.sources import SOURCES
from streams.containment.receiver import Receiver
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator
from streams.worker_process import WorkerProcess, new_app_id

pytestmark = pytest.mark.integration
SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWNvbnRhaW5tZW50"  # base64 of a test secret


def publish_compromise(settings: Settings) -> tuple[str, int]:
    """Publish a model-server compromise (and benign traffic); returns the attacked pod and start_ms."""
    start_ms = (int(time.time()) - 7200) * 1000 + uuid.uuid4().int % 3_000_000
    simulator = Simulator(SimConfig(seed=int(uuid.uuid4().int % 10_000), duration_s=30, rate=200,
                                    scenarios=("model_server_shell",), start_ms=start_ms))
    publisher = Publisher(settings)
    for record in simulator.records():
        publisher.publish_record(record.source, record.record, SOURCES[record.source].primary_key(record.record))
    assert publisher.flush().failed == 0
    (label,) = simulator.labels()
    pod = next(e for e in label.entities if e.startswith("pod:"))
    return pod, start_ms


def worker_for(settings: Settings, tmp_path: Path, url: str, dry_run: bool, app_id: str, **extra: str) -> WorkerProcess:
    return WorkerProcess(
        settings, tmp_path / "worker.log",
        AIWARDEN_WORKER__APP_ID=app_id,
        AIWARDEN_CONTAINMENT__WEBHOOK_URL=url, AIWARDEN_CONTAINMENT__SECRET=SECRET,
        AIWARDEN_CONTAINMENT__DRY_RUN="true" if dry_run else "false", **extra,
    ).start()


def quarantines(out: io.StringIO, pod: str) -> int:
    return len(re.findall(rf"^# \S+: quarantine_workload {re.escape(pod)} ", out.getvalue(), re.M))


def action_rows(ch: Any, pod: str) -> list[dict[str, Any]]:
    return list(ch.query(
        "SELECT action, status, attempt, http_status FROM aiwarden.actions WHERE target = {t:String} ORDER BY time",
        parameters={"t": pod},
    ).named_results())


def wait(predicate: Any, timeout_s: float, worker: WorkerProcess) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert worker.running, worker.log_tail()
        time.sleep(1)
    return predicate()


@contextmanager
def compromise_and_worker(settings: Settings, tmp_path: Path,
                          dry_run: bool) -> Iterator[tuple[io.StringIO, Receiver, str, WorkerProcess]]:
    """A receiver in a thread, a published model-server compromise and a worker delivering to the
    receiver: (the receiver's output, the receiver, the pod, the worker); the worker stops on exit."""
    out = io.StringIO()
    with Receiver(SECRET, 0, out=out) as receiver:
        port = receiver.start_in_thread()
        app_id = new_app_id(settings, "contain")
        pod, _ = publish_compromise(settings)
        worker = worker_for(settings, tmp_path, f"http://127.0.0.1:{port}/", dry_run=dry_run, app_id=app_id)
        try:
            yield out, receiver, pod, worker
        finally:
            worker.stop()


def test_compromised_model_server_is_quarantined_once(service_settings: Settings, ch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with compromise_and_worker(service_settings, tmp_path, dry_run=False) as (out, receiver, pod, worker):
        assert wait(lambda: quarantines(out, pod) >= 1, 180, worker), worker.log_tail()
        assert wait(lambda: any(r["status"] == "delivered" and r["action"] == "quarantine_workload"
                                for r in action_rows(ch, pod)), 60, worker)
        time.sleep(5)  # any second delivery would arrive now
    assert quarantines(out, pod) == 1
    assert "kind: NetworkPolicy" in out.getvalue()
    stats = receiver.snapshot()
    assert stats["rejected_signature"] == 0 and stats["verified"] >= 1


def test_delivery_waits_for_a_receiver_that_is_down(service_settings: Settings, ch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    app_id = new_app_id(service_settings, "contain")
    pod, _ = publish_compromise(service_settings)
    worker = worker_for(service_settings, tmp_path, f"http://127.0.0.1:{port}/", dry_run=False, app_id=app_id,
                        AIWARDEN_CONTAINMENT__BACKOFF_BASE_S="0.5", AIWARDEN_CONTAINMENT__BACKOFF_CAP_S="2",
                        AIWARDEN_CONTAINMENT__MAX_ATTEMPTS="60")
    out = io.StringIO()
    try:
        retrying = wait(lambda: [r for r in action_rows(ch, pod) if r["status"] == "retrying"], 180, worker)
        assert retrying, worker.log_tail()
        with Receiver(SECRET, port, out=out) as receiver:
            receiver.start_in_thread()
            assert wait(lambda: quarantines(out, pod) >= 1, 120, worker), worker.log_tail()
            time.sleep(5)
        assert quarantines(out, pod) == 1
        rows = action_rows(ch, pod)
        delivered = [r for r in rows if r["status"] == "delivered" and r["action"] == "quarantine_workload"]
        assert len(delivered) == 1 and delivered[0]["attempt"] > 1
    finally:
        worker.stop()


def test_dry_run_sends_nothing_and_records_dry_run(service_settings: Settings, ch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with compromise_and_worker(service_settings, tmp_path, dry_run=True) as (out, receiver, pod, worker):
        rows = wait(lambda: [r for r in action_rows(ch, pod) if r["status"] == "dry_run"], 180, worker)
        assert rows, worker.log_tail()
        time.sleep(3)
    assert receiver.snapshot()["received"] == 0
    assert out.getvalue() == ""


def test_blast_radius_limit_holds(service_settings: Settings, ch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With at most one quarantine per window, a second compromised model server is held, not quarantined."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "limits: {window_s: 86400, max_actions: {quarantine_workload: 1, default: 100}}\n"
        "rules:\n"
        "  - name: quarantine\n"
        "    when: {detectors: [model_server_shell], maturity: [stable, incubating]}\n"
        "    actions: [quarantine_workload]\n"
    )
    app_id = new_app_id(service_settings, "contain")
    start_ms = (int(time.time()) - 7200) * 1000 + uuid.uuid4().int % 3_000_000
    simulator = Simulator(SimConfig(seed=int(uuid.uuid4().int % 10_000), duration_s=60, rate=200, instances=2,
                                    scenarios=("model_server_shell",), start_ms=start_ms))
    publisher = Publisher(service_settings)
    for record in simulator.records():
        publisher.publish_record(record.source, record.record, SOURCES[record.source].primary_key(record.record))
    assert publisher.flush().failed == 0
    pods = sorted({e for label in simulator.labels() for e in label.entities if e.startswith("pod:")})
    assert len(pods) == 2
    out = io.StringIO()
    with Receiver(SECRET, 0, out=out) as receiver:
        port = receiver.start_in_thread()
        worker = worker_for(service_settings, tmp_path, f"http://127.0.0.1:{port}/", dry_run=False, app_id=app_id,
                            AIWARDEN_CONTAINMENT__POLICY_PATH=str(policy))
        try:
            def statuses() -> dict[str, set[str]]:
                return {pod: {r["status"] for r in action_rows(ch, pod)} for pod in pods}

            settled = wait(lambda: sum("held" in s for s in statuses().values()) == 1
                           and sum("delivered" in s for s in statuses().values()) == 1, 180, worker)
            assert settled, (statuses(), worker.log_tail())
            held = next(pod for pod, s in statuses().items() if "held" in s)
            alert = wait(lambda: ch.query(
                "SELECT summary FROM aiwarden.alerts FINAL "
                "WHERE has(detectors, 'containment') AND has(entities, {p:String})",
                parameters={"p": held}).result_rows, 60, worker)
            assert alert and "Containment held" in alert[0][0]
        finally:
            worker.stop()
        assert sum(quarantines(out, pod) for pod in pods) == 1


def test_failed_containment_is_dead_lettered_and_alerted(service_settings: Settings, ch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nobody listens: every attempt is refused
    app_id = new_app_id(service_settings, "contain")
    pod, start_ms = publish_compromise(service_settings)
    worker = worker_for(service_settings, tmp_path, f"http://127.0.0.1:{port}/", dry_run=False, app_id=app_id,
                        AIWARDEN_CONTAINMENT__MAX_ATTEMPTS="2", AIWARDEN_CONTAINMENT__BACKOFF_BASE_S="0.2")
    try:
        failed = wait(lambda: [r for r in action_rows(ch, pod)
                               if r["status"] == "failed" and r["action"] == "quarantine_workload"], 180, worker)
        assert failed and failed[0]["attempt"] == 2, worker.log_tail()
        alert = wait(lambda: ch.query(
            "SELECT summary FROM aiwarden.alerts FINAL "
            "WHERE has(detectors, 'containment') AND has(entities, {p:String})",
            parameters={"p": pod}).result_rows, 60, worker)
        assert alert and "Containment failed" in alert[0][0]
        letters = wait(lambda: ch.query(
            "SELECT reason FROM aiwarden.dead_letters WHERE stage = 'deliver' AND raw LIKE {p:String}",
            parameters={"p": f"%{pod}%"}).result_rows, 60, worker)
        assert letters and "after 2 attempts" in letters[0][0]
    finally:
        worker.stop()
