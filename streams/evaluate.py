"""Detection quality from the simulator's labels: recall, precision and time-to-detect per attack class.

An alert detects a labelled attack when its entities share an identifier with the label's and its
event-time span overlaps the attack's (with ``slack_ms`` of lateness for windowed detectors). Only
identifiers that single out an actor or a target count (``IDENTIFYING_KINDS``: container, pod,
principal, API key, IP): a namespace, node, model or image is shared by half an estate, and an alert
on one key that uses ``gpt-4o`` does not detect an attack on another. An alert counts towards the
alerts of one attack only, the one it shares the most identifiers with, and detects only the attacks
sharing that most (``alerts`` per class: how many alerts the SOC saw for that class's attacks). An
alert that detects no label is a false alert; false alerts are also reported per 100k benign events. An
alert merged into another (status ``merged``) is not counted: the SOC sees the one it joined.
Time to detect is event time: the alert's ``first_seen`` minus the attack's start.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from schemas.entities import kind_of
from streams.simulator import AttackLabel

IDENTIFYING_KINDS = frozenset({"container", "pod", "principal", "apikey", "ip"})


@dataclass
class ClassQuality:
    scenario: str
    attacks: int = 0
    detected: int = 0
    alerts: int = 0  # alerts that matched an attack of this class
    detect_ms: list[int] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.detected / self.attacks if self.attacks else 0.0


@dataclass
class Quality:
    classes: dict[str, ClassQuality]
    false_alerts: int
    total_alerts: int
    benign_events: int
    false_alert_examples: list[str]

    @property
    def precision(self) -> float:
        return (self.total_alerts - self.false_alerts) / self.total_alerts if self.total_alerts else 0.0

    @property
    def false_per_100k(self) -> float:
        return self.false_alerts * 100_000 / self.benign_events if self.benign_events else 0.0


def shared(alert: dict[str, Any], label: AttackLabel) -> int:
    """How many identifying entities (``IDENTIFYING_KINDS``) the alert and the label share."""
    return sum(1 for e in set(alert["entities"]) & set(label.entities) if kind_of(e) in IDENTIFYING_KINDS)


def matches(alert: dict[str, Any], label: AttackLabel, slack_ms: int) -> bool:
    if not shared(alert, label):
        return False
    return int(alert["first_seen"]) <= label.end_ms + slack_ms and int(alert["last_seen"]) >= label.start_ms - slack_ms


def evaluate(labels: list[AttackLabel], alerts: list[dict[str, Any]], benign_events: int,
             slack_ms: int = 180_000) -> Quality:
    classes: dict[str, ClassQuality] = {}
    for label in labels:
        classes.setdefault(label.scenario, ClassQuality(label.scenario)).attacks += 1
    first_detection: dict[str, int] = {}
    matched_any: set[str] = set()
    per_class_alerts: dict[str, set[str]] = defaultdict(set)
    alerts = [a for a in alerts if a.get("status") != "merged"]  # its findings are in the alert it joined
    for alert in alerts:
        candidates = [label for label in labels if matches(alert, label, slack_ms)]
        if not candidates:
            continue
        matched_any.add(alert["alert_id"])
        most = max(shared(alert, label) for label in candidates)
        detected = [label for label in candidates if shared(alert, label) == most]  # ties: each one detected
        per_class_alerts[detected[0].scenario].add(alert["alert_id"])
        for label in detected:
            delay = max(0, int(alert["first_seen"]) - label.start_ms)
            previous = first_detection.get(label.attack_id)
            first_detection[label.attack_id] = delay if previous is None else min(previous, delay)
    for label in labels:
        if label.attack_id in first_detection:
            quality = classes[label.scenario]
            quality.detected += 1
            quality.detect_ms.append(first_detection[label.attack_id])
    for scenario, ids in per_class_alerts.items():
        classes[scenario].alerts = len(ids)
    false = [a for a in alerts if a["alert_id"] not in matched_any]
    return Quality(classes, len(false), len(alerts), benign_events, [a["summary"] for a in false[:10]])
