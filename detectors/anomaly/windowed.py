"""Base class of the anomaly detectors: per-entity tumbling windows of event time, a class-level
River model scored on each closed window, and hard guards evaluated as the window fills.

Per entity (API key, else principal) the state holds the open window's counters, the entity's own
EWMA baseline over its *active* windows (windows with no event are skipped, so an idle key keeps a
meaningful baseline), a short evidence ring and the window's entities. When an event opens a new
window, the previous one is closed:

1. its features (log-scaled) are **scored** by ``self.model`` (an ``AnomalyModel`` shared by every
   entity of this detector) and, if the model is warm and the window is big enough
   (``confirm``), a score at or above ``anomaly_threshold`` is a finding that names the features
   that moved (``moved``: more than 2 sd from the mean of the windows the model learned);
2. the model then **learns** the window, unless the window fired (a detected attack is not taught
   to the model as normal);
3. the entity's baseline is updated. Its usual mix (``learn_mix``) is not learned from a window that
   fired or was half-way to firing, unless the entity has no usual yet or fired in ``mix_drift_windows``
   windows in a row (``drifted``): a key that changed its traffic for good gets a new usual instead of a
   finding a window.

Guards (``guard``) run on every event against the open window, so a blatant burst fires at once
rather than when the entity's next window opens. One finding per entity and window, whichever of
guard or model comes first; its id is ``stable_id(detector, entity, window index)``.

A window closes only when the entity's next event arrives (there is no timer in ``detect``); a
late event (older than the open window) is counted in the open window.
"""

from __future__ import annotations

import math
import random
from abc import abstractmethod
from typing import ClassVar

from detectors.anomaly.model import AnomalyModel
from detectors.base import Detector, State, clean, push
from detectors.config import DetectionConfig
from detectors.policy import caller_identity
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding

EVIDENCE_KEPT = 8
ENTITIES_KEPT = 5
ENTITY_CHARS = 100
MAX_WINDOWS = 1_000_000


def inference_key(event: Event) -> str:
    """The caller of a model invocation: the API key, else the principal ('' if neither); a role's sessions
    with made-up names are the role (``caller_identity``)."""
    if event.api_key_id:
        return ent.apikey(event.api_key_id)
    if event.principal:
        return ent.principal(caller_identity(event.principal))
    return ""


def remember_model(event: Event, state: State) -> None:
    """The window's model (``md``, cleaned for state); unchanged while the caller keeps calling it."""
    model = event.model_id
    if model and model != state.get("md"):
        state["md"] = clean(model, 64)


def strength(observed: float, threshold: float) -> float:
    """0.5 at the threshold, towards 1 as ``observed`` grows past it (a guard's anomaly score)."""
    if threshold <= 0:
        return 1.0
    ratio = max(0.0, observed / threshold)
    return ratio / (1.0 + ratio)


