"""Model inversion / training-data probing (ATLAS AML.T0024.001, AML.T0057) through an LLM API.

Per caller (API key, else principal) and window: prompts matching ``inversion_patterns`` (asking
the model to repeat / recall training records, patient data, SSNs, record identifiers), and the run
of consecutive prompts whose last number steps up by 1-3 (enumerating identifiers: MRN-1000001,
MRN-1000002, ...). Fires when a window holds ``inversion_min_matches`` probing prompts, or an
enumeration run of ``inversion_sequence_run`` with at least two probing prompts (critical when both).

State per caller (~0.5 KiB): window, match count, last identifier and run length, 8 evidence ids.
"""

from __future__ import annotations

import re

from detectors.anomaly.windowed import inference_key
from detectors.base import Detector, State, caller_name, clean, push
from detectors.config import DetectionConfig
from detectors.text import PhraseMatcher
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding

_NUMBER = re.compile(r"\d{3,12}")
EVIDENCE_KEPT = 8


class ModelInversion(Detector):
    id = "model_inversion"
    title = "Prompts probing a model for its training data"
    maturity = "incubating"
    severity = "high"
    tactics = ("exfiltration",)
    atlas = ("AML.T0024.001", "AML.T0057")
    attack = ()
    owasp_llm = ("LLM02:2025",)
    classes = frozenset({API_ACTIVITY})
    sources = frozenset({"gateway", "bedrock"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self.matcher = PhraseMatcher(config.inversion_patterns)
        self._memo: tuple[str, bool] = ("", False)

    def _probing(self, event: Event) -> bool:
        if self._memo[0] != event.event_id:
            self._memo = (event.event_id, bool(self.matcher.search(event.prompt)))
        return self._memo[1]

    def state_key(self, event: Event) -> str | None:
        if not event.prompt or event.activity != "invoke_model" or event.source not in self.policy.inference_sources:
            return None
        # Prompts with neither a probing phrase nor an identifier cannot move the state toward a finding.
        if not self._probing(event) and _NUMBER.search(event.prompt) is None:
            return None
        return inference_key(event) or None

    def detect(self, event: Event, state: State) -> list[Finding]:
        key = inference_key(event)
        if not key or not event.prompt or event.source not in self.policy.inference_sources:
            return []
        window = self.window(event.time_ms)
        if state.get("w") != window:
            state.update(w=window, m=0, ev=[])
        probing = self._probing(event)
        numbers = _NUMBER.findall(event.prompt)
        if numbers:
            value = int(numbers[-1])
            last = state.get("last")
            step = value - last if isinstance(last, int) else 0
            state["run"] = int(state.get("run", 1)) + 1 if 1 <= step <= 3 else 1
            state["last"] = value
        if probing:
            state["m"] += 1
            push(state["ev"], clean(event.event_id, 64), EVIDENCE_KEPT)
        elif not numbers:
            return []
        c = self.config
        matches, run = int(state["m"]), int(state.get("run", 0))
        by_count = matches >= c.inversion_min_matches
        by_run = run >= c.inversion_sequence_run and matches >= 2
        if not (by_count or by_run) or self.rate_limited(state, event.time_ms):
            return []
        severity = "critical" if by_count and by_run else self.severity
        model = event.model_id or "the model"
        how = f"{matches} training-data probing prompts"
        if run >= c.inversion_sequence_run:
            how += f", enumerating identifiers ({run} consecutive, last {state['last']})"
        summary = f"{caller_name(event)} sent {how} to {model} within {c.window_s}s (possible model inversion)"
        return [
            self.finding(
                event=event,
                entity_id=key,
                discriminator=str(window),
                summary=summary,
                evidence=state["ev"],
                severity=severity,
                ai_asset=True,
                anomaly_score=min(1.0, matches / (2 * c.inversion_min_matches) + (0.25 if by_run else 0.0)),
                attributes={"matches": str(matches), "run": str(run), "phrase": f"probed {model} for training data"},
            )
        ]
