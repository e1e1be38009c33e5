"""AI / cloud audit logging tampering (ATT&CK T1562.008, T1562.001).

CloudTrail calls in ``logging_operations`` (Bedrock ``DeleteModelInvocationLoggingConfiguration`` /
``PutModelInvocationLoggingConfiguration``, ``DeleteGuardrail`` / ``UpdateGuardrail``, CloudTrail
``StopLogging`` / ``DeleteTrail`` / ``UpdateTrail`` / ``PutEventSelectors``, ...) by a principal not in
``approved_logging_principals``. Severity comes from the operation (a ``Put`` that turns every
delivery off is critical); a failed call is an attempt (medium). State per principal: the window
and the operations already reported in it (one finding per operation per window).
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors.base import Detector, State, h32, short_principal
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding

DELIVERY_FLAGS = ("textDataDeliveryEnabled", "imageDataDeliveryEnabled", "embeddingDataDeliveryEnabled")


def _disables_delivery(raw: str) -> bool:
    """A PutModelInvocationLoggingConfiguration whose every delivery flag is false."""
    try:
        record: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    config = record.get("requestParameters") if isinstance(record, dict) else None
    config = config.get("loggingConfig") if isinstance(config, dict) else None
    if not isinstance(config, dict):
        return False
    flags = [config.get(flag) for flag in DELIVERY_FLAGS if flag in config]
    return bool(flags) and all(flag is False for flag in flags)


class LoggingTampering(Detector):
    id = "logging_tampering"
    title = "AI invocation logging, guardrails or CloudTrail weakened"
    maturity = "stable"
    severity = "high"
    tactics = ("defense-evasion",)
    atlas = ()
    attack = ("T1562.008", "T1562.001")
    classes = frozenset({API_ACTIVITY})
    sources = frozenset({"cloudtrail"})
    description = __doc__ or ""

    def _relevant(self, event: Event) -> bool:
        return (
            event.api_operation in self.policy.logging_ops
            and bool(event.principal)
            and not self.policy.logging_approved(event.principal)
        )

    def state_key(self, event: Event) -> str | None:
        if not self._relevant(event):
            return None
        return event.entity_id or ent.principal(event.principal)

    def detect(self, event: Event, state: State) -> list[Finding]:
        if not self._relevant(event):
            return []
        window = self.window(event.time_ms)
        if state.get("fw") != window:
            state["fw"] = window
            state["ops"] = []
        op = event.api_operation
        marker = h32(op)
        if marker in state["ops"]:
            return []
        state["ops"].append(marker)
        del state["ops"][:-16]
        ok = event.api_status == "success"
        severity = self.policy.logging_ops[op] if ok else "medium"
        detail = ""
        if op == "PutModelInvocationLoggingConfiguration" and _disables_delivery(event.raw):
            severity, detail = ("critical" if ok else severity), " (every delivery turned off)"
        target = event.resource or event.extra.get("param.name", "") or event.api_service
        who = short_principal(event.principal)
        src = f" from {event.src_ip}" if event.src_ip else ""
        verb = "" if ok else f"tried ({event.api_status}) to call "
        summary = f"{who}{src} {verb}{event.api_service} {op} on {target}{detail} (not a logging admin)"
        return [
            self.finding(
                event=event,
                entity_id=ent.principal(event.principal),
                discriminator=f"{window}:{op}",
                summary=summary,
                severity=severity,
                ai_asset=event.api_service.startswith("bedrock"),
                attributes={"operation": op, "phrase": f"called {op}{detail}"},
            )
        ]
