"""What detectors emit (``Finding``) and what correlation makes of them (``Alert``)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

MATURITIES = ("stable", "incubating", "sandbox")
SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(slots=True)
class Finding:
    """One detector's verdict on one entity, with the events that support it."""

    finding_id: str
    detector: str
    title: str
    maturity: str
    severity: str
    time_ms: int
    entity_id: str
    entities: list[str]
    summary: str
    tactics: list[str] = field(default_factory=list)
    atlas_techniques: list[str] = field(default_factory=list)
    attack_techniques: list[str] = field(default_factory=list)
    evidence_event_ids: list[str] = field(default_factory=list)
    anomaly_score: float = 0.0  # 0..1, how far outside normal (rules: 0 unless they measure it)
    ai_asset: bool = False
    public_exposure: bool = False
    attributes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**data)


@dataclass(slots=True)
class Alert:
    """Findings on linked entities within a window: one attack path, prioritized."""

    alert_id: str
    first_seen: int  # epoch ms
    last_seen: int
    severity: str
    risk_score: float  # 0..100
    detectors: list[str]
    atlas_techniques: list[str]
    attack_techniques: list[str]
    tactics: list[str]
    entities: list[str]
    primary_entity: str
    summary: str
    evidence_event_ids: list[str]
    finding_ids: list[str]
    maturity: str  # the most mature of its findings' detectors
    status: str = "open"  # open | merged (its findings went on in ``merged_into``) | closed
    version: int = 1  # bumped each time the alert is updated
    updated_ms: int = 0
    ai_asset: bool = False  # a finding was about an AI asset the inventory knows (model server, training runtime)
    merged_into: str = ""  # the alert this one became part of (status merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(**data)


def stable_id(*parts: str) -> str:
    """A deterministic id from its parts, so reprocessing never doubles a finding or an alert."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
