"""An ``Alert`` as an OCSF **Detection Finding** (class_uid 2004) of OCSF ``OCSF_VERSION``.

One record per alert version, on ``aiwarden.ocsf`` (the correlate stage sends it in the same Kafka
transaction as the alert): ``activity_id`` 1 Create for version 1, 2 Update for every later version
(correlation folded another finding in), 3 Close for an alert whose ``status`` is ``closed`` or ``merged``
(its findings went on in another alert: ``status`` Other "Merged", ``status_detail`` names that alert). An
alert that stops growing simply gets no more records (a new alert replaces it when its anchor's next
finding falls outside the correlation window).

Triage (``triage_finding``, sent by the worker that takes the change, ``POST /alerts/triage``): the alert's
latest version again, with ``activity_id`` 2 Update and ``status`` In Progress once acknowledged, New when
reopened, and 3 Close with ``status`` Resolved and ``status_detail`` (resolution and who) once resolved;
``metadata.uid`` = ``<alert id>:<version>:triage:<triage id>``, ``time`` the change's. A SIEM that follows
``aiwarden.ocsf`` sees the SOC's decisions; assignments and comments alone send nothing.

What goes where:

* ``finding_info``: ``uid`` = alert id, ``title`` (the lead detector's title), ``desc`` (the summary),
  ``first_seen_time`` / ``last_seen_time``, ``created_time`` / ``modified_time``, ``types`` (detector
  titles), ``analytic`` (lead detector; Rule, or Learning for river models) and ``related_analytics`` (the
  others), ``attacks`` (every ATT&CK and ATLAS technique with its tactics, names and URLs from MITRE's data,
  ``schemas.techniques``), ``related_events`` (the evidence event ids), ``tags`` (OWASP LLM Top 10
  categories of the detectors).
* ``resources``: every entity (workloads, hosts, namespaces, images, models, keys, principals, IPs) with
  ``uid`` = aiwarden's entity id, ``type`` and ``name``. OCSF up to 1.7.0 has no AI model object: models
  are resources of type ``AI Model``.
* ``actor.user`` (host profile): the first principal (ARN / user) and the first API key
  (``credential_uid``); the AWS account from the ARN.
* ``severity_id``, ``risk_score`` (0..100), ``risk_level_id`` (from the severity), ``confidence_id``
  (from the maturity: stable high, incubating medium, sandbox low), ``is_alert``, ``status_id``.
* ``metadata``: ``version``, ``product`` (vendor aiwarden), ``uid`` = ``<alert id>:<version>`` (the same
  on a re-sent record: consumers deduplicate on it), ``correlation_uid`` = alert id.
* ``unmapped``: aiwarden's own fields (alert version, maturity, primary entity, finding ids).

``validate(record)`` checks a record against the pinned version with ``pydantic-ocsf`` (a dev/test aid).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from detectors.base import short_principal
from detectors.registry import DETECTORS
from schemas import techniques
from schemas.entities import kind_of
from schemas.findings import Alert

OCSF_VERSION = "1.5.0"
CLASS_UID = 2004
CATEGORY_UID = 2
CREATE, UPDATE, CLOSE = 1, 2, 3
ACTIVITY_NAMES = {CREATE: "Create", UPDATE: "Update", CLOSE: "Close"}
SEVERITY_IDS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
RISK_LEVELS = {"info": (0, "Info"), "low": (1, "Low"), "medium": (2, "Medium"), "high": (3, "High"),
               "critical": (4, "Critical")}
CONFIDENCE = {"stable": (3, "High"), "incubating": (2, "Medium"), "sandbox": (1, "Low")}
RESOURCE_TYPES = {
    "pod": "Kubernetes Pod", "container": "Container", "namespace": "Kubernetes Namespace", "host": "Host",
    "image": "Container Image", "model": "AI Model", "apikey": "API Key", "principal": "Principal",
    "ip": "IP Address",
}
RULE, LEARNING = (1, "Rule"), (4, "Learning (ML/DL)")


def _product_version() -> str:
    try:
        return package_version("aiwarden")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "0"


PRODUCT = {"name": "aiwarden", "vendor_name": "aiwarden", "version": _product_version()}


def activity(alert: Alert) -> int:
    """Create for an alert's first version, Close once closed, Update otherwise."""
    if alert.status in ("closed", "merged"):
        return CLOSE
    return CREATE if alert.version <= 1 else UPDATE


def _status(alert: Alert, activity_id: int) -> dict[str, Any]:
    if alert.status == "merged":
        return {"status_id": 99, "status": "Merged", "status_detail": f"merged into alert {alert.merged_into}"}
    return {"status_id": 4, "status": "Resolved"} if activity_id == CLOSE else {"status_id": 1, "status": "New"}


def _ref(entry_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"uid": entry_id, "name": entry["name"], "src_url": entry["url"]}