class WindowedAnomalyDetector(Detector):
    """Windowed per-entity features + a class-level ``AnomalyModel`` + hard guards."""

    features: ClassVar[tuple[str, ...]]
    classes = frozenset({API_ACTIVITY})
    sources = frozenset({"gateway", "bedrock"})

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self.model = AnomalyModel(
            self.features,
            seed=config.model_seed,
            n_trees=config.hst_trees,
            height=config.hst_height,
            window_size=config.hst_window,
            warmup=config.warmup_observations,
            margin=config.hst_margin,
        )
        self.threshold = config.anomaly_threshold
        self.inference_sources = self.policy.inference_sources
        self.alpha = config.ewma_alpha
        self.warmup_windows = config.warmup_windows

    # --- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def reset_window(self, state: State) -> None:
        """Zero the window counters."""

    @abstractmethod
    def accumulate(self, event: Event, state: State) -> None:
        """Add one event to the open window."""

    @abstractmethod
    def window_features(self, state: State) -> dict[str, float]:
        """The model's features of the open window (log-scaled, JSON-free floats)."""

    @abstractmethod
    def volume(self, state: State) -> float:
        """The window's volume measure the entity's EWMA baseline tracks."""

    @abstractmethod
    def guard(self, state: State) -> tuple[str, str, float] | None:
        """``(reason, severity, anomaly score)`` if the open window already crosses a hard guard."""

    @abstractmethod
    def describe(self, key: str, state: State, reason: str) -> tuple[str, str]:
        """``(summary, phrase)`` of the window for a finding."""

    @classmethod
    @abstractmethod
    def synthetic_window(cls, rng: random.Random, key: str, start_ms: int, window_ms: int, attack: bool) -> list[Event]:
        """One window of events for key ``key``: normal traffic, or this detector's attack (contract tests:
        the model must rank attack windows above normal ones, ROC AUC > 0.5)."""

    def confirm(self, state: State) -> bool:
        """Whether a model score may fire for this window (default: enough requests)."""
        return int(state.get("r", 0)) >= self.config.anomaly_min_requests

    def update_baselines(self, state: State) -> None:
        """EWMA of ``volume`` over active windows (override to track more)."""
        state["b"] = self.ewma(state, "b", self.volume(state))

    # --- machinery ------------------------------------------------------------------------------
    def ewma(self, state: State, slot: str, value: float) -> float:
        if int(state.get("nw", 0)) == 0 or slot not in state:
            return round(value, 3)
        old = float(state[slot])
        return round(old + self.alpha * (value - old), 3)

    def warmed(self, state: State) -> bool:
        """The entity's own baseline is trusted (enough closed windows)."""
        return int(state.get("nw", 0)) >= self.warmup_windows

    def drifted(self, state: State) -> bool:
        """The entity fired in its last ``mix_drift_windows`` active windows (this one included, at close):
        what it fires on is its usual now."""
        return int(state.get("fs", 0)) >= self.config.mix_drift_windows

    def mix_ready(self, state: State) -> bool:
        """The entity's usual mix (``learn_mix``) was learned from enough requests."""
        return int(state.get("bn", 0)) >= self.config.mix_baseline_requests

    def learn_mix(self, state: State, slot: str, value: float | list[float], requests: int,
                  suspicious: bool = False) -> None:
        """EWMA of the window's mix ``value`` (a share, or a list of shares) into ``slot``, unless the window
        fired or was half-way to firing (``suspicious``: an attack, or the start of one spilling over a
        window boundary, does not become the entity's usual), unless the entity has no usual yet (not
        ``mix_ready``: its first windows are its usual, whatever they fired on, so a batch pipeline that
        always sends near-identical prompts fires once, not every window) or has ``drifted``; counts the
        requests it was learned from."""
        protected = self.mix_ready(state) and not self.drifted(state)
        if requests <= 0 or (protected and (state.get("fw") == state["w"] or suspicious)):
            return
        old = state.get(slot)
        if isinstance(value, list):
            if not isinstance(old, list) or len(old) != len(value):
                state[slot] = [round(x, 4) for x in value]
            else:
                state[slot] = [round(o + self.alpha * (x - o), 4) for o, x in zip(old, value, strict=True)]
        else:
            state[slot] = round(value, 4) if old is None else round(float(old) + self.alpha * (value - float(old)), 4)
        state["bn"] = min(MAX_WINDOWS, int(state.get("bn", 0)) + requests)

    def state_key(self, event: Event) -> str | None:
        if event.activity != "invoke_model" or event.source not in self.inference_sources:
            return None
        return inference_key(event) or None

    def open_window(self, state: State, window: int) -> None:
        state["w"] = window
        state["ev"] = []
        state["en"] = []
        self.reset_window(state)

    def score_window(self, state: State) -> float:
        """The model's score of the open window (no learning)."""
        return self.model.score_one(self.window_features(state))

    def detect(self, event: Event, state: State) -> list[Finding]:
        if event.activity != "invoke_model" or event.source not in self.inference_sources:
            return []
        key = inference_key(event)
        if not key:
            return []
        out: list[Finding] = []
        window = event.time_ms // self.window_ms
        current = state.get("w")
        if current is None:
            self.open_window(state, window)
        elif window > current:
            closed = self.close_window(state, key)
            if closed is not None:
                out.append(closed)
            self.open_window(state, window)
        self.accumulate(event, state)
        push(state["ev"], clean(event.event_id, 64), EVIDENCE_KEPT)
        seen = state["en"]
        if len(seen) < ENTITIES_KEPT:
            for entity in event.entities:
                if entity in seen:  # already kept, so already clean: clean(entity) is entity
                    continue
                entity = clean(entity, ENTITY_CHARS)
                if entity not in seen:
                    seen.append(entity)
            del seen[ENTITIES_KEPT:]
        if event.time_ms > state.get("tl", 0):
            state["tl"] = event.time_ms
        if state.get("fw") != state["w"]:
            hit = self.guard(state)
            if hit is not None:
                reason, severity, score = hit
                state["fw"] = state["w"]
                out.append(self._finding(event, key, state, reason, severity, score))
        return out

    def close_window(self, state: State, key: str) -> Finding | None:
        """Score, maybe fire, learn, update the baseline (see the module docstring)."""
        x = self.window_features(state)
        fired = state.get("fw") == state["w"]
        found: Finding | None = None
        if not fired and self.model.ready and self.confirm(state):
            score = self.model.score_one(x)
            if score >= self.threshold:
                state["fw"] = state["w"]
                fired = True
                moved = self.model.explain(x)
                reason = f"anomaly score {score:.3f} vs the population of windows"
                if moved:
                    reason += "; moved: " + ", ".join(f"{name} {z:+.1f} sd" for name, z in moved)
                found = self._finding(None, key, state, reason, self.severity, score,
                                      {"moved": ",".join(name for name, _ in moved)})
        if fired:
            state["fs"] = min(MAX_WINDOWS, int(state.get("fs", 0)) + 1)
        else:
            self.model.learn_one(x)
            state.pop("fs", None)
        self.update_baselines(state)
        state["nw"] = min(MAX_WINDOWS, int(state.get("nw", 0)) + 1)
        return found

    def _finding(
        self, event: Event | None, key: str, state: State, reason: str, severity: str, score: float,
        extra: dict[str, str] | None = None,
    ) -> Finding:
        summary, phrase = self.describe(key, state, reason)
        attributes = {"phrase": phrase, "reason": reason, "window_start_ms": str(state["w"] * self.window_ms)}
        return self.finding(
            event=event,
            entity_id=key,
            discriminator=str(state["w"]),
            summary=summary,
            entities=state["en"],
            evidence=state["ev"],
            severity=severity,
            anomaly_score=score,
            ai_asset=True,
            attributes=attributes | (extra or {}),
            time_ms=int(state.get("tl", 0)) if event is None else None,
        )


