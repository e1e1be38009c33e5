"""Detection quality per attack class from the simulator's labels: precision, recall, time to detect
and false alerts per 100k benign events, through a real worker.

A seeded simulation of N records (every attack class, ``instances`` attacks of each, event times a
few days back so no other benchmark's alerts fall in its window) is published unpaced, then one
worker (its groups positioned just before it) drains it; once the pipeline's lag is zero and the
alerts in ClickHouse stop changing, ``streams.evaluate`` scores them against the labels, as
``aiwarden evaluate`` and the demo do. Time to detect is event time (alert first_seen − attack
start): the backlog is replayed faster than real time, so wall-clock delays mean nothing here.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import app_id_of, end_offsets, percentile, start_worker, wait_drained
from infra.clickhouse.client import connect
from infra.settings import Settings
from streams import topics
from streams.demo import fetch_alerts
from streams.evaluate import evaluate
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import SimConfig, read_labels


def settled_alerts(settings: Settings, window: dict[str, int], quiet_s: float = 10, limit_s: float = 120
                   ) -> list[dict[str, Any]]:
    """The alerts of the window once they (ids and last_seen) have not changed for ``quiet_s``."""
    client = connect(settings)
    try:
        deadline, last, since = time.monotonic() + limit_s, None, time.monotonic()
        while True:
            alerts = fetch_alerts(client, settings.clickhouse.database, window)
            current = sorted((a["alert_id"], a["last_seen"]) for a in alerts)
            if current != last:
                last, since = current, time.monotonic()
            if time.monotonic() - since >= quiet_s or time.monotonic() > deadline:
                return alerts
            time.sleep(1)
    finally:
        client.close()


def run(settings: Settings, events: int = 300_000, rate: float = 1000.0, instances: int = 3,
        log_dir: Path | None = None) -> dict[str, Any]:
    raw_from = end_offsets(settings, topics.RAW_TOPICS)
    start_ms = (int(time.time()) - 2 * 86_400) // 60 * 60_000 + uuid.uuid4().int % 59_000
    config = SimConfig(seed=7, duration_s=events / rate, rate=rate, start_ms=start_ms, instances=instances)
    labels_path = (log_dir or settings.state_dir) / f"quality-labels-{start_ms}.jsonl"
    summary, _ = publish_simulation(Publisher(settings), config, labels_path, paced=False)
    published = sum(summary.published.values())
    worker = start_worker(settings, "bench-quality", log_dir, raw_from=raw_from)
    try:
        drained = wait_drained(settings, app_id_of(worker), published, workers=[worker])
        window = {"start": start_ms, "end": start_ms + int(config.duration_s * 1000) + 1}
        alerts = settled_alerts(settings, window)
    finally:
        worker.stop()
    labels = read_labels(labels_path)
    benign = max(0, published - sum(label.events for label in labels))
    quality = evaluate(labels, alerts, benign)
    classes = {
        name: {
            "class": name, "attacks": q.attacks, "detected": q.detected, "recall": round(q.recall, 3),
            "alerts": q.alerts,
            "detect_s_p50": round(p / 1000, 1) if (p := percentile(q.detect_ms, 50)) is not None else None,
            "detect_s_max": round(max(q.detect_ms) / 1000, 1) if q.detect_ms else None,
        }
        for name, q in sorted(quality.classes.items())
    }
    return {
        "events": published,
        "event_rate": rate,
        "attacks": len(labels),
        "benign_events": benign,
        "drain_events_per_s": drained["events_per_s"],
        "alerts": quality.total_alerts,
        "false_alerts": quality.false_alerts,
        "false_per_100k": round(quality.false_per_100k, 2),
        "precision": round(quality.precision, 3),
        "false_alert_examples": quality.false_alert_examples[:5],
        "classes": classes,
    }
