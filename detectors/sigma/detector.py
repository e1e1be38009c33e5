"""Sigma rules as a detector of the detect stage: matches become findings like every detector's.

``SigmaDetections`` holds the loaded rules (the built-in pack and ``AIWARDEN_SIGMA__RULES``) and
their compiled matcher, reloads changed rule files every ``reload_interval_s`` (the next batch runs
on the new rules; rules that fail to load are logged with their file and leave the others running),
and turns a match into a ``Finding``: detector ``sigma:<rule id>``, the rule's title, severity from
``level``, maturity from ``status``, ATT&CK / ATLAS ids from its tags, and its author, references
and file in ``attributes``. One finding per rule, entity and window (``AIWARDEN_DETECTION__WINDOW_S``),
its per-key state kept in the detect stage's store like every detector's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from detectors.base import caller_name, workload_name
from detectors.config import DetectionConfig
from detectors.sigma.correlation import Correlation, correlate
from detectors.sigma.matcher import Matcher
from detectors.sigma.rules import PACK_DIR, Rule, RuleSet
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding, stable_id

log = logging.getLogger(__name__)


def rule_paths(pack: bool, rules: tuple[Path, ...] | list[Path]) -> list[Path]:
    return ([PACK_DIR] if pack else []) + list(rules)


def sigma_finding(rule: Rule, event: Event, window: int, max_evidence: int = 20) -> Finding:
    """The finding for ``rule`` matching ``event`` in event-time window ``window``."""
    who = caller_name(event) if event.class_uid == API_ACTIVITY else workload_name(event)
    return rule.finding(
        event,
        finding_id=stable_id(rule.detector_id, event.entity_id, str(window)),
        summary=f"Sigma: {rule.title} ({who}; rule by {rule.author or 'unknown author'})",
        evidence=[event.event_id][:max_evidence],
        attributes={"sigma_logsource": rule.logsource},
    )


class SigmaDetections:
    """The loaded rules and their matcher, reloaded when rule files change."""

    def __init__(self, paths: list[Path], config: DetectionConfig, reload_interval_s: float = 5.0) -> None:
        self.ruleset = RuleSet.load(paths)
        self._index()
        self.window_ms = config.window_ms
        self.max_evidence = config.max_evidence
        self.reload_interval_s = reload_interval_s
        self.checked = time.monotonic()
        log.info("sigma: %d rules loaded from %s", len(self.ruleset.rules), ", ".join(map(str, paths)) or "nothing")

    @classmethod
    def from_settings(cls, settings: Any) -> SigmaDetections:
        sigma = settings.sigma
        return cls(rule_paths(sigma.pack, sigma.rules), settings.detection, sigma.reload_interval_s)

    def maybe_reload(self, now: float | None = None) -> bool:
        """Every ``reload_interval_s``: reload rule files that changed; whether the rules changed."""
        now = time.monotonic() if now is None else now
        if now - self.checked < self.reload_interval_s:
            return False
        self.checked = now
        return self.reload()

    def reload(self) -> bool:
        if not self.ruleset.reload_if_changed():
            return False
        self._index()
        log.info("sigma: rules reloaded, %d loaded, %d problems", len(self.ruleset.rules), len(self.ruleset.problems))
        return True

    def _index(self) -> None:
        self.matcher = Matcher(self.ruleset.rules)
        self.rules = {r.id: r for r in self.ruleset.rules}
        self.correlations: dict[str, Correlation] = {c.detector_id: c for c in self.ruleset.correlations}
        self.feeds: dict[str, list[Correlation]] = {}
        for correlation in self.ruleset.correlations:
            for rule in correlation.rules:
                self.feeds.setdefault(rule.id, []).append(correlation)

    def correlate(self, state: dict[str, Any], correlation: Correlation, rule: Rule, event: Event,
                  group: str) -> list[Finding]:
        return correlate(state, correlation, rule, event, group, self.max_evidence)

    def match(self, event: Event) -> list[Rule]:
        return self.matcher.match(event)

    def detect(self, state: dict[str, Any], rule: Rule, event: Event) -> list[Finding]:
        """The finding for a match, unless this rule already reported this entity in this window."""
        window = event.time_ms // self.window_ms
        if state.get("fw") == window:
            state["n"] = int(state.get("n", 0)) + 1
            return []
        state["fw"], state["n"] = window, 1
        return [sigma_finding(rule, event, window, self.max_evidence)]
