"""``AnomalyModel``: a River pipeline (``MinMaxScaler | HalfSpaceTrees``) behind River's own interface,
with a calibrated 0..1 score, a warm-up and checkpointing.

One model per detector, shared by every entity of that class (API keys, principals): it learns from
per-entity *window* features (one observation per entity per closed window), never from raw events.

Range: ``MinMaxScaler`` maps the range seen so far to 0..1, and the trees span ``-margin .. 1 + margin``
rather than 0..1, so a window beyond anything seen (ten times the usual tokens) falls into empty cells
instead of the edge cells it would share with the largest normal windows.

Calibration: HalfSpaceTrees' raw score is in 0..1 but crowds near 1 (a normal window scores 0.95, an
attack 0.99), so the model keeps the raw scores of the last ``calibration`` windows it learned, and
``score_one`` returns the share of them that scored strictly lower: 0.5 is a typical window, 0.999 is
more anomalous than 999 in 1000 recent windows, 1.0 is beyond every one of them. That makes
``anomaly_threshold`` a quantile anyone can reason about, whatever the features.

>>> model = AnomalyModel(("a", "b"), seed=1, window_size=16, warmup=32)
>>> for i in range(64):
...     x = {"a": (i % 7) / 7, "b": (i % 5) / 5}
...     _ = model.score_one(x)
...     model.learn_one(x)
>>> model.ready
True
>>> model.score_one({"a": 40.0, "b": -30.0}) > model.score_one({"a": 0.5, "b": 0.4})
True
>>> clone = AnomalyModel(("a", "b"), seed=1, window_size=16, warmup=32).loads(model.dumps())
>>> clone.score_one({"a": 0.3, "b": 0.2}) == model.score_one({"a": 0.3, "b": 0.2})
True
"""

from __future__ import annotations

import bisect
import pickle
from collections import deque
from typing import Any

from river import anomaly, compose, preprocessing

_FORMAT = 1


class AnomalyModel:
    """``learn_one(x)`` / ``score_one(x) -> 0..1`` (higher = more anomalous) over fixed feature names.

    Score before you learn (``score_one`` never updates anything); the model may only be trusted once
    ``ready`` (``warmup`` observations learned). Missing features count as 0.
    """

    def __init__(
        self,
        features: tuple[str, ...],
        *,
        seed: int = 42,
        n_trees: int = 10,
        height: int = 6,
        window_size: int = 64,
        warmup: int = 128,
        calibration: int = 1000,
        margin: float = 1.0,
    ) -> None:
        self.features = features
        self.warmup = max(warmup, window_size + 1)
        self.calibration = calibration
        self._params: dict[str, Any] = {
            "seed": seed, "n_trees": n_trees, "height": height, "window_size": window_size, "margin": margin
        }
        self._pipeline = self._new_pipeline()
        self.n = 0
        self._recent: deque[float] = deque(maxlen=calibration)
        self._sorted: list[float] = []
        self._moments: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in features}  # n, mean, M2

    def _new_pipeline(self) -> compose.Pipeline:
        p = self._params
        return compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(
                n_trees=p["n_trees"],
                height=p["height"],
                window_size=p["window_size"],
                seed=p["seed"],
                limits={name: (-p["margin"], 1.0 + p["margin"]) for name in self.features},
            ),
        )

    def _vector(self, x: dict[str, float]) -> dict[str, float]:
        return {name: float(x.get(name, 0.0)) for name in self.features}

    @property
    def ready(self) -> bool:
        """Warm-up done: enough observations learned (and a calibration reference to rank against)."""
        return self.n >= self.warmup and len(self._sorted) >= 16

    def raw_score(self, x: dict[str, float]) -> float:
        """HalfSpaceTrees' own score (0..1, uncalibrated)."""
        value = float(self._pipeline.score_one(self._vector(x)))
        return min(1.0, max(0.0, value))

    def score_one(self, x: dict[str, float]) -> float:
        """Calibrated anomaly score in 0..1: the share of recent learned windows with a lower raw score."""
        ref = self._sorted
        if not ref:
            return 0.0
        return bisect.bisect_left(ref, self.raw_score(x)) / len(ref)

    def learn_one(self, x: dict[str, float]) -> None:
        vector = self._vector(x)
        if self.n >= self._params["window_size"]:  # HalfSpaceTrees scores 0 during its first window
            raw = min(1.0, max(0.0, float(self._pipeline.score_one(vector))))
            if len(self._recent) == self.calibration:
                old = self._recent[0]
                del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._recent.append(raw)
            bisect.insort(self._sorted, raw)
        self._pipeline.learn_one(vector)
        self.n += 1
        for name, value in vector.items():
            moment = self._moments[name]  # Welford's running mean and variance
            moment[0] += 1
            delta = value - moment[1]
            moment[1] += delta / moment[0]
            moment[2] += delta * (value - moment[1])

    def explain(self, x: dict[str, float], top: int = 3) -> list[tuple[str, float]]:
        """Which features moved: ``(feature, z)`` with ``z`` the distance from the mean of the learned
        windows in standard deviations (signed), largest first, those beyond 2 sigma (at most ``top``)."""
        out: list[tuple[str, float]] = []
        for name, value in self._vector(x).items():
            count, mean, m2 = self._moments[name]
            if count < 2:
                continue
            std = max((m2 / (count - 1)) ** 0.5, 1e-3)
            z = (value - mean) / std
            if abs(z) >= 2.0:
                out.append((name, round(z, 1)))
        out.sort(key=lambda item: -abs(item[1]))
        return out[:top]

    # --- checkpointing ------------------------------------------------------------------------
    def dumps(self) -> bytes:
        """The whole model (River pipeline, counters, calibration reference) as bytes (pickle)."""
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "features": self.features,
            "params": self._params,
            "warmup": self.warmup,
            "calibration": self.calibration,
            "pipeline": self._pipeline,
            "n": self.n,
            "recent": list(self._recent),
            "moments": self._moments,
        }
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> AnomalyModel:
        """Restore a checkpoint written by ``dumps`` into this model (returns ``self``).

        Checkpoints are pickles: load only ones this deployment wrote (its own state directory or
        changelog), never bytes from an untrusted party.
        """
        payload = pickle.loads(data)  # noqa: S301 - our own checkpoint, see the docstring
        if payload.get("format") != _FORMAT or tuple(payload["features"]) != self.features:
            msg = f"checkpoint does not match this model (features {payload.get('features')!r})"
            raise ValueError(msg)
        self._params = dict(payload["params"])
        self.warmup = int(payload["warmup"])
        self.calibration = int(payload["calibration"])
        self._pipeline = payload["pipeline"]
        self.n = int(payload["n"])
        self._recent = deque(payload["recent"], maxlen=self.calibration)
        self._sorted = sorted(self._recent)
        moments = payload.get("moments") or {}  # absent in checkpoints written before explain()
        self._moments = {name: list(moments.get(name, (0.0, 0.0, 0.0))) for name in self.features}
        return self
