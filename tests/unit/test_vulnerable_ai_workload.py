"""vulnerable_ai_workload: the priority table, in-use evidence, the image ⋈ namespace join, rows, bounds."""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
import pytest

from detectors.base import STATE_BOUND_BYTES
from detectors.config import DetectionConfig
from detectors.correlation import CONTINUES
from detectors.rules.vulnerable_ai_workload import (
    VulnerabilityRow,
    VulnerableAIWorkload,
    fronts,
    image_ref,
    in_use,
    normalized,
    service_base,
    use_bit,
)
from schemas.envelope import Event
from schemas.findings import Finding
from schemas.vulns import Vulnerability
from tests.contract.events import T0, falco, k8s, package, runtime

pytestmark = pytest.mark.unit

CONFIG = DetectionConfig()
RCE = Vulnerability("CVE-2024-11041", "CRITICAL", 9.8, "0.6.5", "fixed", "vllm: remote code execution")
IMAGE = "vllm/vllm-openai:v0.6.3"


def detector() -> VulnerableAIWorkload:
    return VulnerableAIWorkload(CONFIG)


def join_run(det: VulnerableAIWorkload, events: list[Event],
             states: dict[str, dict[str, Any]] | None = None) -> tuple[list[Finding], list[VulnerabilityRow]]:
    """Events through the detector the way the detect stage runs a join: state per key, forwarded
    events delivered to their keys (after the event that forwarded them), rows collected."""
    states = {} if states is None else states
    findings: list[Finding] = []
    rows: list[VulnerabilityRow] = []
    queue: deque[tuple[str, Event]] = deque()
    for event in events:
        if not det.accepts(event):
            continue
        key = det.state_key(event)
        if key is None:
            continue
        queue.append((key, event))
        while queue:
            at, item = queue.popleft()
            state = orjson.loads(orjson.dumps(states.get(at, {})))  # what the store keeps: JSON
            observed = det.observe(item, state)
            states[at] = state
            findings += observed.findings
            rows += observed.rows
            queue.extend(observed.forwards)
    return findings, rows


def scan(t: int = T0, image: str = IMAGE) -> list[Event]:
    return [
        package("vllm", "0.6.3", image=image, vulnerabilities=(RCE, Vulnerability("CVE-2025-24357", "HIGH", 7.5,
                                                                                   "0.7.0")), t=t),
        package("torch", "2.4.0", image=image, t=t),
        package("openssl", "3.0.13", image=image, ecosystem="deb", t=t,
                vulnerabilities=(Vulnerability("CVE-2024-5535", "LOW", 3.7, ""),)),
    ]


def exposure(t: int = T0) -> Event:
    return k8s("create", "services/ml-prod/vllm-public", t=t,
               extra={"service_type": "LoadBalancer", "service_ports": "8000:31800/TCP"})


def serving(t: int = T0, **kw: Any) -> Event:
    return runtime("process_exec", t=t, **kw)  # python3 -m vllm.entrypoints.openai.api_server ...


# --- priority -------------------------------------------------------------------------------------------

# (severity rank, cvss, fixed, in use, exposed, ai asset) -> (score, level)
PRIORITY_TABLE = [
    ((4, 9.8, "0.6.5", True, True, True), (100, "critical")),
    ((4, 9.8, "0.6.5", True, False, True), (80, "high")),
    ((4, 9.8, "0.6.5", False, True, True), (75, "high")),
    ((4, 9.8, "", True, True, False), (90, "critical")),
    ((3, 7.5, "0.7.0", True, True, True), (85, "critical")),
    ((3, 7.5, "", True, True, True), (80, "high")),
    ((3, None, "", False, False, False), (30, "low")),
    ((2, 5.3, "1.0", True, False, True), (50, "medium")),
    ((1, 3.1, "", False, False, False), (5, "none")),
    ((0, None, "", True, True, True), (55, "medium")),
]


