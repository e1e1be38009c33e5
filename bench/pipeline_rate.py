"""End-to-end throughput of one worker with every detector on, two ways.

Backlog drain: N simulated raw records are published first (unpaced), then one `aiwarden worker`
process drains them; the rate is N over the time from the first event landing in ClickHouse until
every event is stored and the worker's consumer group (normalize, detect, correlate) has committed
everything. Also reports the worker's RSS and the findings and alerts the run produced.

Sustained rate: the same worker, warm, then gets records published at a fixed rate for
``step_s`` seconds per step, the rate stepped up from half the drain rate; the consumer lag of the
worker's group and of its sink's group (end offsets minus committed offsets) is sampled every
second. Faust commits every few seconds, and while records keep coming its commits trail behind
what it has processed, so the lag while publishing overstates the backlog. The test is what is left
when publishing stops: a step holds when both groups have committed everything within
``settle_s`` seconds (a real backlog of (rate − capacity) × step_s records takes longer: with
20 s steps and 5 s, a step above ~1.15× what the worker keeps up with fails). The sustained rate is
the highest step that holds; the steps stop at the first that does not.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from infra.clickhouse.client import connect
from infra.kafka.clients import confluent_config
from infra.settings import Settings
from streams import topics
from streams.pipeline.engine import pipeline_group
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


SINK_TOPICS = (topics.EVENTS, topics.FINDINGS, topics.ALERTS, topics.INVENTORY, topics.DLQ)


def pipeline_lag(settings: Settings, app_id: str) -> int:
    """Records not yet committed by the worker's agents and by its sink."""
    return (group_lag(settings, pipeline_group(app_id), (*topics.RAW_TOPICS, topics.EVENTS, topics.FINDINGS))
            + group_lag(settings, f"{app_id}-sink", SINK_TOPICS))


def slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope (records/s) of (seconds, lag) samples."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_l = sum(lag for _, lag in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (lag - mean_l) for t, lag in samples) / var if var else 0.0


def step(settings: Settings, app_id: str, rate: float, step_s: float, seed: int, settle_s: float) -> dict[str, Any]:
    """Publish at ``rate`` for ``step_s`` seconds while sampling the lag; whether the worker kept up."""
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append((time.monotonic() - started, pipeline_lag(settings, app_id)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    config = SimConfig(seed=seed, duration_s=step_s, rate=rate, start_ms=int(time.time() * 1000))
    _, achieved = publish_simulation(Publisher(settings), config, paced=True)
    done.set()
    sampler.join()
    stopped = time.monotonic()
    lag = catch_up(settings, app_id, below=0, timeout_s=settle_s)
    settled = time.monotonic() - stopped
    return {
        "target_rate": round(rate), "published_rate": round(achieved),
        "max_lag_while_publishing": max((lag for _, lag in samples), default=0),
        "lag_growth_per_s": round(slope(samples[len(samples) // 3:])),
        "lag_at_stop_plus_settle": lag, "settle_s": round(settled, 1),
        "held": lag == 0,
    }


def catch_up(settings: Settings, app_id: str, below: int, timeout_s: float) -> int:
    """Wait (at most ``timeout_s``) until the lag is at most ``below``; the last lag seen."""
    deadline = time.monotonic() + timeout_s
    lag = pipeline_lag(settings, app_id)
    while lag > below and time.monotonic() < deadline:
        time.sleep(1)
        lag = pipeline_lag(settings, app_id)
    return lag


def sustained(settings: Settings, app_id: str, drain_rate: float, step_s: float = 20.0, settle_s: float = 5.0,
              factors: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.6, 2.0, 2.5)) -> dict[str, Any]:
    """The highest published rate the worker keeps up with (see the module doc)."""
    steps: list[dict[str, Any]] = []
    best = None
    for i, factor in enumerate(factors):
        result = step(settings, app_id, max(50.0, drain_rate * factor), step_s, seed=100 + i, settle_s=settle_s)
        steps.append(result)
        if not result["held"]:
            break
        best = result["published_rate"]
    return {"sustained_events_per_s": best, "step_s": step_s, "settle_s": settle_s, "steps": steps}


def run(settings: Settings, events: int = 50_000, rate: float = 1000.0, log_dir: Path | None = None,
        sustain: bool = True) -> dict[str, Any]:
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
        drained = (last - first) if first is not None and last is not None else None
        steady: dict[str, Any] = {}
        if sustain and drained:
            load = Path("/proc/loadavg").read_text().split()[0]
            steady = {**sustained(settings, app_id, published / drained), "load_before_sustained": load}
    finally:
        worker.stop()
        client.close()
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
        **steady,
    }
