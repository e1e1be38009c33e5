"""Helpers the benchmarks share: percentiles, load average, process memory, consumer-group positions
and lag, workers started on a known position, and the reference receiver's arrival clock."""

from __future__ import annotations

import io
import math
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from infra.kafka.clients import confluent_config
from infra.settings import Settings
from streams import topics
from streams.pipeline.engine import pipeline_group
from streams.worker_process import WorkerProcess

# Standard Webhooks secret of the benchmarks' reference receiver (not a real secret).
SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWZvci1jb250YWlubWVudA=="
# What the worker's pipeline group reads (its internal re-key and changelog topics aside).
WORKER_TOPICS = (*topics.RAW_TOPICS, topics.EVENTS, topics.FINDINGS)
SINK_TOPICS = (topics.EVENTS, topics.FINDINGS, topics.ALERTS)


# --- numbers -------------------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` for no values.

    With fewer than 100 values p99 is the maximum: the rank is never interpolated."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        msg = f"percentile must be in 0..100, got {q}"
        raise ValueError(msg)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Iterable[float], digits: int = 3) -> dict[str, Any]:
    """n, p50, p99, max (and mean) of ``values``, rounded; Nones when there are none."""
    data = list(values)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "n": len(data),
        "p50": r(percentile(data, 50)),
        "p99": r(percentile(data, 99)),
        "max": r(max(data) if data else None),
        "mean": r(sum(data) / len(data) if data else None),
    }


def rate(count: int, seconds: float | None) -> int | None:
    """``count`` per second, rounded; ``None`` when the time is unknown or zero."""
    return round(count / seconds) if seconds else None


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (recorded beside every result: the machines are shared)."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), MiB, from /proc."""
    path = Path(f"/proc/{pid}/status") if pid else Path("/proc/self/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Kafka positions -----------------------------------------------------------------------------
def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(confluent_config(settings, **{"group.id": group, "enable.auto.commit": False}))


def end_offsets(settings: Settings, names: Iterable[str] = topics.ALL_TOPICS) -> dict[tuple[str, int], int]:
    """The current end offset of every partition of ``names``."""
    consumer = _consumer(settings, f"bench-probe-{uuid.uuid4().hex[:6]}")
    try:
        out = {}
        for name in names:
            for partition in consumer.list_topics(name, timeout=10).topics[name].partitions:
                out[(name, partition)] = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)[1]
        return out
    finally:
        consumer.close()


def lag_of(committed: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int]) -> int:
    """Records not committed yet: the sum over partitions of end − committed (no commit counts as 0)."""
    return sum(max(0, end - max(committed.get(key, 0), 0)) for key, end in ends.items())


def position_groups(settings: Settings, app_id: str, raw_from: Mapping[tuple[str, int], int] | None = None) -> None:
    """Commit positions for a new app id's groups (the worker's and its sink's): every topic at its
    current end, except the raw topics, which start at ``raw_from`` when given (a backlog published
    after those offsets is then exactly what the worker reads, and nothing older)."""
    offsets = dict(end_offsets(settings))
    if raw_from:
        offsets.update({key: value for key, value in raw_from.items() if key[0] in topics.RAW_TOPICS})
    for group in (pipeline_group(app_id), app_id, f"{app_id}-sink"):
        consumer = _consumer(settings, group)
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        finally:
            consumer.close()


def committed_offsets(settings: Settings, group: str, names: Iterable[str]) -> dict[tuple[str, int], int]:
    consumer = _consumer(settings, group)
    try:
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in consumer.list_topics(name, timeout=10).topics[name].partitions
        ]
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def pipeline_lag(settings: Settings, app_id: str) -> tuple[int, int]:
    """Records the worker (normalize, detect, correlate) and its sink have not committed yet, and the
    worker group's committed position summed over the raw topics (it moves once work is done)."""
    ends = end_offsets(settings, {*WORKER_TOPICS, *SINK_TOPICS})
    worker = committed_offsets(settings, pipeline_group(app_id), WORKER_TOPICS)
    sink = committed_offsets(settings, f"{app_id}-sink", SINK_TOPICS)
    lag = lag_of(worker, {k: v for k, v in ends.items() if k[0] in WORKER_TOPICS}) + lag_of(
        sink, {k: v for k, v in ends.items() if k[0] in SINK_TOPICS}
    )
    return lag, sum(max(0, o) for (t, _), o in worker.items() if t in topics.RAW_TOPICS)


