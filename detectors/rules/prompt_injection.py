"""Prompt injection / jailbreak campaigns (ATLAS AML.T0051.000, AML.T0054, AML.T0056).

Counts prompts matching ``injection_patterns`` (ignore previous instructions, DAN / do anything now,
developer mode, print your system prompt, role-play without guidelines, ...) per caller and window:
the principal (the person or service behind the requests), else the API key, so a campaign spread over
several keys of one user is one campaign, not several below the threshold.
``injection_campaign_matches`` matches in one window are a campaign (high). A single match is a
low-severity finding only when ``injection_single_finding`` is on (default off: one odd prompt is too
common to alert on).

State per caller: window, match count, 8 evidence ids and the levels already reported (~0.4 KiB).
"""

from __future__ import annotations

from detectors.anomaly.windowed import inference_key
from detectors.base import Detector, State, caller_name, clean, push
from detectors.config import DetectionConfig
from detectors.policy import caller_identity
from detectors.text import PhraseMatcher
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding

EVIDENCE_KEPT = 8


def caller_key(event: Event) -> str:
    """The principal behind a model invocation (a role for its sessions with made-up names,
    ``caller_identity``), else its API key ('' if neither)."""
    return ent.principal(caller_identity(event.principal)) if event.principal else inference_key(event)


class PromptInjection(Detector):
    id = "prompt_injection"
    title = "Prompt injection / jailbreak campaign"
    maturity = "stable"
    severity = "high"
    tactics = ("execution", "defense-evasion")
    atlas = ("AML.T0051.000", "AML.T0054", "AML.T0056")
    attack = ()
    owasp_llm = ("LLM01:2025",)
    classes = frozenset({API_ACTIVITY})
    sources = frozenset({"gateway", "bedrock"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self.matcher = PhraseMatcher(config.injection_patterns)
        self._memo: tuple[str, str] = ("", "")

    def match(self, prompt: str, event_id: str = "") -> str:
        """The injection phrase found in ``prompt`` ('' if none)."""
        if event_id and self._memo[0] == event_id:
            return self._memo[1]
        phrase = self.matcher.search(prompt)[:80]
        if event_id:
            self._memo = (event_id, phrase)
        return phrase

    def state_key(self, event: Event) -> str | None:
        if not event.prompt or event.source not in self.policy.inference_sources:
            return None
        if not self.match(event.prompt, event.event_id):
            return None
        return caller_key(event) or None

    def detect(self, event: Event, state: State) -> list[Finding]:
        key = caller_key(event)
        phrase = self.match(event.prompt, event.event_id) if event.source in self.policy.inference_sources else ""
        if not key or not phrase:
            return []
        window = self.window(event.time_ms)
        if state.get("w") != window:
            state.update(w=window, m=0, ev=[], lv=0)
        state["m"] += 1
        push(state["ev"], clean(event.event_id, 64), EVIDENCE_KEPT)
        c = self.config
        matches, level = int(state["m"]), int(state["lv"])
        model = event.model_id or "the model"
        if matches >= c.injection_campaign_matches and level < 2:
            state["lv"] = 2
            summary = (
                f"{caller_name(event)} sent {matches} prompt-injection / jailbreak prompts to {model} "
                f"within {c.window_s}s (latest: {phrase!r})"
            )
            return [self._finding(event, key, window, "campaign", summary, self.severity, state["ev"])]
        if c.injection_single_finding and level < 1:
            state["lv"] = 1
            summary = f"{caller_name(event)} sent a prompt-injection / jailbreak prompt to {model}: {phrase!r}"
            return [self._finding(event, key, window, "single", summary, "low", state["ev"])]
        return []

    def _finding(
        self, event: Event, key: str, window: int, level: str, summary: str, severity: str, evidence: list[str]
    ) -> Finding:
        matches = len(evidence)
        return self.finding(
            event=event,
            entity_id=key,
            discriminator=f"{window}:{level}",
            summary=summary,
            evidence=evidence,
            severity=severity,
            ai_asset=True,
            anomaly_score=min(1.0, matches / (2 * self.config.injection_campaign_matches)),
            attributes={"matches": str(matches), "level": level, "phrase": "ran a prompt-injection campaign"},
        )
