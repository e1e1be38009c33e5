"""Which alerts a SOC view shows: one filter shared by ``aiwarden alerts tail`` and ``/alerts/stream``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.findings import SEVERITIES, SEVERITY_RANK


class FilterError(ValueError):
    """A filter value that cannot be used (an unknown severity)."""


@dataclass(frozen=True)
class AlertFilter:
    """Alerts at or above ``min_severity``, raised by any of ``detectors``, involving ``entity``."""

    min_severity: str = "info"
    detectors: frozenset[str] = frozenset()
    entity: str = ""

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITY_RANK:
            msg = f"unknown severity {self.min_severity!r}: use one of {', '.join(SEVERITIES)}"
            raise FilterError(msg)

    @classmethod
    def of(
        cls, min_severity: str | None = None, detectors: Iterable[str] = (), entity: str | None = None
    ) -> AlertFilter:
        names = frozenset(d.strip() for value in detectors for d in value.split(",") if d.strip())
        return cls((min_severity or "info").lower(), names, (entity or "").strip())

    @classmethod
    def from_query(cls, query: Mapping[str, str], multi: Iterable[str] = ()) -> AlertFilter:
        """From URL query parameters ``min_severity``, ``detector`` (repeated or comma-separated), ``entity``."""
        return cls.of(query.get("min_severity"), multi, query.get("entity"))

    def matches(self, alert: Mapping[str, Any]) -> bool:
        if SEVERITY_RANK.get(str(alert.get("severity", "info")), 0) < SEVERITY_RANK[self.min_severity]:
            return False
        if self.detectors and not self.detectors.intersection(alert.get("detectors") or ()):
            return False
        if self.entity:
            involved = {alert.get("primary_entity"), *(alert.get("entities") or ())}
            if self.entity not in involved:
                return False
        return True
