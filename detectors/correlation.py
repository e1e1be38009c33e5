"""Correlation: findings on one entity, or on entities linked through a shared identifier, become one
prioritized ``Alert``. Pure logic over a compact per-anchor state, like the detectors.

**Anchor.** Every finding has one anchor entity, ``anchor(finding)``. A finding about a principal
(its ``entity_id`` is one: a campaign by one user across several keys, a session's S3 writes and
registry write, a cluster user's Service changes) anchors on whom it is about, ``person(principal)``:
an AWS IAM Identity Center session (``…:assumed-role/AWSReservedSSO_<set>_<hash>/<name>``) and an
e-mail-form username are both the person, the name before any ``@`` (``principal:ana.lima`` for
``ana.lima@example.com`` in the cluster and ``ana.lima`` in AWS), so one person's steps in the
cluster and in the account meet; another AWS session or IAM user is itself. The alert's
``primary_entity`` is then the first finding's own identity (``primary``), never the bare name, so
containment suspends a principal that exists. Otherwise, among the
finding's ``entity_id`` and ``entities``, the first of kind ``pod``, then ``container``, then the
person or session of a principal (as above: the holder of the key or access key the finding is on),
then ``apikey``, then ``principal``, then ``ip`` (the finding's own ``entity_id`` if it has none of
those). Workloads come first because a finding about a
pod also names the IPs it talked to; a person before their keys (every key and rule hit of one person
is one story); an API key before a service principal because a service may hold many keys with
different fates (a stolen key is about that key). Findings with overlapping entities
therefore meet on the same anchor: a reverse shell, a weights read and an upload in one pod; the
stolen-key and cost findings on one API key; a person's prompt-injection campaign over all their
keys. The caller repartitions findings by ``anchor(finding)`` and keeps the
state of each anchor on one worker::

    correlator = Correlator(config)
    key = anchor(finding)
    state = table[key]                                  # {} for a new anchor
    alert = correlator.add(finding, state)
    table[key] = state
    if alert is not None: publish(alert)                # upsert by (alert_id, version)

**Stories that continue at another anchor.** A finding may name, in its ``continues`` attribute, the
entity whose alert its story belongs to: a vulnerable model server exposed by someone names whom, so the
vulnerability joins that person's exposure alert. The correlate stage then forwards the finding to that
anchor (``forward_to``; on ``aiwarden.findings`` keyed by it, as a copy the sink skips), and with it every
later finding of the finding's own anchor for ``correlation_window_s``: the reverse shell in the pod, the
other replicas behind the same Service. One attack path, one alert, wherever its first finding landed. The
alert's ``primary_entity`` becomes the attacked workload once a finding that is not a way in names one. If
the finding's own anchor already had an alert open (Falco alone sees a server in use only when it
misbehaves), that alert goes along and is merged (``merge``): its last version has status ``merged`` and
``merged_into`` names the alert it joined.

**Window.** A finding within ``correlation_window_s`` of the open alert's ``first_seen`` ..
``last_seen`` span joins it: the alert's ``version`` goes up by one, ``last_seen`` moves, entities,
techniques and evidence are merged (bounded: ``max_alert_entities``, 20 evidence ids, the newest
kept). Otherwise a new alert replaces the old one in the state. A finding already in the alert
(redelivery) changes nothing and returns ``None``: ``alert_id = stable_id(anchor, first finding id)``
and the version only grows with new findings, so reprocessing is idempotent.

**Severity.** The highest severity among the findings, raised one level (up to critical) when the
findings span three or more distinct tactics.

**Risk score (0..100).** ``base(severity) + 10 * public_exposure + 5 * ai_asset + 10 * max anomaly
score + 5 * min(3, distinct tactics - 1) + 5 * min(2, distinct detectors - 1)``, clamped to 100, where
``base`` is info 5, low 15, medium 35, high 55, critical 75 (of the alert's severity after the tactic
bump). Risk follows the evidence and the asset: independent detectors confirming one attack raise it,
and ``ai_asset`` is set by any finding about an AI workload (one the inventory knows as a training
runtime or model server, whatever its node is called), not only by GPU names.

**Summary.** The first finding's summary while there is one phrase; then the subject (``Model server
pod ns/name``) and up to three phrases, those of ``WAY_IN_DETECTORS`` (exposed, vulnerable package in
use) first, Sigma rules' after the built-in detectors': "… is publicly exposed and runs vulnerable vllm
0.6.3 in use (CVE-…), then spawned a reverse shell (2 tactics)". The subject is the alert's primary entity
when that is a workload, else its anchor.

**Maturity.** The most mature detector among the findings. Alerts whose findings all come from
``sandbox`` detectors must never trigger containment: that policy is the caller's (containment
agent), the alert only carries ``maturity``.

State per anchor: the open alert in compact form, bounded lists; measured about 4.3 KiB after 2000
findings on one anchor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from detectors.base import bump, short_principal
from detectors.config import DetectionConfig
from detectors.policy import caller_identity
from schemas import entities as ent
from schemas.entities import kind_of
from schemas.findings import MATURITIES, SEVERITIES, SEVERITY_RANK, Alert, Finding, stable_id

ANCHOR_KINDS = ("pod", "container", "apikey", "principal", "ip")
WORKLOAD_KINDS = ("pod", "container")
SEVERITY_BASE = {"info": 5.0, "low": 15.0, "medium": 35.0, "high": 55.0, "critical": 75.0}
MAX_EVIDENCE = 20
MAX_MERGED = 20  # ids of the alerts merged into one, remembered so a redelivered merge changes nothing
MAX_PHRASES = 6
MATURITY_RANK = {name: rank for rank, name in enumerate(reversed(MATURITIES))}  # sandbox 0 .. stable 2
# Findings that say how the way in looked (exposed, vulnerable and in use): an attack path's summary tells
# them first, whenever they arrived, then what happened.
WAY_IN_DETECTORS = ("exposed_ai_workload", "vulnerable_ai_workload")
# A finding attribute naming the entity whose alert the finding and its anchor's story join
# (``Correlator.forward_to``).
CONTINUES = "continues"


def person(principal_id: str) -> str:
    """Whom a ``principal:`` entity's story is about, or '' for a service name (which may hold many keys
    with different fates): the person of an IAM Identity Center session or an e-mail-form username (the
    name before any ``@``), the role of a session whose name an SDK made up (``caller_identity``), else the
    AWS session, role or IAM user ARN itself."""
    name = principal_id.removeprefix("principal:")
    if name.startswith("arn:"):
        parts = name.split(":", 5)[-1].split("/")
        if len(parts) == 3 and parts[0] == "assumed-role":
            if parts[1].startswith("AWSReservedSSO_"):
                return f"principal:{parts[2].partition('@')[0] or parts[2]}"
            identity = caller_identity(name)
            if identity != name:
                return ent.principal(identity)
        return principal_id if parts[0] in ("assumed-role", "user", "role") else ""
    return f"principal:{name.partition('@')[0]}" if "@" in name.lstrip("@") else ""


def anchor(finding: Finding) -> str:
    """The correlation key of a finding (see the module docstring for the preference order)."""
    if finding.entity_id and kind_of(finding.entity_id) == "principal":
        return person(finding.entity_id) or finding.entity_id
    candidates = [finding.entity_id, *finding.entities]
    for kind in ANCHOR_KINDS:
        if kind == "apikey":  # whoever holds a key or an access key: one story per person or session
            people = [p for e in candidates if e and kind_of(e) == "principal" and (p := person(e))]
            if people:
                return people[0]
        for entity in candidates:
            if entity and not entity.endswith(":") and kind_of(entity) == kind:
                return entity
    return finding.entity_id


def continues(finding: Finding) -> str:
    """The anchor a finding's story continues at (its ``CONTINUES`` attribute, an entity: a principal is
    taken as its person), or ''."""
    entity = finding.attributes.get(CONTINUES, "")
    if entity and kind_of(entity) == "principal":
        return person(entity) or entity
    return entity


def primary(finding: Finding, key: str) -> str:
    """The alert's primary entity: its anchor, or for a person the finding's own identity (the session ARN or
    username) whose person the anchor is, so containment acts on an identity that exists."""
    candidates = [finding.entity_id, *finding.entities]
    if key in candidates:
        return key
    return next((e for e in candidates if e and kind_of(e) == "principal" and person(e) == key), key)


def risk_score(severity: str, public_exposure: bool, ai_asset: bool, anomaly: float, tactics: int,
               detectors: int = 1) -> float:
    """The documented 0..100 risk formula."""
    score = SEVERITY_BASE[severity]
    score += 10.0 if public_exposure else 0.0
    score += 5.0 if ai_asset else 0.0
    score += 10.0 * min(1.0, max(0.0, anomaly))
    score += 5.0 * min(3, max(0, tactics - 1))
    score += 5.0 * min(2, max(0, detectors - 1))
    return round(min(100.0, score), 1)


def _merge(into: list[str], values: list[str], cap: int) -> None:
    for value in values:
        if value not in into and len(into) < cap:
            into.append(value)


class Correlator:
    """Turns findings into alerts, one open alert per anchor (see the module docstring)."""

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config
        self.window_ms = config.correlation_window_s * 1000
        self.max_entities = config.max_alert_entities
        self.max_findings = config.max_alert_findings
        self.max_evidence = min(MAX_EVIDENCE, config.max_evidence)

    def forward_to(self, finding: Finding, state: dict[str, Any]) -> tuple[str, dict[str, Any] | None] | None:
        """The anchor whose alert ``finding`` joins instead of its own (``state`` is its own anchor's), or
        ``None``. A finding that names where its story continues (``CONTINUES``: a vulnerable workload
        exposed by someone, whose exposure alert is that person's) goes there, and so does every later
        finding of its anchor within ``correlation_window_s``: the reverse shell that follows in that pod
        joins the exposure and the vulnerability in one alert; so do the other replicas behind the exposed
        Service (an attacker's requests land on any of them). Returned with the anchor: the anchor's own open
        alert, if its findings came first (a Falco-only estate sees the server in use only when it
        misbehaves; a replay), taken out of ``state`` to be merged there (``merge``)."""
        own = anchor(finding)
        target = continues(finding)
        if target and target != own:
            state["fw"] = [target, finding.time_ms - self.window_ms, finding.time_ms + self.window_ms]
            carried = None
            if self._open_at(state, finding.time_ms):
                carried = {k: v for k, v in state.items() if k != "fw"}
                for k in carried:
                    del state[k]
            return target, carried
        forward = state.get("fw")
        if forward and int(forward[1]) <= finding.time_ms <= int(forward[2]):
            forward[2] = max(int(forward[2]), finding.time_ms + self.window_ms)
            return str(forward[0]), None
        return None

    def merge(self, carried: dict[str, Any], state: dict[str, Any], updated_ms: int) -> Alert | None:
        """Fold another anchor's alert (its compact state, from ``forward_to``) into the open alert of
        ``state``; that alert's last version (status ``merged``, ``merged_into`` this one), or ``None`` when it
        was merged before (redelivery)."""
        if "id" not in state or carried.get("id") in state.setdefault("mg", []):
            return None
        lru = state["mg"]
        lru.append(carried["id"])
        del lru[:-MAX_MERGED]
        self._absorb(state, first_ms=int(carried["fs"]), last_ms=int(carried["ls"]), severity=carried["sev"],
                     maturity=carried["mat"], public=bool(carried["pub"]), ai=bool(carried["ai"]),
                     ai_workload=bool(carried.get("aw")), anomaly=float(carried["am"]), detectors=carried["det"],
                     tactics=carried["tac"], atlas=carried["atl"], attack=carried["att"], entities=carried["ent"],
                     evidence=carried["ev"], finding_ids=carried["fi"], phrases=carried["ph"], summary=carried["sm"])
        attacked = kind_of(str(carried["pe"])) if any(d not in WAY_IN_DETECTORS for d in carried["det"]) else ""
        if attacked in WORKLOAD_KINDS and kind_of(str(state["pe"])) not in WORKLOAD_KINDS:
            state["pe"] = carried["pe"]  # the attacked workload, as in ``add``
        carried["v"] = int(carried["v"]) + 1
        return dataclasses.replace(self.alert(carried, updated_ms), status="merged", merged_into=str(state["id"]))

    def _open_at(self, state: dict[str, Any], time_ms: int) -> bool:
        """Whether the anchor has an alert open at ``time_ms`` (a finding then would join it)."""
        return "id" in state and int(state["fs"]) - self.window_ms <= time_ms <= int(state["ls"]) + self.window_ms

    def add(self, finding: Finding, state: dict[str, Any], key: str | None = None) -> Alert | None:
        """Fold ``finding`` into the open alert of ``key`` (its own anchor by default), or open one; the
        alert, or ``None`` if the finding was already part of it."""
        key = key or anchor(finding)
        open_alert = state.get("id")
        if open_alert is not None:
            if finding.finding_id in state["fi"]:
                return None
            if not self._open_at(state, finding.time_ms):
                open_alert = None
        if open_alert is None:
            forward = state.get("fw")
            state.clear()
            if forward:
                state["fw"] = forward
            state.update(
                id=stable_id(key, finding.finding_id), an=key, pe=primary(finding, anchor(finding)), fs=finding.time_ms,
                ls=finding.time_ms, v=0,
                sev=finding.severity, mat=finding.maturity, pub=False, ai=False, am=0.0,
                det=[], tac=[], atl=[], att=[], ent=[], ev=[], fi=[], ph=[], sm="",
            )
        elif finding.detector not in WAY_IN_DETECTORS and kind_of(str(state["pe"])) not in WORKLOAD_KINDS:
            # a workload that was attacked, not whom exposed it, is what the alert is about (and what
            # containment acts on): a finding forwarded here (``forward_to``) names it
            own = primary(finding, anchor(finding))
            if kind_of(own) in WORKLOAD_KINDS:
                state["pe"] = own
        self._fold(finding, state)
        return self.alert(state, finding.time_ms)

    def _fold(self, finding: Finding, state: dict[str, Any]) -> None:
        phrase = (finding.attributes.get("phrase", "") or finding.title.lower())[:160]
        self._absorb(state, first_ms=finding.time_ms, last_ms=finding.time_ms, severity=finding.severity,
                     maturity=finding.maturity, public=finding.public_exposure, ai=finding.ai_asset,
                     ai_workload=finding.attributes.get("ai_workload") == "true", anomaly=finding.anomaly_score,
                     detectors=[finding.detector], tactics=finding.tactics, atlas=finding.atlas_techniques,
                     attack=finding.attack_techniques, entities=[finding.entity_id, *finding.entities],
                     evidence=finding.evidence_event_ids, finding_ids=[finding.finding_id],
                     phrases=[[finding.detector, phrase]], summary=finding.summary[:400])

    def _absorb(self, state: dict[str, Any], *, first_ms: int, last_ms: int, severity: str, maturity: str,
                public: bool, ai: bool, ai_workload: bool, anomaly: float, detectors: list[str], tactics: list[str],
                atlas: list[str], attack: list[str], entities: list[str], evidence: list[str],
                finding_ids: list[str], phrases: list[list[str]], summary: str) -> None:
        """One more version of the open alert, with a finding's parts or another alert's (``merge``)."""
        state["v"] = int(state["v"]) + 1
        state["fs"] = min(int(state["fs"]), first_ms)
        state["ls"] = max(int(state["ls"]), last_ms)
        if SEVERITY_RANK[severity] > SEVERITY_RANK[state["sev"]]:
            state["sev"] = severity
        if MATURITY_RANK[maturity] > MATURITY_RANK[state["mat"]]:
            state["mat"] = maturity
        state["pub"] = bool(state["pub"]) or public
        state["ai"] = bool(state["ai"]) or ai
        state["aw"] = bool(state.get("aw")) or ai_workload
        state["am"] = max(float(state["am"]), anomaly)
        _merge(state["det"], detectors, 32)
        _merge(state["tac"], tactics, 16)
        _merge(state["atl"], atlas, 32)
        _merge(state["att"], attack, 32)
        _merge(state["ent"], entities, self.max_entities)
        for name, values, cap in (("ev", evidence, self.max_evidence), ("fi", finding_ids, self.max_findings)):
            kept: list[str] = state[name]  # the newest ``cap``
            _merge(kept, values, len(kept) + len(values))
            del kept[:-cap]
        kept_phrases: list[list[str]] = state["ph"]
        for detector, phrase in phrases:
            if all(p[1] != phrase for p in kept_phrases) and len(kept_phrases) < MAX_PHRASES:
                kept_phrases.append([detector, phrase])
        if not state["sm"]:
            state["sm"] = summary

    def alert(self, state: dict[str, Any], updated_ms: int) -> Alert:
        """The ``Alert`` a correlation state describes."""
        tactics = list(state["tac"])
        severity = str(state["sev"])
        if len(tactics) >= 3:
            severity = bump(severity)
        return Alert(
            alert_id=str(state["id"]),
            first_seen=int(state["fs"]),
            last_seen=int(state["ls"]),
            severity=severity,
            risk_score=risk_score(severity, bool(state["pub"]), bool(state["ai"]), float(state["am"]), len(tactics),
                                  len(state["det"])),
            detectors=list(state["det"]),
            atlas_techniques=list(state["atl"]),
            attack_techniques=list(state["att"]),
            tactics=tactics,
            entities=list(state["ent"]),
            primary_entity=str(state.get("pe") or state["an"]),
            summary=self._summary(state),
            evidence_event_ids=list(state["ev"]),
            finding_ids=list(state["fi"]),
            maturity=str(state["mat"]),
            version=int(state["v"]),
            updated_ms=updated_ms,
            ai_asset=bool(state["ai"]),
        )

    @staticmethod
    def _subject(state: dict[str, Any]) -> str:
        key = str(state["an"])
        if kind_of(str(state.get("pe") or "")) in WORKLOAD_KINDS:
            key = str(state["pe"])
        kind, _, value = key.partition(":")
        if kind == "pod":
            return f"Model server pod {value}" if state.get("aw") else f"Pod {value}"
        if kind == "container":
            return f"Model server container {value}" if state.get("aw") else f"Container {value}"
        if kind == "apikey":
            owners = [e.split(":", 1)[1] for e in state["ent"] if e.startswith("principal:")]
            return f"API key {value}" + (f" ({short_principal(owners[0])})" if owners else "")
        if kind == "principal":
            return f"Principal {short_principal(value)}"
        if kind == "ip":
            return f"IP {value}"
        return key

    def _summary(self, state: dict[str, Any]) -> str:
        # the way in first, then what happened; a built-in detector's phrase before a Sigma rule's
        phrases = [p[1] for p in sorted(state["ph"], key=lambda p: (p[0] not in WAY_IN_DETECTORS,
                                                                    p[0].startswith("sigma:")))]
        if len(phrases) <= 1:
            return str(state["sm"])
        shown = ", then ".join(phrases[:3])
        more = f" (+{len(phrases) - 3} more)" if len(phrases) > 3 else ""
        tactics = len(state["tac"])
        return f"{self._subject(state)} {shown}{more} ({tactics} tactic{'s' if tactics != 1 else ''})"


__all__ = ["ANCHOR_KINDS", "CONTINUES", "Correlator", "SEVERITIES", "anchor", "person", "risk_score"]
