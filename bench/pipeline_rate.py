"""End-to-end throughput of one worker with every detector on: a backlog of N simulated raw records
is published first (unpaced), then one `aiwarden worker` process drains it; the rate is N over the
time from the first event landing in ClickHouse until every event is stored and the worker's
consumer group (normalize, detect, correlate) has committed everything. Also reports the worker's RSS and the
findings and alerts the run produced."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from infra.clickhouse.client import connect
from infra.kafka.clients import confluent_config
from infra.settings import Settings
from streams import topics
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import SimConfig
from streams.worker_process import WorkerProcess


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def group_lag(settings: Settings, group: str, topic_names: tuple[str, ...]) -> int:
    """Records the group has not committed yet on ``topic_names`` (read without joining the group)."""
    consumer = Consumer(confluent_config(settings, **{"group.id": group, "enable.auto.commit": False}))
    try:
        partitions = [
            TopicPartition(name, p)
            for name in topic_names
            for p in consumer.list_topics(name, timeout=10).topics[name].partitions
        ]
        committed = consumer.committed(partitions, timeout=10)
        lag = 0
        for tp in committed:
            high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def run(settings: Settings, events: int = 50_000, rate: float = 1000.0, log_dir: Path | None = None) -> dict[str, Any]:
    start_ms = (int(time.time()) - 86_400) // 60 * 60_000 + uuid.uuid4().int % 59_000
    config = SimConfig(seed=5, duration_s=events / rate, rate=rate, start_ms=start_ms)
    summary, publish_rate = publish_simulation(Publisher(settings), config, paced=False)
    published = sum(summary.published.values())
    end_ms = start_ms + int(config.duration_s * 1000) + 1000
    window = {"start": start_ms - 1000, "end": end_ms}
    client = connect(settings)
    count_sql = "SELECT count() FROM aiwarden.events WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64}"
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    log_path = (log_dir or settings.state_dir) / f"{app_id}.log"
    worker = WorkerProcess(settings, log_path, AIWARDEN_WORKER__APP_ID=app_id).start()
    started = time.monotonic()
    first = last = None
    landed, peak_rss, samples, lag = 0, 0.0, [], -1
    try:
        # Done when every event is in ClickHouse AND the worker's own group (normalize, detect,
        # correlate) has committed everything: detection, not only storage, has caught up.
        while time.monotonic() - started < 1800:
            landed = int(client.query(count_sql, parameters=window).result_rows[0][0])
            now = time.monotonic()
            if landed and first is None:
                first = now
            if worker.proc is not None and worker.running:
                peak_rss = max(peak_rss, rss_mib(worker.proc.pid))
            lag = group_lag(settings, app_id, (*topics.RAW_TOPICS, topics.EVENTS, topics.FINDINGS)) if landed else -1
            samples.append((round(now - started, 1), landed, lag))
            if landed >= published and lag == 0:
                last = now
                break
            time.sleep(1)
        time.sleep(3)  # the sink's last batch of findings and alerts
        findings = client.query(
            "SELECT count() FROM aiwarden.findings FINAL WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64}",
            parameters=window,
        ).result_rows[0][0]
        alerts = client.query(
            "SELECT count() FROM aiwarden.alerts FINAL WHERE first_seen >= {start:Int64} AND first_seen < {end:Int64}",
            parameters=window,
        ).result_rows[0][0]
    finally:
        worker.stop()
        client.close()
    drained = (last - first) if first is not None and last is not None else None
    return {
        "events": published,
        "publish_rate": round(publish_rate),
        "landed": landed,
        "worker_startup_to_first_row_s": round(first - started, 1) if first else None,
        "drain_s": round(drained, 1) if drained else None,
        "events_per_s": round(published / drained) if drained else None,
        "worker_peak_rss_mib": round(peak_rss),
        "findings": findings,
        "alerts": alerts,
        "samples": samples[:: max(1, len(samples) // 20)],
    }
