"""End-to-end throughput and CPU per event of one worker with every detector on, two ways.

Backlog drain: one `aiwarden worker` process (pipeline engine: normalize, detect, correlate; the
ClickHouse sink) is started on empty topics and waited for until it is ready and idle; then N
simulated raw records, generated and encoded beforehand, are published from memory as fast as the
producer goes (far faster than the worker; the idle worker starts on them at once). The drain ends
when every event is stored in ClickHouse (polled every 0.2 s) and both the engine's group and the
sink's have committed everything (lag by ``infra.kafka.lag.group_lag``, ~1 s a probe: transaction
markers are not records; when the first probe after the last event landed finds lag 0, the end is
when it landed, else when a probe first finds 0). The rate is the events landed after the first
poll that found any, over the time from that poll to the end: the pipeline's latency (the sink
inserts every ``SINK_BATCH_SECONDS``) is then at both ends of the window and cancels out (when the
whole backlog lands at once, as small ones do, N over the time from the first record published).
CPU per event is the worker process's utime + stime (``/proc``, children included) from the first
record published to the end, over N: the idle worker's own ticking is in it, its start-up is not. Also
the worker's peak RSS, its engine counters (records, transactions, aborted) and the findings and
alerts of the run.

Sustained rate: the same worker, warm, then gets records published at a fixed rate for ``step_s``
seconds per step (each step's records generated before it and published from memory, paced by
wall clock, so the simulator's own cost neither limits the rate nor takes CPU from the worker),
the rate stepped up from half the drain rate; the lag of the engine's and the sink's groups is
sampled every second. The engine commits a transaction every 100 ms and the sink after each insert
(batches of up to ``SINK_BATCH_SECONDS``), so the lag while publishing is a second's worth of
records at most when the worker keeps up. The test is what is left when publishing stops: a step
holds when both groups have committed everything within ``settle_s`` seconds (a real backlog of
(rate − capacity) × step_s records takes longer: with 20 s steps and 5 s, a step above ~1.25× what
the worker keeps up with fails). CPU per event of a step: from its first record published to its
lag reaching 0 (or the settle time running out), over the step's records. The sustained rate is the
highest step that holds; the steps stop at the first that does not.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    WorkerCpu,
    app_id_of,
    free_port,
    pipeline_lag,
    prepare_records,
    publish_prepared,
    rss_mib,
    start_worker,
    viewer_headers,
    wait_ready,
)
from infra.clickhouse.client import connect
from infra.settings import Settings
from streams.simulator import SimConfig
from streams.worker_process import WorkerProcess


def slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope (records/s) of (seconds, lag) samples."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_l = sum(lag for _, lag in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (lag - mean_l) for t, lag in samples) / var if var else 0.0


def lag_of(settings: Settings, app_id: str) -> int:
    """Records the engine's group and the sink's have not committed yet."""
    return pipeline_lag(settings, app_id)[0]


def step(settings: Settings, worker: WorkerProcess, rate: float, step_s: float, seed: int,
         settle_s: float) -> dict[str, Any]:
    """Publish at ``rate`` for ``step_s`` seconds while sampling the lag; whether the worker kept up."""
    app_id = app_id_of(worker)
    records = prepare_records(SimConfig(seed=seed, duration_s=step_s, rate=rate, start_ms=int(time.time() * 1000)))
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append((time.monotonic() - started, lag_of(settings, app_id)))

    sampler = threading.Thread(target=sample, daemon=True)
    cpu = WorkerCpu([worker])
    sampler.start()
    published = publish_prepared(settings, records, paced_rate=rate)
    done.set()
    sampler.join()
    stopped = time.monotonic()
    lag = catch_up(settings, app_id, below=0, timeout_s=settle_s)
    settled = time.monotonic() - stopped
    used = cpu.summary(len(records))
    return {
        "target_rate": round(rate), "published": published["published"],
        "published_rate": published["published_rate"],
        "publisher_kept_up": (published["published_rate"] or 0) >= 0.97 * rate,
        "max_lag_while_publishing": max((lag for _, lag in samples), default=0),
        "lag_growth_per_s": round(slope(samples[len(samples) // 3:])),
        "lag_at_stop_plus_settle": lag, "settle_s": round(settled, 1),
        **used,
        "held": lag == 0,
    }


def catch_up(settings: Settings, app_id: str, below: int, timeout_s: float) -> int:
    """Wait (at most ``timeout_s``) until the lag is at most ``below``; the last lag seen."""
    deadline = time.monotonic() + timeout_s
    lag = lag_of(settings, app_id)
    while lag > below and time.monotonic() < deadline:
        time.sleep(0.5)
        lag = lag_of(settings, app_id)
    return lag


def sustained(settings: Settings, worker: WorkerProcess, drain_rate: float, step_s: float = 20.0,
              settle_s: float = 5.0, factors: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.6, 2.0, 2.5)
              ) -> dict[str, Any]:
    """The highest published rate the worker keeps up with (see the module doc)."""
    steps: list[dict[str, Any]] = []
    best = best_cpu = None
    for i, factor in enumerate(factors):
        result = step(settings, worker, max(50.0, drain_rate * factor), step_s, seed=100 + i, settle_s=settle_s)
        steps.append(result)
        if not result["held"]:
            break
        best, best_cpu = result["published_rate"], result["cpu_us_per_event"]
    # Every step held: the sustained rate is a floor (the drain rate the steps start from was low).
    every_step_held = len(steps) == len(factors) and steps[-1]["held"]
    return {"sustained_events_per_s": best, "sustained_cpu_us_per_event": best_cpu,
            "sustained_is_a_floor": every_step_held, "step_s": step_s, "settle_s": settle_s, "steps": steps}


def run(settings: Settings, events: int = 50_000, rate: float = 1000.0, log_dir: Path | None = None,
        sustain: bool = True) -> dict[str, Any]:
    start_ms = (int(time.time()) - 86_400) // 60 * 60_000 + uuid.uuid4().int % 59_000
    config = SimConfig(seed=5, duration_s=events / rate, rate=rate, start_ms=start_ms)
    records = prepare_records(config)
    published = len(records)
    end_ms = start_ms + int(config.duration_s * 1000) + 1000
    window = {"start": start_ms - 1000, "end": end_ms}
    client = connect(settings)
    count_sql = "SELECT count() FROM aiwarden.events WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64}"
    port = free_port()
    signed_in = viewer_headers(settings)
    worker = start_worker(settings, "bench", log_dir, AIWARDEN_WORKER__WEB_PORT=str(port))
    app_id = app_id_of(worker)
    first = last = None
    landed_first = 0
    landed, peak_rss, samples, lag = 0, 0.0, [], -1
    drain_cpu: dict[str, Any] = {}
    publish_result: dict[str, Any] = {}
    try:
        wait_ready([worker])
        cpu = WorkerCpu([worker])
        publisher = threading.Thread(target=lambda: publish_result.update(publish_prepared(settings, records)),
                                     daemon=True)
        started = time.monotonic()
        publisher.start()
        # Done when every event is in ClickHouse AND the engine's group (normalize, detect, correlate)
        # and the sink's have committed everything: detection, not only storage, has caught up.
        all_landed, cpu_landed = None, {}
        while time.monotonic() - started < 1800 and worker.running:
            landed = int(client.query(count_sql, parameters=window).result_rows[0][0])
            now = time.monotonic()
            if landed and first is None:
                first, landed_first = now, landed
            if worker.proc is not None:
                peak_rss = max(peak_rss, rss_mib(worker.proc.pid))
            if landed >= published and all_landed is None:
                all_landed, cpu_landed = now, cpu.summary(published)
            lag = lag_of(settings, app_id) if all_landed is not None else -1
            samples.append((round(now - started, 2), landed, lag))
            if lag == 0:
                # Lag 0 on the first probe after the last event landed: done when it landed.
                first_probe = samples[-2][2] == -1 if len(samples) > 1 else True
                last = all_landed if first_probe else now
                drain_cpu = cpu_landed if first_probe else cpu.summary(published)
                break
            time.sleep(0.2)
        publisher.join()
        records.clear()  # the sustained steps hold their own
        time.sleep(3)  # the sink's last batch of findings and alerts
        findings = client.query(
            "SELECT count() FROM aiwarden.findings FINAL WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64}",
            parameters=window,
        ).result_rows[0][0]
        alerts = client.query(
            "SELECT count() FROM aiwarden.alerts FINAL WHERE first_seen >= {start:Int64} AND first_seen < {end:Int64}",
            parameters=window,
        ).result_rows[0][0]
        drained = drain_rate = None
        if last is not None and first is not None:
            if published > landed_first and last > first:
                drained, drain_rate = last - first, (published - landed_first) / (last - first)
            else:  # the whole backlog landed in one insert
                drained = last - started
                drain_rate = published / drained
        steady: dict[str, Any] = {}
        if sustain and drain_rate:
            load = Path("/proc/loadavg").read_text().split()[0]
            steady = {**sustained(settings, worker, drain_rate), "load_before_sustained": load}
        state = httpx.get(f"http://127.0.0.1:{port}/aiwarden/state", headers=signed_in, timeout=10).json()
        engine = state.get("pipeline", {})
    finally:
        worker.stop()
        client.close()
    return {
        "events": published,
        "publish_rate": publish_result.get("published_rate"),
        "landed": landed,
        "publish_start_to_first_row_s": round(first - started, 2) if first else None,
        "landed_at_first_row": landed_first,
        "drain_s": round(drained, 2) if drained else None,
        "events_per_s": round(drain_rate) if drain_rate else None,
        **drain_cpu,
        "worker_peak_rss_mib": round(peak_rss),
        "findings": findings,
        "alerts": alerts,
        "engine": {k: engine.get(k) for k in ("records", "transactions", "aborted", "restarts", "restored")},
        "samples": samples[:: max(1, len(samples) // 20)],
        **steady,
    }
