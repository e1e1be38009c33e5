"""The ``Detector`` interface every rule and anomaly detector implements, and the helpers they share.

A detector is mostly data: class attributes say what it is (``id``, ``title``, ``maturity``,
``severity``, ATT&CK / ATLAS tactics and techniques, OWASP LLM Top 10 categories) and which events it
wants (``classes`` = OCSF class ids, ``sources`` = source names or ``None`` for any). The caller (a Faust
agent, a test, the benchmark) does, per event::

    for detector in dispatch.get(event.class_uid, ()):          # registry.by_class(detectors)
        if not detector.accepts(event):
            continue
        key = detector.state_key(event)
        if key is None:                                           # nothing to do for this event
            continue
        state = table[f"{detector.id}|{key}"]                     # {} for a new key
        findings += detector.detect(event, state)
        table[f"{detector.id}|{key}"] = state                     # persist (changelog)

Contract (checked for every registered detector by ``tests/contract``):

* ``state_key(event)`` names the entity whose state ``detect`` needs. It returns ``None`` only when
  ``detect`` would return no finding for the event whatever the state, so the caller may skip the
  event (and the state read) entirely. Keys are usually ``event.entity_id`` (no repartition needed);
  detectors document when they key on something else (e.g. the S3 bucket).
* ``state`` is this detector's per-key state: a small dict of JSON types (``str``, ``int``,
  ``float``, ``bool``, lists and dicts of those) that ``detect`` mutates in place. It must survive an
  orjson round trip unchanged in meaning and stay under ``STATE_BOUND_BYTES`` whatever the stream
  (bounded lists, LRU sets of hashes, counters: never a growing list).
* ``detect`` is deterministic: the same events in the same order through a fresh instance give the
  same findings with the same ids (``finding_id = stable_id(detector, entity, window or evidence)``),
  so reprocessing after a crash never doubles a finding. No wall clock, no global randomness.
* Repeats are rate limited: one finding per detector, entity and window (``window_s`` of event time).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, NamedTuple

from detectors.config import DetectionConfig
from detectors.policy import Policy
from schemas.envelope import Event
from schemas.findings import MATURITIES, SEVERITIES, SEVERITY_RANK, Finding, stable_id

# Every detector keeps its per-key state under this many bytes of ``orjson.dumps(state)`` (or under its own
# ``state_bound_bytes``, where a key is not one entity but something an estate has few of).
STATE_BOUND_BYTES = 2048

State = dict[str, Any]


class Observed(NamedTuple):
    """What one event did to a join detector's state: findings, events to deliver to its other keys
    (state key, event), rows for its table."""

    findings: list[Finding]
    forwards: list[tuple[str, Event]]
    rows: list[Any]


class Detector(ABC):
    """One detection: declares what it is and what it wants, turns events into findings."""

    id: ClassVar[str]
    title: ClassVar[str]
    maturity: ClassVar[str]  # stable | incubating | sandbox
    severity: ClassVar[str]  # info | low | medium | high | critical (the default; findings may differ)
    tactics: ClassVar[tuple[str, ...]]
    atlas: ClassVar[tuple[str, ...]]
    attack: ClassVar[tuple[str, ...]]
    owasp_llm: ClassVar[tuple[str, ...]] = ()  # OWASP Top 10 for LLM Applications categories (LLM01:2025, …)
    classes: ClassVar[frozenset[int]]
    sources: ClassVar[frozenset[str] | None] = None
    description: ClassVar[str] = ""
    # A join across entities (vulnerable_ai_workload): every key's state lives in the re-keyed store, even
    # a key equal to the event's entity, and callers call ``observe`` (findings, forwards, rows) instead of
    # ``detect``, delivering each forward to its key.
    joins: ClassVar[bool] = False
    # Its bound on one key's state (``STATE_BOUND_BYTES`` unless it says why a key needs more).
    state_bound_bytes: ClassVar[int] = STATE_BOUND_BYTES

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config
        self.policy = Policy.of(config)
        self.window_ms = config.window_ms
        self.max_evidence = config.max_evidence

    # --- the interface --------------------------------------------------------------------------
    def accepts(self, event: Event) -> bool:
        """Cheap pre-filter on class and source (``by_class`` dispatch already matched the class)."""
        return event.class_uid in self.classes and (self.sources is None or event.source in self.sources)

    @abstractmethod
    def state_key(self, event: Event) -> str | None:
        """The entity whose state ``detect`` needs; ``None`` when the event cannot produce a finding."""

    @abstractmethod
    def detect(self, event: Event, state: State) -> list[Finding]:
        """Findings for ``event``, updating ``state`` (this detector's state for ``state_key(event)``)."""

    def observe(self, event: Event, state: State) -> Observed:
        """``detect`` with what a join detector also produces (none here)."""
        return Observed(self.detect(event, state), [], [])

    # --- helpers for implementations --------------------------------------------------------------
    def window(self, time_ms: int) -> int:
        """The tumbling-window index of an event time."""
        return time_ms // self.window_ms

    def rate_limited(self, state: State, time_ms: int, slot: str = "fw") -> bool:
        """True if a finding was already emitted in this window (and otherwise marks the window used)."""
        window = self.window(time_ms)
        if state.get(slot) == window:
            return True
        state[slot] = window
        return False

    def finding(
        self,
        *,
        event: Event | None,
        entity_id: str,
        discriminator: str,
        summary: str,
        entities: Iterable[str] = (),
        evidence: Iterable[str] = (),
        severity: str | None = None,
        anomaly_score: float = 0.0,
        ai_asset: bool = False,
        public_exposure: bool = False,
        attributes: dict[str, str] | None = None,
        time_ms: int | None = None,
    ) -> Finding:
        """A ``Finding`` with a deterministic id ``stable_id(detector id, entity, discriminator)``.

        ``entities`` are added to the event's own (entity first, no repeats); ``evidence`` event ids
        come before the event's own id, and the list is cut to ``max_evidence`` keeping the newest.
        ``event`` may be ``None`` for a finding about a closed window (then ``time_ms`` is required).
        """
        own_entities = event.entities if event is not None else []
        own_evidence = [event.event_id] if event is not None else []
        ents = [entity_id, *own_entities, *entities]
        evid = [e for e in dict.fromkeys([*evidence, *own_evidence]) if e]
        if len(evid) > self.max_evidence:
            evid = evid[-self.max_evidence :]
        sev = severity or self.severity
        return Finding(
            finding_id=stable_id(self.id, entity_id, discriminator),
            detector=self.id,
            title=self.title,
            maturity=self.maturity,
            severity=sev,
            time_ms=time_ms if time_ms is not None else (event.time_ms if event is not None else 0),
            entity_id=entity_id,
            entities=[e for e in dict.fromkeys(ents) if e and not e.endswith(":")],
            summary=summary,
            tactics=list(self.tactics),
            atlas_techniques=list(self.atlas),
            attack_techniques=list(self.attack),
            evidence_event_ids=evid,
            anomaly_score=min(1.0, max(0.0, round(anomaly_score, 4))),
            ai_asset=ai_asset,
            public_exposure=public_exposure,
            attributes=dict(attributes or {}),
        )


def check_class(cls: type[Detector]) -> list[str]:
    """Problems with a detector class's declared attributes (empty when valid)."""
    problems = []
    if cls.maturity not in MATURITIES:
        problems.append(f"maturity {cls.maturity!r} not in {MATURITIES}")
    if cls.severity not in SEVERITIES:
        problems.append(f"severity {cls.severity!r} not in {SEVERITIES}")
    if not cls.classes:
        problems.append("no event classes")
    if not cls.tactics:
        problems.append("no tactics")
    return problems


def bump(severity: str, levels: int = 1) -> str:
    """``severity`` raised by ``levels`` (capped at critical)."""
    return SEVERITIES[min(len(SEVERITIES) - 1, SEVERITY_RANK[severity] + levels)]


def h32(text: str) -> int:
    """A stable 32-bit hash (CRC-32): the same in every process, unlike ``hash()``."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def lru_add(items: list[Any], item: Any, cap: int) -> bool:
    """Move/insert ``item`` at the end of a bounded LRU list; True if it was new."""
    if items and items[-1] == item and len(items) <= cap:  # already the most recent (no repeats in the list)
        return False
    try:
        items.remove(item)
        new = False
    except ValueError:
        new = True
    items.append(item)
    if len(items) > cap:
        del items[: len(items) - cap]
    return new


def push(items: list[Any], item: Any, cap: int) -> None:
    """Append to a bounded ring list (oldest dropped)."""
    items.append(item)
    if len(items) > cap:
        del items[: len(items) - cap]


def clean(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters of printable ASCII (others become ``?``), for strings kept in
    state: their JSON size is then at most ``limit`` bytes, whatever a hostile record contains."""
    out = text[:limit]
    if out.isascii() and out.isprintable():
        return out
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in out)


def human_bytes(count: float) -> str:
    """``820 MB`` style (decimal units, as network tools print them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit in ("B", "KB", "MB") else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


def workload_name(event: Event) -> str:
    """``ns/pod``, else the container id, else the host: how a SOC analyst names the workload."""
    if event.pod:
        return f"{event.namespace}/{event.pod}" if event.namespace else event.pod
    if event.container_id:
        return f"container {event.container_id[:12]}"
    return f"host {event.host}" if event.host else "unknown workload"


def caller_name(event: Event) -> str:
    """The caller of an API: the principal (short), else the API key."""
    who = event.principal or event.api_key_id
    return short_principal(who) if who else "unknown caller"


def short_principal(principal: str) -> str:
    """``assumed-role/role/session`` or ``user/name`` from an ARN; other principals as they are."""
    if principal.startswith("arn:"):
        tail = principal.split(":", 5)[-1]
        return tail or principal
    return principal
