"""Cost harvesting / denial of wallet (ATLAS AML.T0034): token spend far above normal.

Per API key (else principal), per window: requests, tokens in and out, tokens per request and the
largest completion. Model: River HalfSpaceTrees on the log-scaled features (spend relative to the key's own EWMAs); it
may fire only on windows whose spend is also above the key's normal (``confirm``).

Guards (fire regardless of the model):

* **mix** (once the key's usual mix was learned from ``mix_baseline_requests``): the key keeps its
  usual traffic and adds long completions. The window's output tokens are counted in power-of-two
  buckets (``< 128`` .. ``>= 8192``) and compared with the key's EWMA of bucket shares:
  ``cost_mix_min_long`` completions or more in buckets the key usually reaches in at most
  ``cost_mix_usual`` of its completions (and at least ``cost_long_completion`` tokens), making
  ``cost_mix_share`` of the window, fire however many normal requests dilute them;
* **spend** (after the key's warm-up): window tokens over ``cost_volume_factor`` x the key's EWMA and
  at least ``cost_min_tokens``;
* **huge completion**: one completion of ``cost_huge_completion`` output tokens or more;
* **max-length requests**: ``cost_heavy_requests`` requests of ``cost_heavy_request_tokens`` tokens or
  more in one window, and (once the key is warm) tokens per request ``cost_heavy_factor`` x its EWMA.

State per key (bounded, ~0.8 KiB): window counters and an 8-bucket output-token histogram, two EWMAs
(tokens per window, tokens per request) and the EWMA of the 8 bucket shares, an 8-id evidence ring and
5 entities.
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

FEATURES = ("rel_tokens", "per_request", "rel_per_request", "max_out", "out_share", "long_share", "rel_long_share")
BUCKETS = 8


def bucket(tokens_out: int) -> int:
    """Output-token bucket: 0 for < 128, then one per power of two, 7 for >= 8192."""
    return min(BUCKETS - 1, max(0, int(tokens_out).bit_length() - 7))


def bucket_floor(index: int) -> int:
    """The fewest output tokens of bucket ``index``."""
    return 0 if index == 0 else 1 << (index + 6)


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
        state.update(r=0, ti=0, to=0, mo=0, hv=0, oh=[0] * BUCKETS)

    def accumulate(self, event: Event, state: State) -> None:
        state["r"] += 1
        state["ti"] += event.tokens_in
        state["to"] += event.tokens_out
        if event.tokens_out > int(state["mo"]):
            state["mo"] = event.tokens_out
        if event.tokens_in + event.tokens_out >= self.config.cost_heavy_request_tokens:
            state["hv"] += 1
        state["oh"][bucket(event.tokens_out)] += 1
        remember_model(event, state)

    def window_features(self, state: State) -> dict[str, float]:
        r = max(1, int(state["r"]))
        tokens = int(state["ti"]) + int(state["to"])
        warm = self.warmed(state)
        per_request = tokens / r
        usual = state.get("bh") or [0.0] * BUCKETS
        long = sum(state["oh"][self.long_bucket:])
        return {
            # spend relative to the key's own EWMAs (keys differ by orders of magnitude in volume)
            "rel_tokens": log1p(tokens) - log1p(float(state.get("b", 0.0))) if warm else 0.0,
            "per_request": log1p(per_request),
            "rel_per_request": log1p(per_request) - log1p(float(state.get("bq", 0.0))) if warm else 0.0,
            "max_out": log1p(int(state["mo"])),
            "out_share": int(state["to"]) / tokens if tokens else 0.0,
            "long_share": long / r,
            "rel_long_share": long / r - sum(usual[self.long_bucket:]) if self.mix_ready(state) else 0.0,
        }

    @property
    def long_bucket(self) -> int:
        return bucket(self.config.cost_long_completion)

    def tail(self, state: State) -> int:
        """The lowest output-token bucket (never below ``cost_long_completion``'s) from which up the key's
        usual completions hold at most ``cost_mix_usual`` (``BUCKETS`` if its usual tail reaches the top)."""
        usual = state.get("bh") or [1.0] + [0.0] * (BUCKETS - 1)
        for index in range(self.long_bucket, BUCKETS):
            if sum(usual[index:]) <= self.config.cost_mix_usual:
                return index
        return BUCKETS

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
        r = int(state["r"])
        c = self.config
        long = sum(state["oh"][self.tail(state):])
        suspicious = self.mix_ready(state) and 2 * long >= c.cost_mix_min_long and long >= c.cost_mix_share * r
        self.learn_mix(state, "bh", [n / max(1, r) for n in state["oh"]], r, suspicious)

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
        if self.mix_ready(state):
            tail = self.tail(state)
            long = sum(state["oh"][tail:])
            r = max(1, int(state["r"]))
            if long >= c.cost_mix_min_long and long / r >= c.cost_mix_share:
                usual = sum((state.get("bh") or ())[tail:])
                return (
                    f"{long} completions of {bucket_floor(tail):,}+ output tokens, {long / r:.0%} of {r} requests "
                    f"(usually {usual:.1%}): the key's output-token mix moved",
                    self.severity,
                    strength(long / r, c.cost_mix_share),
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
