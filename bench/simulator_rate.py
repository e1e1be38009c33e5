"""Can the simulator hold its rate? Publishes at ``rate`` for ``duration_s`` to the real broker
through the same path as `aiwarden simulate`, records the achieved rate in every second of wall
clock, and checks that the labels match the attack records that were published."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from infra.settings import Settings
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import SimConfig, Simulator


def run(settings: Settings, rate: float = 20_000, duration_s: float = 60.0) -> dict[str, Any]:
    config = SimConfig(seed=42, duration_s=duration_s, rate=rate, start_ms=int(time.time()) * 1000)
    per_second: Counter[int] = Counter()
    last = [0]
    started = time.perf_counter()

    def tick(count: int) -> None:
        per_second[int(time.perf_counter() - started)] += count - last[0]
        last[0] = count

    summary, achieved = publish_simulation(Publisher(settings), config, on_progress=tick)
    # The simulator is deterministic: replaying it tells which published records were attacks.
    simulator = Simulator(config)
    attack_records = Counter(r.attack for r in simulator.records() if r.attack)
    labelled = Counter()
    for label in simulator.labels():
        labelled[label.scenario] += label.events
    seconds = [per_second[s] for s in sorted(per_second)][1:-1]  # whole seconds only
    return {
        "target_rate": rate,
        "duration_s": duration_s,
        "published": sum(summary.published.values()),
        "failed": summary.failed,
        "achieved_rate": round(achieved, 1),
        "worst_second": min(seconds) if seconds else None,
        "best_second": max(seconds) if seconds else None,
        "seconds_within_5pct": sum(1 for n in seconds if abs(n - rate) <= 0.05 * rate),
        "seconds_measured": len(seconds),
        "labels": len(simulator.labels()),
        "labels_match_published": dict(labelled) == dict(attack_records),
    }
