"""Scaling: one worker against two on the same backlog. N simulated raw records are published once
(after noting the raw topics' end offsets); a worker group positioned at those offsets drains them
with one worker process, then a second, fresh group (raw topics at the same offsets, every other
topic at its current end, so it does not redo the first group's downstream records) drains them with
two. The rate of each is N over the time from the first committed progress to zero lag on the
workers' and the sinks' topics (group joins and table recovery not counted); the ratio is two / one.

The aiwarden topics have ``settings.kafka.partitions`` partitions (4 by default, ≥ workers). On a
2-core machine that also runs Kafka and ClickHouse, two workers cannot get two cores of their own:
the ratio measured there is a floor, not the scaling of a real deployment.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from bench.common import app_id_of, end_offsets, position_groups, start_worker, wait_drained
from infra.settings import Settings
from streams import topics
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import SimConfig


def drain(settings: Settings, raw_from: dict[tuple[str, int], int], events: int, workers: int) -> dict[str, Any]:
    app_id = f"bench-scale{workers}-{uuid.uuid4().hex[:6]}"
    position_groups(settings, app_id, raw_from)
    procs = [start_worker(settings, "", app_id=app_id) for _ in range(workers)]
    try:
        result = wait_drained(settings, app_id, events, workers=procs)
    finally:
        for proc in procs:
            proc.stop()
    result["workers"] = workers
    result["app_id"] = app_id_of(procs[0])
    return result


def run(settings: Settings, events: int = 40_000, rate: float = 1000.0) -> dict[str, Any]:
    raw_from = end_offsets(settings, topics.RAW_TOPICS)
    start_ms = (int(time.time()) - 3 * 86_400) // 60 * 60_000 + uuid.uuid4().int % 59_000
    config = SimConfig(seed=6, duration_s=events / rate, rate=rate, start_ms=start_ms)
    summary, _ = publish_simulation(Publisher(settings), config, paced=False)
    published = sum(summary.published.values())
    one = drain(settings, raw_from, published, 1)
    two = drain(settings, raw_from, published, 2)
    ratio = round(two["events_per_s"] / one["events_per_s"], 2) if one["events_per_s"] and two["events_per_s"] else None
    return {"events": published, "partitions": settings.kafka.partitions, "cores": os.cpu_count(),
            "one": one, "two": two, "ratio": ratio}
