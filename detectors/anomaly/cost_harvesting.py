"""Cost harvesting / denial of wallet (ATLAS AML.T0034): token spend far above normal.

Per API key (else principal), per window: requests, tokens in and out, tokens per request and the
largest completion. Model: River HalfSpaceTrees on the log-scaled features (spend relative to the key's own EWMAs); it
may fire only on windows whose spend is also above the key's normal (``confirm``).

Guards (fire regardless of the model):

* **spend** (after the key's warm-up): window tokens over ``cost_volume_factor`` x the key's EWMA and
  at least ``cost_min_tokens``;
* **huge completion**: one completion of ``cost_huge_completion`` output tokens or more;
* **max-length requests**: ``cost_heavy_requests`` requests of ``cost_heavy_request_tokens`` tokens or
  more in one window, and (once the key is warm) tokens per request ``cost_heavy_factor`` x its EWMA.

State per key (bounded, ~0.6 KiB): window counters, two EWMAs (tokens per window, tokens per
request), an 8-id evidence ring and 5 entities.
"""

from __future__ import annotations

import random

from detectors.anomaly.windowed import (
    WindowedAnomalyDetector,
    log1p,
    remember_model,
    strength,
    synthetic_event,
    synthetic_prompt,
    who,
)
from detectors.base import State
from schemas.envelope import Event

FEATURES = ("rel_tokens", "per_request", "rel_per_request", "max_out", "out_share")


class CostHarvesting(WindowedAnomalyDetector):
    id = "cost_harvesting"
    title = "Cost harvesting: token spend far above normal"
    maturity = "incubating"
    severity = "high"
    tactics = ("impact",)
    atlas = ("AML.T0034", "AML.T0040")
    attack = ("T1496.004",)
    owasp_llm = ("LLM10:2025",)
    features = FEATURES
    description = __doc__ or ""

    def reset_window(self, state: State) -> None:
        state.update(r=0, ti=0, to=0, mo=0, hv=0)

    def accumulate(self, event: Event, state: State) -> None:
        state["r"] += 1
        state["ti"] += event.tokens_in
        state["to"] += event.tokens_out
        if event.tokens_out > int(state["mo"]):
            state["mo"] = event.tokens_out
        if event.tokens_in + event.tokens_out >= self.config.cost_heavy_request_tokens:
            state["hv"] += 1
        remember_model(event, state)

    def window_features(self, state: State) -> dict[str, float]:
        r = max(1, int(state["r"]))
        tokens = int(state["ti"]) + int(state["to"])
        warm = self.warmed(state)
        per_request = tokens / r
        return {
            # spend relative to the key's own EWMAs (keys differ by orders of magnitude in volume)
            "rel_tokens": log1p(tokens) - log1p(float(state.get("b", 0.0))) if warm else 0.0,
            "per_request": log1p(per_request),
            "rel_per_request": log1p(per_request) - log1p(float(state.get("bq", 0.0))) if warm else 0.0,
            "max_out": log1p(int(state["mo"])),
            "out_share": int(state["to"]) / tokens if tokens else 0.0,
        }

    def confirm(self, state: State) -> bool:
        """The model may fire on a window with real spend that is also above the key's own normal
        (or, for a key without a baseline yet, made of long requests)."""
        c = self.config
        r = max(1, int(state["r"]))
        tokens = int(state["ti"]) + int(state["to"])
        if tokens < c.cost_min_tokens // 4:
            return False
        if self.warmed(state):
            return tokens >= 3 * float(state.get("b", 0.0)) or tokens / r >= 2 * float(state.get("bq", 0.0))
        return tokens / r >= c.cost_heavy_request_tokens / 2

    def volume(self, state: State) -> float:
        return float(int(state["ti"]) + int(state["to"]))

    def update_baselines(self, state: State) -> None:
        super().update_baselines(state)
        per_request = self.volume(state) / max(1, int(state["r"]))
        state["bq"] = self.ewma(state, "bq", per_request)

    def guard(self, state: State) -> tuple[str, str, float] | None:
        c = self.config
        tokens = int(state["ti"]) + int(state["to"])
        if int(state["mo"]) >= c.cost_huge_completion:
            return f"a {int(state['mo']):,}-token completion", self.severity, strength(
                int(state["mo"]), c.cost_huge_completion
            )
        warm = self.warmed(state)
        if warm and tokens >= c.cost_min_tokens:
            limit = c.cost_volume_factor * max(float(state.get("b", 0.0)), 1.0)
            if tokens > limit:
                return (
                    f"{tokens / max(float(state.get('b', 0.0)), 1.0):.0f}x the key's usual tokens per window",
                    self.severity,
                    strength(tokens, limit),
                )
        heavy = int(state["hv"])
        if heavy >= c.cost_heavy_requests:
            per_request = tokens / max(1, int(state["r"]))
            base = float(state.get("bq", 0.0))
            if not warm or per_request >= c.cost_heavy_factor * max(base, 1.0):
                return (
                    f"{heavy} max-length requests ({per_request:,.0f} tokens/request)",
                    self.severity,
                    strength(per_request, c.cost_heavy_request_tokens),
                )
        return None

    def describe(self, key: str, state: State, reason: str) -> tuple[str, str]:
        r = max(1, int(state["r"]))
        tokens = int(state["ti"]) + int(state["to"])
        model = state.get("md") or "models"
        summary = (
            f"{who(state, key)} spent {tokens:,} tokens ({int(state['to']):,} out) on {model} in {r} requests "
            f"in one {self.config.window_s}s window ({reason})"
        )
        return summary, f"ran up token spend on {model}"

    @classmethod
    def synthetic_window(cls, rng: random.Random, key: str, start_ms: int, window_ms: int, attack: bool) -> list[Event]:
        if attack:  # max-length prompts and completions
            n = rng.randint(15, 60)
            spec = [(rng.randint(4000, 8000), rng.randint(2000, 4000)) for _ in range(n)]
        else:
            n = rng.randint(2, 40)
            spec = [(rng.randint(50, 800), rng.randint(50, 600)) for _ in range(n)]
        step = max(1, window_ms // (n + 1))
        return [
            synthetic_event(key, i, start_ms + (i + 1) * step, synthetic_prompt(rng), ti, to)
            for i, (ti, to) in enumerate(spec)
        ]