@pytest.mark.parametrize(("args", "expected"), PRIORITY_TABLE)
def test_priority_table(args: tuple[Any, ...], expected: tuple[int, str]) -> None:
    prio = detector().priority(*args, package="vllm", how="LoadBalancer Service ml-prod/vllm-public on port 8000")
    assert (prio.score, prio.level) == expected
    in_use_reason = "vllm in use" if args[3] else "vllm installed, not seen in use"
    assert in_use_reason in prio.reasons
    assert ("AI asset" in prio.reasons) is args[5]
    assert any(r.startswith("publicly exposed (LoadBalancer") for r in prio.reasons) is args[4]
    assert (f"fix available ({args[2]})" in prio.reasons) is bool(args[2])


def test_priority_thresholds_are_settings() -> None:
    strict = VulnerableAIWorkload(DetectionConfig(vuln_priority_critical=101 - 1, vuln_priority_high=90))
    assert strict.priority(4, 9.8, "0.6.5", True, True, True).level == "critical"
    assert strict.priority(3, 7.5, "0.7.0", True, True, True).level == "medium"


# --- in use -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exe", "cmdline", "path", "expected"), [
    ("/usr/local/bin/vllm", "vllm serve meta-llama/Llama-3.1-8B", "", ("vllm",)),
    ("/usr/bin/python3", "python3 -m vllm.entrypoints.openai.api_server --port 8000", "", ("vllm",)),
    ("/usr/bin/python3", "python3 serve.py", "/usr/local/lib/python3.12/site-packages/vllm/engine/llm.py", ("vllm",)),
    ("/usr/local/bin/text-generation-launcher", "text-generation-launcher --model-id x", "",
     ("text-generation-inference",)),
    ("/opt/tritonserver/bin/tritonserver", "tritonserver --model-repository=/models", "", ("tritonserver",)),
    ("/usr/bin/python3", "python -m llama_index.cli rag", "", ("llama-index",)),
    ("/usr/bin/python3", "python app.py", "/usr/lib/python3/dist-packages/Sentence_Transformers/x.py",
     ("sentence-transformers",)),
    ("/usr/bin/python3", "python -m pip install vllm", "", ()),
    ("/usr/bin/python3", "python app.py", "/usr/lib/python3/dist-packages/requests/api.py", ()),
    ("/bin/bash", "bash -c 'ls /opt/vllm-cache'", "", ()),
])
def test_in_use_evidence(exe: str, cmdline: str, path: str, expected: tuple[str, ...]) -> None:
    assert detector().evidence(exe, cmdline, path) == expected


def test_in_use_covers_distributions_of_a_module_and_names() -> None:
    assert in_use("llama-index-core", use_bit("llama-index"))
    assert in_use("vllm", use_bit("vllm"))
    assert not in_use("torchvision", use_bit("torch"))
    assert normalized("Sentence_Transformers") == "sentence-transformers" == normalized("sentence.transformers")
    assert image_ref("docker.io/vllm/vllm-openai:v0.6.3@sha256:" + "0" * 64) == IMAGE
    assert image_ref("docker.io/library/python:3.12") == "python:3.12"


def test_runtime_events_without_evidence_have_no_key() -> None:
    det = detector()
    assert det.state_key(runtime("process_exec", process="bash", cmdline="bash", parent="python3")) is None
    assert det.state_key(runtime("dns_query", dst_host="pypi.org")) is None  # DNS: not a class it reads
    assert det.state_key(serving()) == f"image:{IMAGE}"
    assert det.state_key(scan()[0]) == f"image:{IMAGE}"
    assert det.state_key(exposure()) == "namespace:ml-prod"
    internal = k8s("create", "services/ml-prod/vllm", extra={"service_type": "ClusterIP", "service_ports": "8000/TCP"})
    assert det.state_key(internal) is None


# --- the join ----------------------------------------------------------------------------------------------

