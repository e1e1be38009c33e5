"""How a varied run (``SimConfig.other_estate``) differs from the familiar world, drawn per seed.

``Variation.for_seed(seed)``: the benign source mix (each share scaled by 0.5-1.6x, then normalized),
how skewed the API keys' volumes are (each key's weight raised to a power in 0.7-1.4: a few very busy
keys, or an even spread), attack intensity (burst rates scaled by 0.7-1.5x), timing (the gaps of
multi-step attacks stretched or squeezed 0.5-2x), how often an attack is diluted in its target's
usual traffic, and the runtime sensor: every third seed (``seed % 3 == 0``) is a **Falco-only**
estate, where no native agent reports: benign runtime traffic is Falco's own rule hits only, and an
attack's runtime steps are the Falco alerts those syscalls raise (``streams.simulator.world.falco_view``:
no DNS events, no byte counts, destinations named by ``fd.sip.name``). ``Variation.familiar()`` is the
world as it always was (seed 7's demo): every factor 1, nothing diluted, both sensors.

>>> Variation.for_seed(9).falco_only, Variation.for_seed(7).falco_only
(True, False)
>>> dict(Variation.for_seed(9).shares)["native"]
0.0
>>> Variation.for_seed(8) == Variation.for_seed(8) != Variation.for_seed(10)
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from streams.simulator.world import SOURCE_SHARES

FALCO_ONLY_EVERY = 3


@dataclass(frozen=True)
class Variation:
    shares: tuple[tuple[str, float], ...] = SOURCE_SHARES  # benign records per source, summing to 1
    falco_only: bool = False  # runtime from Falco alone: no native agent, no DNS events, no byte counts
    key_skew: float = 1.0  # API key weights raised to this power
    intensity: float = 1.0  # attack burst rates multiplied by this
    spread: float = 1.0  # gaps between the steps of a multi-step attack multiplied by this
    dilution: float = 0.0  # chance an attack that can be is diluted in its target's usual traffic

    @classmethod
    def familiar(cls) -> Variation:
        return cls()

    @classmethod
    def for_seed(cls, seed: int) -> Variation:
        rng = random.Random(seed * 1_000_003 + 4)  # noqa: S311 - a simulation, not a secret
        falco_only = seed % FALCO_ONLY_EVERY == 0
        scaled = {name: share * rng.uniform(0.5, 1.6) for name, share in SOURCE_SHARES}
        if falco_only:  # Falco raises alerts, not every syscall: runtime is a small share of what arrives
            scaled["native"] = 0.0
            scaled["falco"] = rng.uniform(0.04, 0.12)
        total = sum(scaled.values())
        shares = tuple((name, round(scaled[name] / total, 4)) for name, _ in SOURCE_SHARES)
        return cls(
            shares=shares,
            falco_only=falco_only,
            key_skew=round(rng.uniform(0.7, 1.4), 3),
            intensity=round(rng.uniform(0.7, 1.5), 3),
            spread=round(rng.uniform(0.5, 2.0), 3),
            dilution=round(rng.uniform(0.3, 0.7), 3),
        )