def wait_drained(settings: Settings, app_id: str, total: int, timeout_s: float = 1800,
                 workers: list[WorkerProcess] | tuple[()] = ()) -> dict[str, Any]:
    """Sample the pipeline's lag every half second until it is 0 after progress was seen. The rate is
    ``total`` over the time from the first progress (the group's raw position moving) to lag 0, so
    group joins and table recovery are not counted (up to one sampling interval early)."""
    started = time.monotonic()
    first_position: int | None = None
    progress = done = None
    samples: list[tuple[float, int]] = []
    peak_rss = 0.0
    while time.monotonic() - started < timeout_s:
        lag, position = pipeline_lag(settings, app_id)
        now = time.monotonic()
        for worker in workers:
            if worker.proc is not None and worker.running:
                peak_rss = max(peak_rss, rss_mib(worker.proc.pid))
        samples.append((round(now - started, 1), lag))
        if first_position is None:
            first_position = position
        if progress is None and position > first_position:
            progress = samples[-2][0] if len(samples) > 1 else 0.0
        if lag == 0 and progress is not None:
            done = now - started
            break
        if not any(w.running for w in workers) and workers:
            break
        time.sleep(0.5)
    drain = (done - (progress or 0.0)) if done is not None else None
    return {
        "events": total,
        "startup_s": progress,
        "drain_s": round(drain, 1) if drain else None,
        "events_per_s": rate(total, drain),
        "worker_peak_rss_mib": round(peak_rss) if peak_rss else None,
        "lag_samples": samples[:: max(1, len(samples) // 20)],
    }


def start_worker(settings: Settings, prefix: str, log_dir: Path | None = None,
                 raw_from: Mapping[tuple[str, int], int] | None = None, app_id: str | None = None,
                 **env: str) -> WorkerProcess:
    """A worker process of a new (or given, already positioned) app id; with ``raw_from`` its groups
    start at those raw offsets, else at the end of everything (it then sees only what comes next)."""
    if app_id is None:
        app_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
        position_groups(settings, app_id, raw_from)
    log = (log_dir or settings.state_dir) / f"{app_id}-{uuid.uuid4().hex[:4]}.log"
    return WorkerProcess(settings, log, AIWARDEN_WORKER__APP_ID=app_id, **env).start()


def app_id_of(worker: WorkerProcess) -> str:
    return worker.overrides["AIWARDEN_WORKER__APP_ID"]


# --- containment ---------------------------------------------------------------------------------
class Arrivals(io.StringIO):
    """The reference receiver's output stream, noting when each quarantine header line arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, float] = {}
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        now = time.perf_counter()
        for line in text.splitlines():
            if line.startswith("# ") and " quarantine_workload pod:" in line:
                pod = line.split(" quarantine_workload ", 1)[1].split(" ", 1)[0]
                with self.lock:
                    self.times.setdefault(pod, now)
        return super().write(text)


def containment_env(policy_dir: Path, receiver_port: int, detectors: tuple[str, ...] = ("model_server_shell",)
                    ) -> dict[str, str]:
    """Worker settings for containment on (dry run off) against a local receiver, with a policy that
    quarantines on ``detectors`` and no blast-radius hold (every run must be delivered)."""
    policy = policy_dir / "bench-policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(
        "limits: {window_s: 60, max_actions: {default: 1000}}\n"
        f"rules:\n  - name: quarantine\n    when: {{detectors: [{', '.join(detectors)}]}}\n"
        "    actions: [quarantine_workload]\n"
    )
    return {
        "AIWARDEN_CONTAINMENT__WEBHOOK_URL": f"http://127.0.0.1:{receiver_port}/",
        "AIWARDEN_CONTAINMENT__SECRET": SECRET,
        "AIWARDEN_CONTAINMENT__DRY_RUN": "false",
        "AIWARDEN_CONTAINMENT__POLICY_PATH": str(policy),
    }


def make_attack(seed: int, scenario: str = "model_server_shell") -> tuple[str, list[Any], int]:
    """One simulated attack of ``scenario``, timestamped now: its pod (the entity a quarantine
    names), its records (``SimRecord``) and its event-time start (ms)."""
    from streams.simulator import SimConfig, Simulator

    now_ms = int(time.time() * 1000)
    sim = Simulator(SimConfig(seed=seed, duration_s=20, rate=100, scenarios=(scenario,), start_ms=now_ms))
    label = sim.labels()[0]
    pod = next(e for e in label.entities if e.startswith("pod:"))
    return pod, [r for r in sim.records() if r.attack], label.start_ms


def publish_records(publisher: Any, records: list[Any]) -> float:
    """Publish simulator records and flush; returns the perf_counter time the first was handed over."""
    from schemas.sources import SOURCES

    started = time.perf_counter()
    for record in records:
        publisher.publish_record(record.source, record.record, SOURCES[record.source].primary_key(record.record))
    publisher.flush()
    return started


def publish_attack(publisher: Any, seed: int, scenario: str = "model_server_shell") -> tuple[str, float, int]:
    """Publish one simulated attack (``make_attack``); returns its pod, the perf_counter time its first
    record was handed to the producer, and its event-time start (ms)."""
    pod, records, start_ms = make_attack(seed, scenario)
    return pod, publish_records(publisher, records), start_ms
