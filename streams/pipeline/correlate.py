"""``aiwarden.findings`` (keyed by anchor) → one open alert per anchor → ``aiwarden.alerts``, and each alert
version as an OCSF Detection Finding → ``aiwarden.ocsf`` (same transaction). A finding whose story continues
at another anchor (``Correlator.forward_to``) goes back onto ``aiwarden.findings`` keyed by that anchor, as a
copy marked ``FORWARDED_HEADER`` that the sink skips, and joins the alert there; an alert its own anchor had
open goes along (``MERGE_HEADER``) and is merged: its last version says ``merged`` and names the alert it joined."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from detectors.correlation import Correlator, anchor
from infra.settings import Settings
from schemas.codec import encode
from schemas.findings import Alert, Finding
from streams import topics
from streams.integrations.ocsf import detection_finding
from streams.metrics import ALERTS
from streams.pipeline.records import Out, OversizedOutput, count_into, dead_letter, observe_latency
from streams.pipeline.state import StateSpoiled
from streams.soc.exceptions import Exceptions

log = logging.getLogger(__name__)


def _correlate(state: dict[str, Any], correlator: Correlator, finding: Finding, key: str, forwarded: bool,
               carried: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None] | list[Alert]:
    """The alerts ``finding`` makes at ``key`` (with an alert ``carried`` from another anchor merged in), or the
    anchor it goes on to, with its anchor's alert to merge there (``Correlator.forward_to``)."""
    if not forwarded:
        route = correlator.forward_to(finding, state)
        if route is not None:
            return route
    alert = correlator.add(finding, state, key)
    merged = correlator.merge(carried, state, finding.time_ms) if carried else None
    if merged is None:
        return [alert] if alert is not None else []
    return [merged, correlator.alert(state, finding.time_ms)]


class Correlation:
    """The correlate stage: findings folded into alerts, state per anchor in the ``correlation-state`` store."""

    def __init__(self, settings: Settings, out: Out, *, states: Any, exceptions: Exceptions | None = None) -> None:
        self.correlator = Correlator(settings.detection)
        self.out, self.states = out, states
        self.exceptions = exceptions or Exceptions()

    def findings_batch(self, batch: Sequence[Any]) -> None:
        leading: Counter[str] = Counter()
        for message in batch:
            try:
                finding = Finding.from_dict(orjson.loads(message.value()))
                suppressed_by = self.exceptions.match(finding)
                if suppressed_by is not None:  # recorded, no alert, so no containment
                    self.out.send(topics.SUPPRESSED, finding.finding_id.encode(), orjson.dumps({
                        "finding_id": finding.finding_id, "exception_id": suppressed_by,
                        "detector": finding.detector, "entity_id": finding.entity_id, "time_ms": finding.time_ms}))
                    continue
                copy = topics.forwarded(message)
                key = (copy and (message.key() or b"").decode()) or anchor(finding)
                carried = topics.header(message.headers(), topics.MERGE_HEADER) if copy else None
                result = self.states.apply(key, message.partition(), _correlate, self.correlator, finding, key, copy,
                                           orjson.loads(carried) if carried else None)
                if isinstance(result, tuple):  # to the partition of the alert it joins, as a copy the sink skips
                    target, alert_state = result
                    headers = [(topics.FORWARDED_HEADER, key.encode())]
                    if alert_state is not None:
                        headers.append((topics.MERGE_HEADER, orjson.dumps(alert_state)))
                    self.out.send(topics.FINDINGS, target.encode(), message.value(), headers)
                    continue
                alerts = result
                for alert in alerts:
                    self.out.send(topics.ALERTS, alert.alert_id.encode(), encode(alert))
            except StateSpoiled:  # the engine aborts and processes the records again
                raise
            except OversizedOutput as exc:
                dead_letter(self.out, topics.DLQ, message, str(exc), "findings", "correlate")
                continue
            except Exception as exc:  # noqa: BLE001 - one bad finding must not stop correlation
                log.exception("correlation failed")
                dead_letter(self.out, topics.DLQ, message, f"correlation failed: {exc!r}", "findings", "correlate")
                continue
            for alert in alerts:
                if alert.status != "merged":
                    leading[alert.detectors[0] if alert.detectors else "unknown"] += 1
                try:
                    self.out.send(topics.OCSF, alert.alert_id.encode(), encode(detection_finding(alert)))
                except Exception as exc:  # noqa: BLE001 - the alert is out; its OCSF copy is dead-lettered
                    log.exception("OCSF mapping failed")
                    reason = f"OCSF copy of alert {alert.alert_id} failed: {exc!r}"
                    dead_letter(self.out, topics.DLQ, message, reason, "findings", "correlate")
        count_into(ALERTS, leading)
        observe_latency("correlate", batch)
