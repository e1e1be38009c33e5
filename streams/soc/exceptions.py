"""Alert exceptions: a detector and an entity (exact or glob) a SOC decided is benign, with a reason
and an expiry. The correlate stage asks ``match`` for every finding (one dict lookup when the finding's
detector has no exception); a match is recorded on ``aiwarden.suppressed`` and raises no alert, so no
containment. Exceptions live on the compacted ``aiwarden.exceptions`` (every worker reads it whole:
in force within a second, kept across restarts)."""

from __future__ import annotations

import fnmatch
import re
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from schemas.findings import Finding

MAX_DAYS = 365


class ExceptionError(ValueError):
    """An exception that cannot be created (the message says which field)."""


@dataclass(frozen=True, slots=True)
class AlertException:
    exception_id: str
    detector: str
    entity: str  # an entity id or an fnmatch glob ("pod:ml-batch/*")
    reason: str
    created_by: str
    created_ms: int
    expires_ms: int
    revoked: bool = False

    def live(self, now_ms: int) -> bool:
        return not self.revoked and self.expires_ms > now_ms

    def record(self) -> tuple[bytes, bytes]:
        return self.exception_id.encode(), orjson.dumps(asdict(self))

    def revoke(self) -> AlertException:
        return replace(self, revoked=True)


def new_exception(body: Any, created_by: str, known_detectors: frozenset[str]) -> AlertException:
    if not isinstance(body, dict):
        msg = "expected a JSON object {detector, entity, reason, expires_in_s}"
        raise ExceptionError(msg)
    detector, entity = str(body.get("detector") or ""), str(body.get("entity") or "")
    reason = str(body.get("reason") or "").strip()
    if detector not in known_detectors:
        msg = f"unknown detector {detector[:60]!r}"
        raise ExceptionError(msg)
    if not entity or len(entity) > 300 or entity.strip("*?") == "":
        msg = "entity: an entity id or a glob that names something (not just '*')"
        raise ExceptionError(msg)
    if not reason:
        msg = "reason: say why this is benign"
        raise ExceptionError(msg)
    try:
        expires_in_s = int(body.get("expires_in_s") or 7 * 86400)
    except (TypeError, ValueError):
        msg = "expires_in_s: seconds"
        raise ExceptionError(msg) from None
    if not 60 <= expires_in_s <= MAX_DAYS * 86400:
        msg = f"expires_in_s: between 60 s and {MAX_DAYS} days"
        raise ExceptionError(msg)
    now = int(time.time() * 1000)
    return AlertException(uuid.uuid4().hex, detector, entity, reason[:1000], created_by, now,
                          now + expires_in_s * 1000)


class _Matcher:
    """One detector's exceptions: exact entities in a dict, globs in one compiled alternation."""

    def __init__(self, items: list[AlertException]) -> None:
        self.exact: dict[str, list[AlertException]] = {}
        self.globs = [item for item in items if any(c in item.entity for c in "*?[")]
        for item in items:
            if item not in self.globs:
                self.exact.setdefault(item.entity, []).append(item)
        pattern = "|".join(f"(?P<g{n}>{fnmatch.translate(item.entity)})" for n, item in enumerate(self.globs))
        self.regex = re.compile(pattern) if pattern else None

    def match(self, entity: str, now_ms: int) -> str | None:
        for item in self.exact.get(entity, ()):
            if item.live(now_ms):
                return item.exception_id
        found = self.regex.match(entity) if self.regex is not None else None
        if found is None or found.lastgroup is None:
            return None
        first = self.globs[int(found.lastgroup[1:])]
        if first.live(now_ms):
            return first.exception_id
        for item in self.globs:  # the first one to match has expired: look for a live one
            if item.live(now_ms) and fnmatch.fnmatchcase(entity, item.entity):
                return item.exception_id
        return None


class Exceptions:
    """The exceptions in force, by detector; ``apply`` is fed by a ``TopicView``."""

    def __init__(self) -> None:
        self.all: dict[str, AlertException] = {}
        self.by_detector: dict[str, _Matcher] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        ident = key.decode()
        if value is None:
            self.all.pop(ident, None)
        else:
            self.all[ident] = AlertException(**orjson.loads(value))
        grouped: dict[str, list[AlertException]] = {}
        for item in self.all.values():
            if not item.revoked:
                grouped.setdefault(item.detector, []).append(item)
        self.by_detector = {k: _Matcher(v) for k, v in grouped.items()}  # swapped whole: readers see one or the other

    def match(self, finding: Finding, now_ms: int | None = None) -> str | None:
        """The id of a live exception covering ``finding``, else None."""
        matcher = self.by_detector.get(finding.detector)
        if matcher is None:
            return None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        for entity in (finding.entity_id, *finding.entities):
            found = matcher.match(entity, now)
            if found is not None:
                return found
        return None
