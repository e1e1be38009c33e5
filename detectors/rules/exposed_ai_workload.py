"""Exposed AI workload: a model server opened to the outside.

* Kubernetes audit: a successful create / update / patch of a Service of a type in
  ``exposure_types`` (LoadBalancer, NodePort) whose ports include one of ``model_ports`` or whose
  name hints a model server (``model_server_hints``), or of an Ingress whose name hints one, in a
  namespace not in ``approved_exposure_namespaces``.
* CloudTrail: a successful ``AuthorizeSecurityGroupIngress`` (or ``ModifySecurityGroupRules``)
  opening one of ``model_ports`` to ``public_cidrs`` (0.0.0.0/0, ::/0). The nested
  ``ipPermissions`` are read from the raw record (rare events, so the parse is affordable).

Findings set ``public_exposure``. State per principal: the window and hashes of the resources
already reported in it (at most 8): one finding per exposed resource per window.
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors.base import Detector, State, h32
from detectors.config import DetectionConfig
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding

SG_OPERATIONS = frozenset({"AuthorizeSecurityGroupIngress", "ModifySecurityGroupRules"})
MAX_REPORTED = 8


def _ports(text: str) -> list[int]:
    """Service ports from the parser's ``port[:nodePort]/protocol`` list (node ports included)."""
    out = []
    for item in text.split(","):
        for part in item.split("/", 1)[0].split(":"):
            if part.isdigit():
                out.append(int(part))
    return out


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _dig(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _items(obj: Any) -> list[Any]:
    """CloudTrail wraps lists as ``{"items": [...]}``; accept both shapes."""
    if isinstance(obj, dict):
        obj = obj.get("items")
    return obj if isinstance(obj, list) else []


class ExposedAIWorkload(Detector):
    id = "exposed_ai_workload"
    title = "Model server exposed outside the cluster / to the internet"
    maturity = "stable"
    severity = "high"
    tactics = ("initial-access", "ml-model-access")
    atlas = ("AML.T0040", "AML.T0049")
    attack = ("T1133", "T1190")
    classes = frozenset({API_ACTIVITY})
    sources = frozenset({"k8s_audit", "cloudtrail"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self._memo: tuple[str, tuple[str, str]] = ("", ("", ""))

    # --- conditions ----------------------------------------------------------------------------
    def exposure(self, event: Event) -> tuple[str, str]:
        """``(resource, how)`` if the event exposes a model server, else ``("", "")`` (also read by
        ``vulnerable_ai_workload``)."""
        return self._exposure(event)

    def _exposure(self, event: Event) -> tuple[str, str]:
        """``(resource, how)`` if the event exposes a model server, else ``("", "")``."""
        if self._memo[0] == event.event_id:
            return self._memo[1]
        found = self._k8s(event) if event.source == "k8s_audit" else self._cloud(event)
        self._memo = (event.event_id, found)
        return found

    def _k8s(self, event: Event) -> tuple[str, str]:
        if event.activity not in ("create", "update"):
            return "", ""
        resource = event.resource
        is_service = resource.startswith("services/")
        if not (is_service or resource.startswith("ingresses/")):
            return "", ""
        if event.api_status and not event.api_status.startswith("2"):
            return "", ""
        policy = self.policy
        if event.namespace in policy.exposure_namespaces:
            return "", ""
        name = resource.rsplit("/", 1)[-1]
        hint = policy.server_hint(name)
        if not is_service:
            return (resource, f"Ingress {event.namespace}/{name} (name suggests {hint})") if hint else ("", "")
        kind = event.extra.get("service_type", "")
        if kind.lower() not in policy.exposure_types:
            return "", ""
        ports = _ports(event.extra.get("service_ports", ""))
        model_ports = [p for p in ports if p in policy.model_ports]
        if not model_ports and not hint:
            return "", ""
        shown = ",".join(str(p) for p in (model_ports or ports)[:4])
        return resource, f"{kind} Service {event.namespace}/{name} on port {shown}"

    def _cloud(self, event: Event) -> tuple[str, str]:
        if event.api_operation not in SG_OPERATIONS or event.api_status not in ("success", ""):
            return "", ""
        group = event.extra.get("param.groupId", "") or event.resource
        for low, high, cidr in self._permissions(event):
            if cidr not in self.policy.public_cidrs:
                continue
            hit = [p for p in sorted(self.policy.model_ports) if low <= p <= high]
            if hit or (low <= 0 and high >= 65535):
                port = str(hit[0]) if hit else "all ports"
                return f"sg/{group}/{low}-{high}", f"security group {group} tcp/{port} opened to {cidr}"
        return "", ""

    @staticmethod
    def _permissions(event: Event) -> list[tuple[int, int, str]]:
        out: list[tuple[int, int, str]] = []
        extra = event.extra
        cidr = extra.get("param.cidrIp", "")
        if cidr:
            out.append((_int(extra.get("param.fromPort", ""), 0), _int(extra.get("param.toPort", ""), 65535), cidr))
        if not event.raw:
            return out
        try:
            record = orjson.loads(event.raw)
        except orjson.JSONDecodeError:
            return out
        params = _dig(record, "requestParameters") or {}
        for perm in _items(params.get("ipPermissions") if isinstance(params, dict) else None):
            if not isinstance(perm, dict):
                continue
            low, high = perm.get("fromPort", 0), perm.get("toPort", 65535)
            low = low if isinstance(low, int) and low >= 0 else 0
            high = high if isinstance(high, int) and high >= 0 else 65535
            for rng in _items(perm.get("ipRanges")):
                if isinstance(rng, dict) and isinstance(rng.get("cidrIp"), str):
                    out.append((low, high, rng["cidrIp"]))
            for rng in _items(perm.get("ipv6Ranges")):
                if isinstance(rng, dict) and isinstance(rng.get("cidrIpv6"), str):
                    out.append((low, high, rng["cidrIpv6"]))
        for rule in _items(_dig(params, "SecurityGroupRules") or _dig(params, "ModifySecurityGroupRulesRequest")):
            spec = _dig(rule, "SecurityGroupRule") or {}
            cidr_v4 = _dig(spec, "CidrIpv4")
            if isinstance(cidr_v4, str):
                low, high = _dig(spec, "FromPort"), _dig(spec, "ToPort")
                out.append((low if isinstance(low, int) else 0, high if isinstance(high, int) else 65535, cidr_v4))
        return out

    # --- interface -----------------------------------------------------------------------------
    def state_key(self, event: Event) -> str | None:
        if event.source == "k8s_audit":
            if not event.resource.startswith(("services/", "ingresses/")):
                return None
        elif event.api_operation not in SG_OPERATIONS:
            return None
        resource, _ = self._exposure(event)
        if not resource:
            return None
        return event.entity_id or f"resource:{resource}"

    def detect(self, event: Event, state: State) -> list[Finding]:
        resource, how = self._exposure(event)
        if not resource:
            return []
        window = self.window(event.time_ms)
        if state.get("fw") != window:
            state["fw"] = window
            state["rs"] = []
        marker = h32(resource)
        reported: list[int] = state["rs"]
        if marker in reported:
            return []
        reported.append(marker)
        del reported[:-MAX_REPORTED]
        who = event.principal or "unknown principal"
        entities = [ent.namespace(event.namespace)] if event.namespace else []
        summary = f"{who} exposed a model server: {how}"
        return [
            self.finding(
                event=event,
                entity_id=ent.principal(event.principal) if event.principal else event.entity_id,
                discriminator=f"{window}:{resource}",
                summary=summary,
                entities=entities,
                ai_asset=True,
                public_exposure=True,
                attributes={"resource": resource, "phrase": f"exposed {how}"},
            )
        ]
