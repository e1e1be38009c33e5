"""Model extraction (ATLAS AML.T0024.002): a caller sweeping the model with systematic queries.

Per API key (else principal), per window: requests, tokens in / out per request, the
completion / prompt ratio, distinct prompt templates (digits removed, 48-register linear counting)
and the PRADA-style distance of each prompt to the nearest of the key's last 3 prompts
(``detectors.text.distance``: mean, min, share of near-duplicates). Model: River HalfSpaceTrees on
the log-scaled features (volume relative to the key's own EWMA, so heavy and light keys share one
model); it may fire only on windows that also lean towards extraction (``confirm``).

Guards (fire regardless of the model):

* **sweep**: at least ``extraction_sweep_pairs`` consecutive prompt pairs in the window, of which
  ``extraction_sweep_fraction`` are near-duplicates, mean distance under ``extraction_max_distance``
  (no baseline needed: a key that asks the same templated question hundreds of times a minute); once
  the key has a usual share, also ``extraction_mix_share`` over it (a batch pipeline's near-identical
  prompts are its usual: it fires in its first window, which is learned, and not again);
* **mix** (once the key's usual share was learned from ``mix_baseline_requests`` prompt pairs):
  ``extraction_mix_min_pairs`` near-duplicate pairs or more whose
  share of the window's pairs is ``extraction_mix_share`` over the key's usual share (EWMA over its
  windows) and three times it: a sweep diluted in the key's ordinary traffic, which the mean distance
  averages away. Counted also over this window and the one before it (when that one did not fire): a
  sweep that a window boundary cuts in two halves, each under the count, is still one sweep;
* **template** (mix-ready key): one prompt template (digits removed) repeated ``extraction_mix_min_pairs``
  times or more in the window, its share of the window's prompts ``extraction_template_share`` over the
  key's usual top-template share (EWMA), and three times it unless the key does not usually send that
  template (a 64-bit map of the templates its earlier windows repeated, learned a window late): a diluted
  sweep whose prompts are too far apart in the key's traffic for the near-duplicate pairs to show, or a
  templated service key sweeping with another template (counted in a 64-counter sketch);
* **volume** (after the key's warm-up): requests over ``extraction_volume_factor`` x the key's EWMA
  with mean distance under ``extraction_max_distance``.

State per key (bounded, ~1.1 KiB, < 2 KiB whatever the prompts): window counters, the last 3
prompts' 64-char views, three EWMAs (requests, near-duplicate share, top-template share), the map of
the key's usual templates, an 8-id evidence ring and 5 entities.
"""

from __future__ import annotations

import random
from typing import Any

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
from detectors.text import bitmap_add, bitmap_estimate, nearest, template, view
from schemas.envelope import Event

RECENT_PROMPTS = 3
FEATURES = ("rel_requests", "tokens_in", "tokens_out", "ratio", "distinct", "distance", "near_dup", "rel_near_dup")
TEMPLATE_BUCKETS = 64
USUAL_MIN_REPEATS = 3


def count_template(counters: list[int], shape: int) -> None:
    """One prompt of template ``shape`` into the window's sketch: ``TEMPLATE_BUCKETS`` counters by hash."""
    if not counters:
        counters.extend([0] * TEMPLATE_BUCKETS)
    counters[(shape >> 8) % TEMPLATE_BUCKETS] += 1


def repeats(state: State, count: int) -> int:
    """A template bucket's count in the window less what the other templates put in it on average
    (count-mean-min): about 0 for varied prompts, the sweep's size for a sweep."""
    return max(0, round(count - (int(state["np"]) - count) / (TEMPLATE_BUCKETS - 1)))


def top_template(state: State) -> tuple[int, int]:
    """``(bucket, repeats)`` of the window's most repeated template (``(-1, 0)`` with no prompt)."""
    counters: list[int] = state.get("tk") or []
    if not counters:
        return -1, 0
    top = max(counters)
    return counters.index(top), repeats(state, top)


def substantial_buckets(state: State, share: float) -> int:
    """A bitmap of the window's template buckets repeated at least ``USUAL_MIN_REPEATS`` times and making
    ``share`` of its prompts or more: the templates the key sends, as opposed to one-off prompts."""
    prompts = int(state["np"])
    bits = 0
    for bucket, count in enumerate(state.get("tk") or ()):
        n = repeats(state, count)
        if n >= USUAL_MIN_REPEATS and n >= share * prompts:
            bits |= 1 << bucket
    return bits


