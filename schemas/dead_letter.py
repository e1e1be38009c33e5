"""The record written to ``aiwarden.dlq``: why, from where, and the original bytes."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas.codec import raw_text


@dataclass(slots=True)
class DeadLetter:
    reason: str
    source: str
    stage: str  # publish | normalize | sink …
    position: dict[str, str | int] = field(default_factory=dict)  # file/line or topic/partition/offset
    raw: str = ""
    raw_encoding: str = "utf-8"
    time_ms: int = 0

    @classmethod
    def of(
        cls, reason: str, source: str, stage: str, data: bytes, position: dict[str, str | int]
    ) -> DeadLetter:
        text, encoding = raw_text(data)
        return cls(reason, source, stage, dict(position), text, encoding, int(time.time() * 1000))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