ORDERS = {
    "scan, exposure, runtime": lambda: [*scan(T0), exposure(T0 + 1000), serving(T0 + 2000)],
    "runtime, exposure, scan": lambda: [serving(T0), exposure(T0 + 1000), *scan(T0 + 2000)],
    "exposure, runtime, scan": lambda: [exposure(T0), serving(T0 + 1000), *scan(T0 + 2000)],
    "runtime, scan, exposure": lambda: [serving(T0), *scan(T0 + 1000), exposure(T0 + 2000)],
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_exposed_vulnerable_in_use_raises_one_finding_whatever_the_order(order: str) -> None:
    findings, rows = join_run(detector(), ORDERS[order]())
    assert len(findings) == 1, [f.summary for f in findings]
    finding = findings[0]
    assert finding.entity_id == "pod:ml-prod/vllm-0" and finding.severity == "critical"
    assert {"image:" + IMAGE, "namespace:ml-prod", "container:3f2a9c1b7d4e"} <= set(finding.entities)
    assert finding.public_exposure and finding.ai_asset
    assert finding.attributes["vulnerabilities"] == "CVE-2024-11041,CVE-2025-24357"
    assert finding.attributes["priority"] == "critical"
    assert "publicly exposed (LoadBalancer Service ml-prod/vllm-public on port 8000)" in finding.summary
    assert "vllm 0.6.3 in use" in finding.summary
    # who exposed it: the workload's story continues at that principal's exposure alert
    exposer = exposure().principal
    assert exposer and finding.attributes[CONTINUES] == f"principal:{exposer}"
    assert f"principal:{exposer}" in finding.entities
    latest = {(r.workload, r.package, r.vulnerability_id): r for r in rows}
    rce = latest[("pod:ml-prod/vllm-0", "vllm", "CVE-2024-11041")]
    assert (rce.in_use, rce.exposed, rce.ai_asset, rce.priority, rce.priority_score) == (1, 1, 1, "critical", 100)
    assert rce.in_use_first_seen is not None and rce.purl == "pkg:pypi/vllm@0.6.3" and rce.fixed_version == "0.6.5"
    torch = latest[("pod:ml-prod/vllm-0", "torch", "")]
    assert (torch.in_use, torch.priority, torch.ai_package) == (0, "none", 1)
    openssl = [r for r in rows if r.package == "openssl"]
    assert openssl and all(r.ai_package == 0 and r.severity == "LOW" for r in openssl)


def test_not_exposed_or_not_in_use_is_no_finding_but_rows() -> None:
    findings, rows = join_run(detector(), [*scan(), serving(T0 + 1000)])
    assert findings == []
    rce = [r for r in rows if r.vulnerability_id == "CVE-2024-11041"][-1]
    assert (rce.workload, rce.in_use, rce.exposed, rce.priority) == ("pod:ml-prod/vllm-0", 1, 0, "high")
    findings, rows = join_run(detector(), [*scan(), exposure(T0 + 1000)])
    assert findings == []
    assert {r.workload for r in rows} == {f"image:{IMAGE}"}, "nothing runs the image yet: rows name the image"
    other_ns = exposure(T0)
    other_ns.namespace = "web"
    findings, _ = join_run(detector(), [*scan(), other_ns, serving(T0 + 1000)])
    assert findings == [], "an exposure in another namespace does not expose this workload"
    other_service = k8s("create", "services/ml-prod/triton-public", t=T0,
                        extra={"service_type": "LoadBalancer", "service_ports": "8000/TCP"})
    findings, _ = join_run(detector(), [*scan(), other_service, serving(T0 + 1000)])
    assert findings == [], "a Service named after another workload does not expose this one"


def test_service_names_stand_in_for_selectors() -> None:
    assert service_base("services/ml-prod/vllm-public") == "vllm" == service_base("ingresses/ml/vllm")
    assert fronts("vllm", "pod:ml-prod/vllm-7d9f8-x2k4q") and fronts("vllm", "pod:ml-prod/vllm-0")
    assert not fronts("vllm", "pod:ml-prod/vllmx-0") and not fronts("vllm", "container:3f2a9c1b7d4e")


def test_redelivery_and_repeats_raise_nothing_new() -> None:
    det, states = detector(), {}
    events = ORDERS["scan, exposure, runtime"]()
    first, rows = join_run(det, events, states)
    again, again_rows = join_run(det, events + [serving(T0 + 5000, seq=i) for i in range(50)], states)
    assert len(first) == 1 and again == []
    assert len(again_rows) < len(rows), "repeats change no row (last seen refreshes only hourly)"
    fresh, _ = join_run(detector(), events)
    assert [f.finding_id for f in fresh] == [f.finding_id for f in first], "ids are deterministic"


def test_a_new_critical_vulnerability_is_a_new_finding() -> None:
    det, states = detector(), {}
    first, _ = join_run(det, ORDERS["scan, exposure, runtime"](), states)
    newer = Vulnerability("CVE-2025-30165", "CRITICAL", 9.8, "0.8.5")
    second, _ = join_run(det, [package("vllm", "0.6.3", vulnerabilities=(RCE, newer), t=T0 + 9000)], states)
    assert len(first) == 1 and len(second) == 1
    assert second[0].attributes["vulnerabilities"] == "CVE-2024-11041,CVE-2025-30165"


def test_falco_events_and_inventory_context_count() -> None:
    event = falco("Terminal shell in container", image=IMAGE)
    event.process_cmdline = "python3 -m vllm.entrypoints.openai.api_server"
    event.extra.update({"ai_asset": "pod:ml-prod/vllm-0", "ai_exposed": "true"})
    findings, _ = join_run(detector(), [*scan(), event])
    assert len(findings) == 1 and "inventory: exposed" in findings[0].summary
    assert CONTINUES not in findings[0].attributes  # nobody's exposure to join: the pod's own alert


def test_state_stays_bounded_under_hostile_scans_and_workloads() -> None:
    det, states = detector(), {}
    hostile = "\x00\u202e🔥日本語" * 50
    events: list[Event] = []
    for i in range(300):
        vulns = tuple(Vulnerability(f"CVE-2024-{i:05d}{j}{hostile}", "CRITICAL", 9.8, f"{i}.{j}{hostile}")
                      for j in range(12))
        events.append(package(f"langchain-{i}{hostile}", f"{i}{hostile}", vulnerabilities=vulns, t=T0 + i, seq=i))
        events.append(serving(T0 + i, pod=f"vllm-{i}{hostile}", seq=i))
        ns_exposure = exposure(T0 + i)
        ns_exposure.namespace = f"ns-{i}{hostile}"
        ns_exposure.resource = f"services/ns-{i}/vllm-public"
        events.append(ns_exposure)
        events.append(serving(T0 + i, ns=f"ns-{i}{hostile}", seq=i))
    join_run(det, events, states)
    sizes = {key: len(orjson.dumps(state)) for key, state in states.items()}
    assert max(sizes.values()) < VulnerableAIWorkload.state_bound_bytes, max(sizes.items(), key=lambda kv: kv[1])
    assert all(size < STATE_BOUND_BYTES for key, size in sizes.items() if not key.startswith("image:"))


def test_an_exposer_learned_after_the_inventory_said_exposed_raises_the_finding_again_naming_whom() -> None:
    """The inventory's word (no Service, nobody named) made the first finding; the Service change that names
    who exposed it comes later: a second finding, which continues at that person's alert. Once each."""
    event = falco("Terminal shell in container", image=IMAGE)
    event.process_cmdline = "python3 -m vllm.entrypoints.openai.api_server"
    event.extra.update({"ai_asset": "pod:ml-prod/vllm-0", "ai_exposed": "true"})
    det = detector()
    first, _ = join_run(det, [*scan(), event])
    assert len(first) == 1 and CONTINUES not in first[0].attributes
    findings, _ = join_run(det, [*scan(), event, exposure(T0 + 5_000), exposure(T0 + 6_000)])
    named = [f for f in findings if CONTINUES in f.attributes]
    assert len(findings) == 2 and len(named) == 1 and named[0].finding_id != first[0].finding_id