class ModelExtraction(WindowedAnomalyDetector):
    id = "model_extraction"
    title = "Model extraction sweep against an inference API"
    maturity = "incubating"
    severity = "high"
    tactics = ("exfiltration", "ml-model-access")
    atlas = ("AML.T0024.002", "AML.T0040")
    attack = ()
    owasp_llm = ("LLM10:2025",)
    features = FEATURES
    description = __doc__ or ""

    def reset_window(self, state: State) -> None:
        state.update(r=0, ti=0, to=0, np=0, pc=0, ds=0.0, dm=1.0, dd=0, tb=0, tk=[])

    def open_window(self, state: State, window: int) -> None:
        previous = state.get("w")
        # the window just closed, if it is the one before and did not fire: its near-duplicate pairs and pairs
        carried = [int(state.get("dd", 0)), int(state.get("pc", 0))] \
            if previous == window - 1 and state.get("fw") != previous else [0, 0]
        super().open_window(state, window)
        state["cd"], state["cp"] = carried

    def accumulate(self, event: Event, state: State) -> None:
        state["r"] += 1
        state["ti"] += event.tokens_in
        state["to"] += event.tokens_out
        remember_model(event, state)
        prompt = event.prompt
        if not prompt:
            return
        cur = view(prompt)
        state["np"] += 1
        shape = template(cur)
        state["tb"] = bitmap_add(int(state["tb"]), shape)
        count_template(state.setdefault("tk", []), shape)
        recent: list[list[Any]] = state.setdefault("pv", [])
        if recent:
            # PRADA-style: the distance to the nearest of the last few prompts, so a sweep interleaved
            # with the key's ordinary traffic still shows as near-duplicates
            d = nearest(recent, cur, len(prompt))
            state["pc"] += 1
            state["ds"] = round(float(state["ds"]) + d, 4)
            if d < float(state["dm"]):
                state["dm"] = round(d, 4)
            if d < self.config.extraction_near_duplicate:
                state["dd"] += 1
        recent.append([cur, len(prompt)])
        del recent[:-RECENT_PROMPTS]

    def window_features(self, state: State) -> dict[str, float]:
        r = max(1, int(state["r"]))
        pairs = int(state["pc"])
        prompts = int(state["np"])
        baseline = float(state.get("b", 0.0))
        return {
            # relative to the key's own EWMA: a class-level model cannot compare a key that always sends
            # 400 requests a minute with one that sends 2 on absolute volume (heavy-tailed keys)
            "rel_requests": log1p(r) - log1p(baseline) if self.warmed(state) else 0.0,
            "tokens_in": log1p(int(state["ti"]) / r),
            "tokens_out": log1p(int(state["to"]) / r),
            "ratio": log1p(int(state["to"]) / (int(state["ti"]) + 1)),
            "distinct": min(1.0, bitmap_estimate(int(state["tb"])) / prompts) if prompts else 1.0,
            "distance": float(state["ds"]) / pairs if pairs else 1.0,
            "near_dup": int(state["dd"]) / pairs if pairs else 0.0,
            "rel_near_dup": (int(state["dd"]) / pairs if pairs else 0.0) - float(state.get("bd", 0.0))
            if self.mix_ready(state) else 0.0,
        }

    def update_baselines(self, state: State) -> None:
        super().update_baselines(state)
        pairs = int(state["pc"])
        if pairs:
            c, near = self.config, int(state["dd"])
            usual = float(state.get("bd", 0.0))
            # half-way to firing is not the key's usual
            suspicious = (self.mix_ready(state) and 2 * near >= c.extraction_mix_min_pairs
                          and near / pairs >= usual + c.extraction_mix_share / 2)
            self.learn_mix(state, "bd", near / pairs, pairs, suspicious)
        prompts = int(state["np"])
        if not prompts:
            return
        half = self.config.extraction_template_share / 2
        bucket, count = top_template(state)
        top = count / prompts
        drifted = self.drifted(state)
        fired = state.get("fw") == state["w"] and not drifted
        if not fired:
            if "bt" not in state:  # a templated key's first window sets its usual, however templated
                state["bt"] = round(top, 4)
            elif top < (usual_top := float(state["bt"])) + half or drifted:
                state["bt"] = round(usual_top + self.alpha * (top - usual_top), 4)
        # the templates a window repeated become usual one window later, if that one is not half-way to
        # firing on a new template: the window before a sweep may hold its first prompts
        repeated = substantial_buckets(state, half)
        if "bu" not in state:
            state["bu"], state["bc"] = repeated, 0
        elif fired or (not drifted and self.novel(state, bucket)
                       and 2 * count >= self.config.extraction_mix_min_pairs and top >= half):
            state["bc"] = 0
        else:
            state["bu"], state["bc"] = int(state["bu"]) | int(state.get("bc", 0)), repeated

    @staticmethod
    def novel(state: State, bucket: int) -> bool:
        """Template ``bucket`` is not one the key usually sends (``bu``: the buckets its earlier windows
        repeated; a key's first window has none to judge by)."""
        return bucket >= 0 and "bu" in state and not int(state["bu"]) >> bucket & 1

    def confirm(self, state: State) -> bool:
        """The model may fire on a big enough window that also leans towards extraction: similar
        successive prompts, or a volume jump over the key's own baseline."""
        r = int(state["r"])
        if r < self.config.anomaly_min_requests:
            return False
        pairs, near = int(state["pc"]), int(state["dd"])
        # a share of near-duplicates only with enough of them: 6 in a quiet key's 20 happen by chance
        # (its own prompts repeat: a prompt library, retries)
        if pairs and (float(state["ds"]) / pairs <= 0.6
                      or (near / pairs >= 0.3 and 2 * near >= self.config.extraction_mix_min_pairs)):
            return True
        return self.warmed(state) and r >= 3 * max(float(state.get("b", 0.0)), 1.0)

    def volume(self, state: State) -> float:
        return float(state["r"])

    def guard(self, state: State) -> tuple[str, str, float] | None:
        c = self.config
        pairs = int(state["pc"])
        if pairs == 0:
            return None
        near = int(state["dd"]) / pairs
        if self.mix_ready(state):
            usual = float(state.get("bd", 0.0))
            for dups, of, span in ((int(state["dd"]), pairs, ""),
                                   (int(state["dd"]) + int(state.get("cd", 0)), pairs + int(state.get("cp", 0)),
                                    " over this window and the one before")):
                share = dups / of
                if dups >= c.extraction_mix_min_pairs and share >= usual + c.extraction_mix_share \
                        and share >= 3 * usual:
                    return (
                        f"{dups} near-identical prompt pairs, {share:.0%} of {of}{span} (usually {usual:.0%}): "
                        "a systematic sweep inside the key's usual traffic",
                        self.severity,
                        strength(share, usual + c.extraction_mix_share),
                    )
        counters: list[int] = state.get("tk") or []
        most = max(counters, default=0)
        repeated = repeats(state, most)
        if self.mix_ready(state) and "bt" in state and repeated >= c.extraction_mix_min_pairs:
            top, usual_top, prompts = repeated / int(state["np"]), float(state["bt"]), int(state["np"])
            novel = self.novel(state, counters.index(most))  # which bucket, only past the count (every event)
            # three times the usual top share only for a template the key sends anyway: a key that always
            # sends one template at 10% sweeping with another at 25% is not three times its usual
            if top >= usual_top + c.extraction_template_share and (novel or top >= 3 * usual_top):
                which = "a prompt template the key does not usually send" if novel else "one prompt template"
                return (
                    f"{which} repeated {repeated} times, {top:.0%} of {prompts} prompts (top template usually "
                    f"{usual_top:.0%}): a systematic sweep inside the key's usual traffic",
                    self.severity,
                    strength(top, usual_top + c.extraction_template_share),
                )
        mean = float(state["ds"]) / pairs
        if mean > c.extraction_max_distance:
            return None
        # a key whose usual is near-identical prompts (a batch pipeline) sweeps only past its usual
        if pairs >= c.extraction_sweep_pairs and near >= c.extraction_sweep_fraction and (
                not self.mix_ready(state) or near >= float(state.get("bd", 0.0)) + c.extraction_mix_share):
            return "systematic sweep of near-identical prompts", self.severity, max(0.5, 1.0 - mean)
        requests = int(state["r"])
        baseline = float(state.get("b", 0.0))
        if self.warmed(state) and requests >= c.extraction_min_requests and pairs >= 5:
            limit = c.extraction_volume_factor * max(baseline, 1.0)
            if requests > limit:
                return (
                    f"{requests / max(baseline, 1.0):.0f}x the key's usual requests with near-identical prompts",
                    self.severity,
                    strength(requests, limit),
                )
        return None

    def describe(self, key: str, state: State, reason: str) -> tuple[str, str]:
        r = max(1, int(state["r"]))
        pairs = int(state["pc"])
        mean = float(state["ds"]) / pairs if pairs else 1.0
        templates = bitmap_estimate(int(state["tb"]))
        model = state.get("md") or "the model"
        summary = (
            f"{who(state, key)} sent {r} requests to {model} in one {self.config.window_s}s window: "
            f"{int(state['dd'])}/{pairs} consecutive prompts near-identical (mean distance {mean:.2f}, "
            f"~{templates:.0f} templates), {int(state['to']) / r:.0f} completion tokens/request ({reason})"
        )
        return summary, f"swept {model} with near-identical prompts"

    @classmethod
    def synthetic_window(cls, rng: random.Random, key: str, start_ms: int, window_ms: int, attack: bool) -> list[Event]:
        if attack:  # a templated sweep: hundreds of one-token variations, one-word answers
            n, first = rng.randint(120, 400), rng.randrange(10_000)
            template = "Classify the sentiment of review #{:05d}. One word."
            spec = [(template.format(first + i), 20, rng.randint(1, 5)) for i in range(n)]
        else:
            n = rng.randint(2, 40)
            spec = [(synthetic_prompt(rng), rng.randint(50, 800), rng.randint(50, 600)) for _ in range(n)]
        step = max(1, window_ms // (n + 1))
        return [synthetic_event(key, i, start_ms + (i + 1) * step, p, ti, to) for i, (p, ti, to) in enumerate(spec)]
