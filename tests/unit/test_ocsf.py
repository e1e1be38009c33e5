"""OCSF Detection Findings: the mapping of alerts, validated against the pinned OCSF version by pydantic-ocsf."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from detectors.registry import DETECTORS
from infra.settings import Settings
from schemas import entities as ent
from schemas import techniques
from schemas.findings import Alert
from streams import topics
from streams.integrations.ocsf import (
    CLOSE,
    CREATE,
    OCSF_VERSION,
    UPDATE,
    detection_finding,
    triage_finding,
    validate,
)
from streams.pipeline.correlate import Correlation
from streams.soc.triage import triage_records
from tests.contract.events import mixed_stream
from tests.unit.pipeline_fakes import Message, Out, event_message, memory_store
from tests.unit.test_stages import detection

pytestmark = pytest.mark.unit

PRINCIPAL = ent.principal("arn:aws:sts::418295730164:assumed-role/ml-ops/alice")


def alert(**changes: object) -> Alert:
    base = Alert(
        alert_id="4f1c", first_seen=1_767_000_000_000, last_seen=1_767_000_090_000, severity="high",
        risk_score=72.5, detectors=["model_server_shell", "weights_exfiltration", "prompt_injection"],
        atlas_techniques=["AML.T0050", "AML.T0051.000", "AML.T0024.002"], attack_techniques=["T1059.004", "T1048"],
        tactics=["execution", "exfiltration"],
        entities=[ent.pod("ml-prod", "vllm-0"), ent.container("3f2a9c1b7d4e"), PRINCIPAL, ent.apikey("key-7"),
                  ent.ip("203.0.113.9"), ent.model("meta-llama/Llama-3.1-8B"), ent.host("gpu-node-1")],
        primary_entity=ent.pod("ml-prod", "vllm-0"), summary="Model server pod ml-prod/vllm-0 spawned a shell",
        evidence_event_ids=["ev1", "ev2"], finding_ids=["f1", "f2", "f3"], maturity="stable", version=1,
        updated_ms=1_767_000_000_000,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_full_alert_validates_and_carries_what_the_issue_lists() -> None:
    record = detection_finding(alert(version=3, updated_ms=1_767_000_090_000))
    assert validate(record) == []
    assert record["class_uid"] == 2004 and record["category_uid"] == 2
    assert (record["activity_id"], record["type_uid"]) == (UPDATE, 200402)
    assert record["time"] == 1_767_000_090_000 and record["severity_id"] == 4
    assert record["metadata"]["version"] == OCSF_VERSION and record["metadata"]["product"]["vendor_name"] == "aiwarden"
    assert record["metadata"]["uid"] == "4f1c:3"
    info = record["finding_info"]
    assert info["uid"] == "4f1c" and info["title"] and info["desc"].startswith("Model server pod")
    assert (info["first_seen_time"], info["last_seen_time"]) == (1_767_000_000_000, 1_767_000_090_000)
    by_id = {(a.get("sub_technique") or a["technique"])["uid"]: a for a in info["attacks"]}
    assert set(by_id) == {"AML.T0050", "AML.T0051.000", "AML.T0024.002", "T1059.004", "T1048"}
    assert by_id["T1059.004"]["technique"]["name"] == "Command and Scripting Interpreter"
    assert by_id["T1059.004"]["tactic"] == {"uid": "TA0002", "name": "Execution",
                                            "src_url": "https://attack.mitre.org/tactics/TA0002"}
    assert by_id["AML.T0024.002"]["tactic"]["uid"] == "AML.TA0010"  # the alert's tactic among the technique's
    assert [e["uid"] for e in info["related_events"]] == ["ev1", "ev2"]
    assert {"name": "owasp_llm", "value": "LLM01:2025"} in info["tags"]
    resources = {r["uid"]: r for r in record["resources"]}
    assert resources[ent.model("meta-llama/Llama-3.1-8B")]["type"] == "AI Model"
    assert resources[ent.pod("ml-prod", "vllm-0")]["namespace"] == "ml-prod"
    user = record["actor"]["user"]
    assert user["uid"] == PRINCIPAL.split(":", 1)[1] and user["credential_uid"] == "key-7"
    assert user["account"]["uid"] == "418295730164"
    assert record["risk_score"] == 72 and record["confidence_id"] == 3


def test_activity_follows_the_alert_version_and_status() -> None:
    assert detection_finding(alert())["activity_id"] == CREATE
    assert detection_finding(alert(version=2))["activity_id"] == UPDATE
    closed = detection_finding(alert(version=4, status="closed"))
    assert (closed["activity_id"], closed["type_uid"], closed["status_id"]) == (CLOSE, 200403, 4)
    assert validate(closed) == []


def test_triage_status_changes_are_ocsf_updates_and_a_close() -> None:
    latest = alert(version=3)

    def change(**body: object) -> dict[str, object]:
        (record,) = triage_records("ana", {"alert_ids": [latest.alert_id], **body})
        return record

    acknowledged = triage_finding(latest, change(status="acknowledged"))
    resolved_change = change(status="resolved", resolution="false_positive")
    resolved = triage_finding(latest, resolved_change)
    reopened = triage_finding(latest, change(status="open"))
    assert acknowledged is not None and resolved is not None and reopened is not None
    assert (acknowledged["activity_id"], acknowledged["status_id"]) == (UPDATE, 2)
    assert acknowledged["status"] == "In Progress" and acknowledged["status_detail"] == "acknowledged by ana"
    assert (resolved["activity_id"], resolved["type_uid"], resolved["status_id"]) == (CLOSE, 200403, 4)
    assert resolved["status_detail"] == "resolved as false_positive by ana"
    assert (reopened["activity_id"], reopened["status_id"]) == (UPDATE, 1) and "status_detail" not in reopened
    assert resolved["time"] == resolved["finding_info"]["modified_time"] == resolved_change["time_ms"]
    # a record of its own: consumers deduplicate on metadata.uid, and the alert's version 3 was sent already
    assert resolved["metadata"]["uid"] == f"4f1c:3:triage:{resolved_change['triage_id']}"
    assert resolved["metadata"]["correlation_uid"] == "4f1c"
    assert resolved["unmapped"]["triage_resolution"] == "false_positive"
    for record in (acknowledged, resolved, reopened):
        assert validate(record) == []
    # an assignment or a comment alone is no status change
    assert triage_finding(latest, change(assignee="ana")) is None
    assert triage_finding(latest, change(comment="looking")) is None
    # a merged alert resolved later is still closed as resolved, not as merged
    merged = triage_finding(alert(status="merged", merged_into="9b2e"), resolved_change)
    assert merged is not None and merged["status"] == "Resolved" and "merged" not in merged["status_detail"]


def test_minimal_alerts_validate() -> None:
    bare = alert(detectors=[], atlas_techniques=[], attack_techniques=[], tactics=[], entities=[],
                 evidence_event_ids=[], finding_ids=[], maturity="sandbox", severity="info", risk_score=0.0)
    record = detection_finding(bare)
    assert validate(record) == [] and "actor" not in record and record["confidence_id"] == 1


def test_the_validator_refuses_what_the_schema_does_not_define() -> None:
    record = detection_finding(alert())
    assert any("severity_id" in p for p in validate({**record, "severity_id": 42}))
    assert any("type_uid" in p for p in validate({**record, "type_uid": 200409}))
    assert any("bogus" in p for p in validate({**record, "bogus": 1}))
    nested = orjson.loads(orjson.dumps(record))
    nested["finding_info"]["attacks"][0]["technique"]["colour"] = "red"
    nested["actor"]["user"]["shoe_size"] = 44
    problems = validate(nested)
    assert any("finding_info.attacks[0].technique.colour" in p for p in problems)
    assert any("actor.user.shoe_size" in p for p in problems)
    del nested["finding_info"]["uid"]
    assert any("uid" in p for p in validate(nested))


def test_a_technique_newer_than_mitres_pinned_data_keeps_its_id_and_the_record_stays_valid() -> None:
    """A vendor's rule may tag a technique MITRE published after the pinned data (or a custom id): the alert
    still reaches OCSF, the id as the technique's uid, under its known parent when it is a sub-technique."""
    record = detection_finding(alert(attack_techniques=["T9999", "T1059.999"], atlas_techniques=["AML.T9999.001"],
                                     tactics=["execution"]))
    assert validate(record) == []
    attacks = record["finding_info"]["attacks"]
    assert attacks[0] == {"technique": {"uid": "T9999"}}
    assert attacks[1]["technique"] == {"uid": "T1059", "name": "Command and Scripting Interpreter",
                                       "src_url": "https://attack.mitre.org/techniques/T1059"}
    assert attacks[1]["sub_technique"] == {"uid": "T1059.999"} and attacks[1]["version"] == techniques.version("attack")
    assert attacks[2] == {"technique": {"uid": "AML.T9999.001"}}


