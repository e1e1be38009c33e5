"""Can the simulator hold its rate? Publishes at --rate for --duration to the real broker and
records the achieved rate per second of wall clock, plus a check that the labels match what
was published."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from infra.settings import Settings
from schemas.sources import SOURCES
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator


def run(settings: Settings, rate: float = 20_000, duration_s: float = 60.0) -> dict[str, Any]:
    config = SimConfig(seed=42, duration_s=duration_s, rate=rate, start_ms=int(time.time()) * 1000)
    simulator = Simulator(config)
    publisher = Publisher(settings)
    per_second: Counter[int] = Counter()
    attack_records: Counter[str] = Counter()
    started = time.perf_counter()
    count = 0
    for record in simulator.records():
        publisher.publish_record(record.source, record.record, SOURCES[record.source].primary_key(record.record))
        if record.attack:
            attack_records[record.attack] += 1
        count += 1
        if count % 200 == 0:
            elapsed = time.perf_counter() - started
            per_second[int(elapsed)] += 200
            ahead = count / rate - elapsed
            if ahead > 0:
                time.sleep(ahead)
    summary = publisher.flush()
    elapsed = time.perf_counter() - started
    full_seconds = [per_second[s] for s in range(int(duration_s)) if s in per_second][1:-1]
    labels = simulator.labels()
    labelled = Counter()
    for label in labels:
        labelled[label.scenario] += label.events
    return {
        "target_rate": rate,
        "duration_s": duration_s,
        "published": sum(summary.published.values()),
        "failed": summary.failed,
        "achieved_rate": round(count / elapsed, 1),
        "worst_second": min(full_seconds) if full_seconds else None,
        "best_second": max(full_seconds) if full_seconds else None,
        "seconds_within_5pct": sum(1 for n in full_seconds if abs(n - rate) <= 0.05 * rate),
        "seconds_measured": len(full_seconds),
        "labels": len(labels),
        "labels_match_published": dict(labelled) == dict(attack_records),
    }