def attack(technique_id: str, wanted_tactics: list[str]) -> dict[str, Any]:
    """An OCSF ``attack`` for one ATT&CK or ATLAS technique id (its parent as ``technique`` when it is a
    sub-technique); ``tactic`` is the technique's tactic the alert names, else its first."""
    entry = techniques.technique(technique_id)
    if entry is None:
        return _unknown_attack(technique_id)
    out: dict[str, Any] = {"version": techniques.version(entry["framework"])}
    parent_id = entry.get("parent")
    if parent_id:
        parent = techniques.technique(parent_id)
        out["technique"] = _ref(parent_id, parent) if parent else {"uid": parent_id}
        out["sub_technique"] = _ref(technique_id, entry)
    else:
        out["technique"] = _ref(technique_id, entry)
    found = [(tid, t) for tid in entry["tactics"] if (t := techniques.tactic(tid))]
    if found:
        names = {name.replace("ml-", "ai-") for name in wanted_tactics}
        chosen = next(
            (f for f in found if f[1].get("shortname", f[1]["name"].lower().replace(" ", "-")) in names), found[0]
        )
        out["tactic"] = _ref(*chosen)
        out["tactics"] = [_ref(tid, t) for tid, t in found]
    return out


def _unknown_attack(technique_id: str) -> dict[str, Any]:
    """An ``attack`` for an id MITRE's pinned data does not have (a rule tagged with a newer technique, or a
    custom one): the id itself, with no tactic; under its known parent (and that framework's version) when it
    is a sub-technique."""
    parent = techniques.technique(parent_id := technique_id.rpartition(".")[0])  # "AML" of AML.T…: none
    if parent is not None:
        return {"version": techniques.version(parent["framework"]), "technique": _ref(parent_id, parent),
                "sub_technique": {"uid": technique_id}}
    return {"technique": {"uid": technique_id}}


def _resource(entity: str) -> dict[str, Any]:
    kind = kind_of(entity)
    value = entity.split(":", 1)[1] if ":" in entity else entity
    resource: dict[str, Any] = {"uid": entity, "name": value, "type": RESOURCE_TYPES.get(kind, kind or "Other")}
    if kind == "pod":
        resource["namespace"] = value.split("/", 1)[0]
    elif kind == "host":
        resource["hostname"] = value
    elif kind == "ip":
        resource["ip"] = value
    return resource


def _actor(entities: list[str]) -> dict[str, Any] | None:
    principals = [e.split(":", 1)[1] for e in entities if kind_of(e) == "principal"]
    keys = [e.split(":", 1)[1] for e in entities if kind_of(e) == "apikey"]
    if not principals and not keys:
        return None
    user: dict[str, Any] = {}
    if principals:
        user.update(uid=principals[0], name=short_principal(principals[0]))
        arn = principals[0].split(":")
        if principals[0].startswith("arn:aws") and len(arn) > 4 and arn[4]:
            user["account"] = {"uid": arn[4], "type_id": 10, "type": "AWS Account"}
    if keys:
        user["credential_uid"] = keys[0]
        user.setdefault("name", keys[0])
    return {"user": user}


def _analytic(detector: str) -> dict[str, Any]:
    cls = DETECTORS.get(detector)
    type_id, type_name = LEARNING if cls is not None and ".anomaly." in cls.__module__ else RULE
    return {"uid": detector, "name": cls.title if cls is not None else detector, "type_id": type_id, "type": type_name}


def detection_finding(alert: Alert) -> dict[str, Any]:
    """The OCSF Detection Finding of one alert version (see the module docstring for the mapping)."""
    activity_id = activity(alert)
    severity_id = SEVERITY_IDS[alert.severity]
    risk_level_id, risk_level = RISK_LEVELS[alert.severity]
    confidence_id, confidence = CONFIDENCE.get(alert.maturity, (0, "Unknown"))
    updated = alert.updated_ms or alert.last_seen
    analytics = [_analytic(d) for d in alert.detectors]
    owasp = sorted({c for d in alert.detectors if (cls := DETECTORS.get(d)) for c in cls.owasp_llm})
    lead = analytics[0]["name"] if analytics else "aiwarden alert"
    finding_info: dict[str, Any] = {
        "uid": alert.alert_id,
        "title": lead if len(analytics) <= 1 else f"{lead} (+{len(analytics) - 1} more detections)",
        "desc": alert.summary,
        "created_time": alert.first_seen,
        "modified_time": updated,
        "first_seen_time": alert.first_seen,
        "last_seen_time": alert.last_seen,
        "types": [a["name"] for a in analytics],
        "product": PRODUCT,
        "attacks": [attack(t, alert.tactics) for t in (*alert.attack_techniques, *alert.atlas_techniques)],
        "related_events": [{"uid": event_id} for event_id in alert.evidence_event_ids],
        "related_events_count": len(alert.evidence_event_ids),
    }
    if analytics:
        finding_info["analytic"] = analytics[0]
    if len(analytics) > 1:
        finding_info["related_analytics"] = analytics[1:]
    if owasp:
        finding_info["tags"] = [{"name": "owasp_llm", "value": c} for c in owasp]
    record: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": ACTIVITY_NAMES[activity_id],
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Detection Finding: {ACTIVITY_NAMES[activity_id]}",
        "time": updated,
        "start_time": alert.first_seen,
        "end_time": alert.last_seen,
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES[severity_id],
        **_status(alert, activity_id),
        "message": alert.summary,
        "is_alert": True,
        "confidence_id": confidence_id,
        "confidence": confidence,
        "risk_score": round(alert.risk_score),
        "risk_level_id": risk_level_id,
        "risk_level": risk_level,
        "metadata": {
            "version": OCSF_VERSION,
            "product": PRODUCT,
            "uid": f"{alert.alert_id}:{alert.version}",
            "correlation_uid": alert.alert_id,
            "logged_time": updated,
        },
        "finding_info": finding_info,
        "resources": [_resource(e) for e in alert.entities],
        "unmapped": {
            "alert_version": str(alert.version),
            "maturity": alert.maturity,
            "primary_entity": alert.primary_entity,
            "finding_ids": ",".join(alert.finding_ids),
        },
    }
    actor = _actor(alert.entities)
    if actor is not None:
        record["actor"] = actor
        record["metadata"]["profiles"] = ["host"]
    return record


