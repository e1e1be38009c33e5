"""The one registry of detectors: ``DETECTORS`` maps each id to its class (pySigma style: plain dict).

Adding a detector = one file under ``detectors/rules`` or ``detectors/anomaly`` + one line here +
tests; ``tests/contract`` picks it up automatically.

>>> from detectors.config import DetectionConfig
>>> detectors = build_all(DetectionConfig())
>>> sorted(d.id for d in detectors) == sorted(DETECTORS)
True
>>> dispatch = by_class(detectors)
>>> [d.id for d in dispatch[4003]]
['shadow_ai_egress', 'unsanctioned_ai_workload', 'cryptominer']
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from detectors.anomaly.cost_harvesting import CostHarvesting
from detectors.anomaly.model_extraction import ModelExtraction
from detectors.base import Detector
from detectors.config import DetectionConfig
from detectors.rules.agent_rule_hit import AgentRuleHit
from detectors.rules.cryptominer import Cryptominer
from detectors.rules.data_poisoning import DataPoisoning
from detectors.rules.exposed_ai_workload import ExposedAIWorkload
from detectors.rules.logging_tampering import LoggingTampering
from detectors.rules.model_inversion import ModelInversion
from detectors.rules.model_server_shell import ModelServerShell
from detectors.rules.prompt_injection import PromptInjection
from detectors.rules.shadow_ai_egress import ShadowAIEgress
from detectors.rules.stolen_api_key import StolenAPIKey
from detectors.rules.unsanctioned_ai_workload import UnsanctionedAIWorkload
from detectors.rules.vulnerable_ai_workload import VulnerableAIWorkload
from detectors.rules.weights_exfiltration import WeightsExfiltration
from schemas.envelope import Event
from schemas.findings import Finding

DETECTORS: dict[str, type[Detector]] = {
    "shadow_ai_egress": ShadowAIEgress,
    "unsanctioned_ai_workload": UnsanctionedAIWorkload,
    "exposed_ai_workload": ExposedAIWorkload,
    "model_extraction": ModelExtraction,
    "model_inversion": ModelInversion,
    "prompt_injection": PromptInjection,
    "cost_harvesting": CostHarvesting,
    "data_poisoning": DataPoisoning,
    "weights_exfiltration": WeightsExfiltration,
    "model_server_shell": ModelServerShell,
    "cryptominer": Cryptominer,
    "stolen_api_key": StolenAPIKey,
    "logging_tampering": LoggingTampering,
    "agent_rule_hit": AgentRuleHit,
    "vulnerable_ai_workload": VulnerableAIWorkload,
}


class ConfigurationError(ValueError):
    """A detector could not be built from the configuration (names the detector)."""


def build_all(config: DetectionConfig, only: Iterable[str] | None = None) -> list[Detector]:
    """One instance of every registered detector (or of the ids in ``only``), in registry order."""
    wanted = list(DETECTORS) if only is None else list(only)
    out: list[Detector] = []
    for name in wanted:
        cls = DETECTORS.get(name)
        if cls is None:
            msg = f"unknown detector {name!r}; known: {', '.join(DETECTORS)}"
            raise ConfigurationError(msg)
        try:
            out.append(cls(config))
        except (TypeError, ValueError) as exc:
            msg = f"detector {name!r} cannot be built: {exc}"
            raise ConfigurationError(msg) from exc
    return out


def by_class(detectors: Iterable[Detector]) -> dict[int, list[Detector]]:
    """OCSF ``class_uid`` -> the detectors that want it (registry order kept)."""
    dispatch: dict[int, list[Detector]] = {}
    for detector in detectors:
        for class_uid in sorted(detector.classes):
            dispatch.setdefault(class_uid, []).append(detector)
    return dispatch


def detect_all(
    dispatch: dict[int, list[Detector]],
    event: Event,
    states: MutableMapping[tuple[str, str], dict[str, Any]],
) -> list[Finding]:
    """Run one event through every interested detector with in-memory state (tests, bench, replay).

    ``states`` maps ``(detector id, state key)`` to that detector's state for the key; a Faust agent
    does the same with a Table keyed ``f"{detector.id}|{key}"`` (see ``detectors.base``).
    """
    findings: list[Finding] = []
    source = event.source
    for detector in dispatch.get(event.class_uid, ()):
        wanted = detector.sources
        if wanted is not None and source not in wanted:
            continue
        key = detector.state_key(event)
        if key is None:
            continue
        if detector.joins:
            findings.extend(_join(detector, key, event, states))
            continue
        slot = (detector.id, key)
        state = states.get(slot)
        if state is None:
            state = states[slot] = {}
        found = detector.detect(event, state)
        if found:
            findings.extend(found)
    return findings


def _join(detector: Detector, key: str, event: Event, states: MutableMapping[tuple[str, str], dict[str, Any]],
          ) -> list[Finding]:
    """A join detector's findings for ``event``, its forwarded events delivered to their keys at once."""
    findings: list[Finding] = []
    pending = [(key, event)]
    while pending:
        at, item = pending.pop(0)
        observed = detector.observe(item, states.setdefault((detector.id, at), {}))
        findings.extend(observed.findings)
        pending.extend(observed.forwards)
    return findings