_WORDS = (
    "how", "do", "i", "write", "a", "query", "for", "the", "report", "summarize", "these", "notes", "about",
    "pricing", "customer", "churn", "explain", "why", "python", "fails", "to", "parse", "dates", "draft", "reply",
    "translate", "into", "french", "compare", "kafka", "and", "redis", "list", "risks", "of", "migration", "plan",
    "review", "this", "code", "snippet", "suggest", "names", "feature", "rate", "limit", "clients", "schedule",
)


def synthetic_prompt(rng: random.Random) -> str:
    """A natural-looking prompt (random words) for synthetic streams."""
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 24))).capitalize() + "?"


def synthetic_event(key: str, index: int, time_ms: int, prompt: str, tokens_in: int, tokens_out: int) -> Event:
    """One gateway invocation by API key ``key`` (synthetic streams of the contract tests and demos)."""
    entity = ent.apikey(key)
    return Event(
        event_id=f"syn-{key}-{time_ms}-{index}",
        time_ms=time_ms,
        source="gateway",
        class_uid=API_ACTIVITY,
        activity="invoke_model",
        principal=f"user-of-{key}",
        api_key_id=key,
        src_ip="10.1.2.3",
        model_id="llama-3.1-70b-instruct",
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        prompt=prompt,
        entity_id=entity,
        entities=[entity, ent.principal(f"user-of-{key}"), ent.model("llama-3.1-70b-instruct")],
    )


def log1p(value: float) -> float:
    return math.log1p(max(0.0, value))


def who(state: State, key: str) -> str:
    """``key-123 (alice@acme)``: the key and the principal behind it, from the window's entities."""
    name = key.split(":", 1)[1]
    principals = [e.split(":", 1)[1] for e in state.get("en", ()) if e.startswith("principal:")]
    if key.startswith("apikey:") and principals:
        return f"API key {name} ({principals[0]})"
    return f"API key {name}" if key.startswith("apikey:") else f"principal {name}"