# Attributes of OCSF profiles that pydantic-ocsf's generated classes leave out, with their object class:
# validated on their own (host profile: actor, device).
PROFILE_OBJECTS = {"host": {"actor": "Actor", "device": "Device"}}


def validate(record: dict[str, Any]) -> list[str]:
    """Problems with ``record`` as a Detection Finding of ``OCSF_VERSION`` (empty when valid), checked by
    pydantic-ocsf's models of that version: required attributes, types, enums, ``type_uid``; and, as those
    models accept unknown attributes, no attribute the schema does not define (profile attributes are
    checked against their object's model when ``metadata.profiles`` names the profile)."""
    from ocsf.v1_5_0 import events, objects  # noqa: PLC0415 - heavy: models are built on first import
    from pydantic import BaseModel, ValidationError  # noqa: PLC0415

    problems: list[str] = []

    def extras(model: BaseModel, path: str) -> None:
        if type(model).__name__ == "Object":  # OCSF's free-form object type (unmapped, data)
            return
        for name in model.model_extra or {}:
            problems.append(f"{path}{name}: not an attribute of OCSF {OCSF_VERSION} {type(model).__name__}")
        for name in type(model).model_fields:
            value = getattr(model, name)
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, BaseModel):
                    alias = type(model).model_fields[name].alias or name
                    extras(item, f"{path}{alias}{f'[{i}]' if isinstance(value, list) else ''}.")

    body = dict(record)
    for profile in record.get("metadata", {}).get("profiles", []):
        for attribute, object_name in PROFILE_OBJECTS.get(profile, {}).items():
            if attribute in body:
                try:
                    extras(getattr(objects, object_name).model_validate(body.pop(attribute)), f"{attribute}.")
                except ValidationError as exc:
                    problems.append(f"{attribute}: {exc}")
    try:
        model = events.DetectionFinding.model_validate(body)
    except ValidationError as exc:
        return [*problems, str(exc)]
    extras(model, "")
    if model.class_uid != CLASS_UID:  # pragma: no cover - the model pins it
        problems.append(f"class_uid {model.class_uid} is not {CLASS_UID}")
    return problems


TRIAGE_STATUS = {  # triage status → (activity, OCSF status_id, status)
    "open": (UPDATE, 1, "New"),
    "acknowledged": (UPDATE, 2, "In Progress"),
    "resolved": (CLOSE, 4, "Resolved"),
}


def triage_finding(alert: Alert, change: dict[str, Any]) -> dict[str, Any] | None:
    """The OCSF Detection Finding of a triage ``change`` (``streams.soc.triage.triage_records``) to ``alert``'s
    latest version, or None for a change without a status (an assignment or a comment)."""
    mapped = TRIAGE_STATUS.get(change.get("status") or "")
    if mapped is None:
        return None
    activity_id, status_id, status = mapped
    record = detection_finding(alert)
    when = int(change["time_ms"])
    record.update(activity_id=activity_id, activity_name=ACTIVITY_NAMES[activity_id],
                  type_uid=CLASS_UID * 100 + activity_id,
                  type_name=f"Detection Finding: {ACTIVITY_NAMES[activity_id]}",
                  time=when, status_id=status_id, status=status)
    record.pop("status_detail", None)
    if change["status"] == "resolved":
        record["status_detail"] = f"resolved as {change['resolution']} by {change['actor']}"
    elif change["status"] == "acknowledged":
        record["status_detail"] = f"acknowledged by {change['actor']}"
    record["finding_info"]["modified_time"] = when
    record["metadata"].update(uid=f"{alert.alert_id}:{alert.version}:triage:{change['triage_id']}", logged_time=when)
    record["unmapped"].update(triage_status=change["status"], triage_resolution=change.get("resolution") or "",
                              triage_actor=change["actor"])
    return record