def test_correlate_sends_every_alert_version_as_ocsf_with_the_alert(tmp_path: Path) -> None:
    """Real detectors over a mixed stream, then correlation: one OCSF record per alert record, same key,
    every one valid, Create exactly once per alert."""
    settings = Settings(state_dir=tmp_path)
    detect, found, _ = detection(settings)
    for i, event in enumerate(mixed_stream(seed=5, n=1500)):
        detect.events_batch([event_message(event, offset=i)])
    findings = found.on(topics.FINDINGS)
    out = Out()
    correlation = Correlation(settings, out, states=memory_store("correlation"))
    correlation.findings_batch([Message(f["value"], f["key"], offset=i, topic=topics.FINDINGS)
                                for i, f in enumerate(findings)])
    alerts, ocsf = out.on(topics.ALERTS), out.on(topics.OCSF)
    assert len({orjson.loads(a["value"])["detectors"][0] for a in alerts}) >= 3, "the stream should reach detectors"
    assert [a["key"] for a in alerts] == [o["key"] for o in ocsf] and not out.on(topics.DLQ)
    creates: dict[str, int] = {}
    for sent in ocsf:
        record = orjson.loads(sent["value"])
        assert validate(record) == [], record["finding_info"]["uid"]
        if record["activity_id"] == CREATE:
            creates[record["finding_info"]["uid"]] = creates.get(record["finding_info"]["uid"], 0) + 1
    assert set(creates) == {a["key"].decode() for a in alerts} and set(creates.values()) == {1}


def test_every_detector_maps() -> None:
    for name, cls in DETECTORS.items():
        record = detection_finding(alert(detectors=[name], atlas_techniques=list(cls.atlas),
                                         attack_techniques=list(cls.attack), tactics=list(cls.tactics)))
        assert validate(record) == [], name
        assert len(record["finding_info"]["attacks"]) == len(cls.atlas) + len(cls.attack), name
        assert record["finding_info"]["analytic"]["uid"] == name


def test_containment_alerts_map_too() -> None:
    from streams.agents.containment import containment_alert

    action = {"action_id": "a1", "action": "quarantine_pod", "target": ent.pod("ml-prod", "vllm-0"),
              "risk_score": 80.0, "evidence_event_ids": ["ev1"]}
    record = detection_finding(Alert.from_dict(containment_alert(action, "failed", "after 5 attempts")))
    assert validate(record) == [] and record["finding_info"]["analytic"]["uid"] == "containment"
