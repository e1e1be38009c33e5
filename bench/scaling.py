"""Scaling: one worker against two on the same backlog, and the CPU each costs per event.

N simulated raw records are generated and encoded once. For one worker, then for two: the workers
(a fresh app id, every group at the topics' current end) are started and waited for until they are
ready and idle (the engine group's assignment settled), then the N records are published from memory
as fast as the producer goes. The rate is N over the time from the first committed progress on the
raw topics to zero lag on the engine's topics (raw, events, findings) and the sink's (lag by
``infra.kafka.lag.group_lag``); group joins and state restores are not counted. CPU per event: the
utime + stime (``/proc``, children included) of every worker process from just before publishing
to zero lag, summed, over N; each process's share is listed. The ratio is two / one; with CPU per
event flat, two workers do the same work in the same CPU.

The aiwarden topics have ``settings.kafka.partitions`` partitions (4 by default, ≥ workers). On a
2-core machine that also runs Kafka and ClickHouse, two workers cannot get two cores of their own:
the ratio measured there is a floor, not the scaling of a real deployment.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from bench.common import (
    Prepared,
    position_groups,
    prepare_records,
    publish_prepared,
    start_worker,
    wait_drained,
    wait_ready,
)
from infra.settings import Settings
from streams.simulator import SimConfig


def drain(settings: Settings, records: Prepared, workers: int) -> dict[str, Any]:
    app_id = f"bench-scale{workers}-{uuid.uuid4().hex[:6]}"
    position_groups(settings, app_id)
    procs = [start_worker(settings, "", app_id=app_id) for _ in range(workers)]
    try:
        wait_ready(procs)
        result = wait_drained(settings, app_id, len(records), workers=procs,
                              publish=lambda: publish_prepared(settings, records))
    finally:
        for proc in procs:
            proc.stop()
    result["workers"] = workers
    result["app_id"] = app_id
    return result


def run(settings: Settings, events: int = 40_000, rate: float = 1000.0) -> dict[str, Any]:
    start_ms = (int(time.time()) - 3 * 86_400) // 60 * 60_000 + uuid.uuid4().int % 59_000
    records = prepare_records(SimConfig(seed=6, duration_s=events / rate, rate=rate, start_ms=start_ms))
    one = drain(settings, records, 1)
    two = drain(settings, records, 2)
    ratio = round(two["events_per_s"] / one["events_per_s"], 2) if one["events_per_s"] and two["events_per_s"] else None
    cpu_one, cpu_two = one.get("cpu_us_per_event"), two.get("cpu_us_per_event")
    return {"events": len(records), "partitions": settings.kafka.partitions, "cores": os.cpu_count(),
            "one": one, "two": two, "ratio": ratio,
            "cpu_ratio": round(cpu_two / cpu_one, 2) if cpu_one and cpu_two else None}
