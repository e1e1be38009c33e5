"""A runtime agent's own rule fired in an AI workload (Falco's rules, a native agent's ``alert`` events).

Falco already knows that "Drop and execute new binary in container" is critical; what it does not know
is that the container is a training job or a model server. Condition: a Falco alert (or a native
agent's ``kind: alert``) at or above ``agent_rule_min_priority`` in a workload that is an AI workload,
by what the inventory learned of it (``extra["ai_asset"]``, added by the detect stage), an AI runtime
in its image / process / command line, or a GPU the agent reports. Rules another detector reports with
more context (``shell_falco_rules``, ``miner_falco_rules``) and those in ``agent_rule_ignore`` are left
to them.

Severity follows the agent's priority (emergency / alert / critical → critical, error → high, warning
→ medium, notice → low, else info), one level up when the workload holds a GPU or is publicly exposed.
The finding carries the AI context: the asset, its runtimes and models, GPU, exposure.

State per workload: the window of the last finding per rule (8 rules, hashed), ~150 bytes.
"""

from __future__ import annotations

from detectors.base import Detector, State, bump, h32, workload_name
from detectors.config import DetectionConfig
from schemas.envelope import (
    DETECTION_FINDING,
    FILE_ACTIVITY,
    NETWORK_ACTIVITY,
    PROCESS_ACTIVITY,
    Event,
)
from schemas.findings import Finding

# OCSF severity_id (from the agent's priority) -> finding severity
SEVERITY_OF = {5: "critical", 6: "critical", 4: "high", 3: "medium", 2: "low", 1: "info", 0: "info"}
PRIORITY_RANK = {"debug": 1, "informational": 1, "info": 1, "notice": 2, "warning": 3, "error": 4,
                 "critical": 5, "alert": 5, "emergency": 5}
RULES_KEPT = 8


class AgentRuleHit(Detector):
    id = "agent_rule_hit"
    title = "Runtime agent rule fired in an AI workload"
    maturity = "stable"
    severity = "medium"
    tactics = ("execution",)
    atlas = ()
    attack = ("T1204",)  # the rule's own MITRE tags are in the finding's attributes (``mitre``)
    classes = frozenset({PROCESS_ACTIVITY, NETWORK_ACTIVITY, FILE_ACTIVITY, DETECTION_FINDING})
    sources = frozenset({"falco", "native"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self.min_rank = PRIORITY_RANK[config.agent_rule_min_priority.lower()]
        self.left_to_others = self.policy.shell_rules | self.policy.miner_rules | frozenset(config.agent_rule_ignore)

    def ai_workload(self, event: Event) -> str:
        """Why the event's workload is an AI workload ('' if it is not known as one)."""
        if event.extra.get("ai_asset"):
            runtimes = event.extra.get("ai_runtimes", "")
            return f"inventory: {runtimes}" if runtimes else "inventory"
        runtime = self.policy.runtime_in(event.image) or self.policy.runtime_in(event.process_cmdline[:512])
        if runtime:
            return f"runtime {runtime}"
        return "GPU workload" if event.extra.get("gpu") == "true" else ""

    def _wanted(self, event: Event) -> bool:
        return (
            bool(event.rule)
            and event.severity_id >= self.min_rank
            and bool(event.container_id or event.pod)
            and event.rule not in self.left_to_others
            and event.extra.get("falco_source", "syscall") == "syscall"
        )

    def state_key(self, event: Event) -> str | None:
        if not event.entity_id or not self._wanted(event):
            return None
        return event.entity_id if self.ai_workload(event) else None

    def detect(self, event: Event, state: State) -> list[Finding]:
        if not event.entity_id or not self._wanted(event):
            return []
        why = self.ai_workload(event)
        if not why:
            return []
        rules: dict[str, int] = state.setdefault("r", {})
        rule_key, window = str(h32(event.rule)), self.window(event.time_ms)
        if rules.get(rule_key) == window:
            return []
        rules.pop(rule_key, None)
        rules[rule_key] = window
        while len(rules) > RULES_KEPT:
            del rules[next(iter(rules))]
        extra = event.extra
        gpu = extra.get("ai_gpu") == "true" or extra.get("gpu") == "true"
        exposed = extra.get("ai_exposed") == "true"
        severity = SEVERITY_OF.get(event.severity_id, "info")
        if gpu or exposed:
            severity = bump(severity)
        agent = "Falco" if event.source == "falco" else "Runtime agent"
        asset = extra.get("ai_asset", "")
        context = ", ".join(p for p in (why, "GPU" if gpu else "", "publicly exposed" if exposed else "") if p)
        summary = f'{agent} rule "{event.rule}" fired in AI workload {workload_name(event)} ({context})'
        if event.process_cmdline or event.process_name:
            summary += f": {(event.process_cmdline or event.process_name)[:160]}"
        attributes = {
            "rule": event.rule[:200],
            "agent": event.source,
            "priority": SEVERITY_OF.get(event.severity_id, "info"),
            "ai_workload": "true",
            "why_ai": why[:200],
            "phrase": f'tripped {agent} rule "{event.rule[:80]}"',
        }
        mitre = [t for t in event.tags if t[:1] == "T" and t[1:2].isdigit() or t.startswith("mitre_")]
        if mitre:
            attributes["mitre"] = ",".join(mitre)[:200]
        for key in ("ai_asset", "ai_runtimes", "ai_models"):
            if extra.get(key):
                attributes[key] = extra[key][:200]
        return [
            self.finding(
                event=event,
                entity_id=event.entity_id,
                discriminator=f"{window}:{rule_key}",
                summary=summary,
                entities=[asset] if asset else (),
                severity=severity,
                ai_asset=True,
                public_exposure=exposed,
                attributes=attributes,
            )
        ]
