"""Helpers the benchmarks share: percentiles, load average, process memory and CPU, consumer-group
positions and lag, simulated records published from memory, workers started on a known position,
and the reference receiver's arrival clock."""

from __future__ import annotations

import io
import math
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from infra.kafka.clients import confluent_config
from infra.kafka.lag import group_lag
from infra.settings import Settings
from streams import topics
from streams.pipeline.build import pipeline_groups
from streams.pipeline.sink import TOPIC_TABLES
from streams.publish import Publisher
from streams.simulator import SimConfig
from streams.worker_process import WorkerProcess

# Standard Webhooks secret of the benchmarks' reference receiver (not a real secret).
SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWZvci1jb250YWlubWVudA=="
# What the worker's pipeline group reads (besides its re-key topic, named after the app id).
WORKER_TOPICS = (*topics.RAW_TOPICS, topics.EVENTS, topics.FINDINGS)
SINK_TOPICS = tuple(TOPIC_TABLES)  # what the worker's ClickHouse sink reads


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


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads, and its children it has waited for),
    from /proc; None when it is gone."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it (parents read from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


class WorkerCpu:
    """CPU seconds (utime + stime from /proc) of worker processes and their children since it was made:
    ``summary(n)`` gives each process's and the µs of CPU per event of all of them over ``n`` events."""

    def __init__(self, workers: Sequence[WorkerProcess]) -> None:
        self.pids = [w.proc.pid for w in workers if w.proc is not None]
        self.started = self.now()

    def now(self) -> list[float]:
        return [sum(cpu_seconds(p) or 0.0 for p in process_tree(pid)) for pid in self.pids]

    def since(self) -> list[float]:
        return [round(after - before, 2) for before, after in zip(self.started, self.now(), strict=True)]

    def summary(self, events: int) -> dict[str, Any]:
        """``worker_cpu_s`` per process, and ``cpu_us_per_event`` of all of them over ``events``."""
        used = self.since()
        total: float = sum(used)
        return {"worker_cpu_s": used, "cpu_us_per_event": round(total / events * 1e6, 1) if events and total else None}


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


def position_groups(settings: Settings, app_id: str, raw_from: Mapping[tuple[str, int], int] | None = None) -> None:
    """Commit positions for a new app id's groups (the worker's and its sink's): every topic at its
    current end, except the raw topics, which start at ``raw_from`` when given (a backlog published
    after those offsets is then exactly what the worker reads, and nothing older)."""
    offsets = dict(end_offsets(settings))
    if raw_from:
        offsets.update({key: value for key, value in raw_from.items() if key[0] in topics.RAW_TOPICS})
    for group in (*pipeline_groups(app_id), app_id, f"{app_id}-sink"):
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


# A topic the worker has just created (its re-key topic) has no leader for a moment.
LEADERLESS = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.UNKNOWN_TOPIC_OR_PART})


def _group_lag(settings: Settings, group: str, names: tuple[str, ...], timeout_s: float = 30.0) -> int:
    """``group_lag`` summed, retried while a partition has no leader yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return sum(group_lag(settings, group, names).values())
        except KafkaException as exc:
            if time.monotonic() > deadline or exc.args[0].code() not in LEADERLESS:
                raise
            time.sleep(0.5)


def pipeline_lag(settings: Settings, app_id: str) -> tuple[int, int]:
    """Records the worker (normalize, detect and its re-key topic, correlate) and its sink have not
    committed yet, and the worker group's committed position summed over the raw topics (it moves once
    work is done)."""
    groups = pipeline_groups(app_id)
    normalize = next(group for group, names in groups.items() if topics.RAW_TOPICS[0] in names)
    raw = committed_offsets(settings, normalize, topics.RAW_TOPICS)
    lag = sum(_group_lag(settings, group, names) for group, names in groups.items()) + _group_lag(
        settings, f"{app_id}-sink", SINK_TOPICS)
    return lag, sum(max(0, o) for o in raw.values())


def wait_drained(settings: Settings, app_id: str, total: int, timeout_s: float = 1800,
                 workers: Sequence[WorkerProcess] = (), publish: Callable[[], Any] | None = None,
                 interval_s: float = 0.25) -> dict[str, Any]:
    """Sample the pipeline's lag every ``interval_s`` until it is 0 after progress was seen. The rate is
    ``total`` over the time from the first progress (the group's raw position moving) to lag 0, so
    group joins and table recovery are not counted (up to one sampling interval early).

    With ``publish``, the workers are running and idle: it is called in a thread once the first
    sample is taken (the backlog arrives while they run), and the workers' CPU (``WorkerCpu``) from
    then to lag 0, per event of ``total``, is reported too."""
    started = time.monotonic()
    first_position: int | None = None
    progress = done = None
    samples: list[tuple[float, int]] = []
    peak_rss = 0.0
    cpu = WorkerCpu(workers) if publish is not None else None
    publisher: threading.Thread | None = None
    cpu_result: dict[str, Any] = {}
    while time.monotonic() - started < timeout_s:
        lag, position = pipeline_lag(settings, app_id)
        now = time.monotonic()
        for worker in workers:
            if worker.proc is not None and worker.running:
                peak_rss = max(peak_rss, rss_mib(worker.proc.pid))
        samples.append((round(now - started, 2), lag))
        if first_position is None:
            first_position = position
            if publish is not None:
                publisher = threading.Thread(target=publish, daemon=True)
                publisher.start()
        if progress is None and position > first_position:
            progress = samples[-2][0] if len(samples) > 1 else 0.0
        if lag == 0 and progress is not None and (publisher is None or not publisher.is_alive()):
            done = now - started
            if cpu is not None:
                cpu_result = cpu.summary(total)
            break
        if not any(w.running for w in workers) and workers:
            break
        time.sleep(interval_s)
    if publisher is not None:
        publisher.join()
    drain = (done - (progress or 0.0)) if done is not None else None
    return {
        "events": total,
        "startup_s": progress,
        "drain_s": round(drain, 2) if drain else None,
        "events_per_s": rate(total, drain),
        "worker_peak_rss_mib": round(peak_rss) if peak_rss else None,
        **cpu_result,
        "lag_samples": samples[:: max(1, len(samples) // 20)],
    }


def wait_ready(workers: Sequence[WorkerProcess], timeout_s: float = 120, quiet_s: float = 3.0) -> None:
    """Until every worker logged Faust's "Ready" and a pipeline assignment, then ``quiet_s`` more (the
    engine's group settles; a cooperative rebalance between workers logs more assignments)."""
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        for text in ("Ready", "pipeline assigned"):
            if not worker.wait_for_log(text, max(1.0, deadline - time.monotonic())):
                msg = f"worker not ready ({text!r} not logged): {worker.log_tail()}"
                raise RuntimeError(msg)
    time.sleep(quiet_s)


# --- simulated records, published from memory ----------------------------------------------------
Prepared = list[tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]]]]  # topic, key, value, headers


def prepare_records(config: SimConfig) -> Prepared:
    """The simulator's records for ``config``, encoded and routed as ``Publisher.publish_record`` sends
    them, held in memory (~1 KB each), so publishing them costs only the produce calls."""
    from schemas.codec import encode
    from schemas.sources import SOURCES
    from streams.simulator import Simulator

    headers: dict[str, list[tuple[str, str | bytes | None]]] = {
        name: [(topics.SOURCE_HEADER, name.encode())] for name in SOURCES}
    # orjson's output keeps a ~4 KB allocation whatever its length: copied to its own size.
    return [(SOURCES[r.source].topic, SOURCES[r.source].primary_key(r.record).encode(),
             bytes(memoryview(encode(r.record))), headers[r.source]) for r in Simulator(config).records()]


def publish_prepared(settings: Settings, records: Prepared, paced_rate: float | None = None) -> dict[str, Any]:
    """Produce ``records`` (as the simulator's publisher does: idempotent, lz4, 20 ms linger), at
    ``paced_rate`` per second of wall clock or as fast as possible; flushed. The achieved rate is
    counted to the last record handed to the producer."""
    producer: Producer = Publisher(settings).producer
    failed = [0]

    def delivered(err: Any, _message: Any) -> None:
        if err is not None:
            failed[0] += 1

    started = time.perf_counter()
    for count, (topic, key, value, headers) in enumerate(records, 1):
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if count % 50 == 0:
            producer.poll(0)
            if paced_rate:
                ahead = count / paced_rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    handed = time.perf_counter() - started
    unsent = producer.flush(120)
    if unsent or failed[0]:
        msg = f"{unsent} records not delivered, {failed[0]} failed"
        raise RuntimeError(msg)
    return {"published": len(records), "published_rate": rate(len(records), handed),
            "publish_s": round(time.perf_counter() - started, 2)}


def start_worker(settings: Settings, prefix: str, log_dir: Path | None = None, *,
                 raw_from: Mapping[tuple[str, int], int] | None = None, app_id: str | None = None,
                 **env: str) -> WorkerProcess:
    """A worker process of a new (or given, already positioned) app id; with ``raw_from`` its groups
    start at those raw offsets, else at the end of everything (it then sees only what comes next)."""
    if app_id is None:
        app_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
        position_groups(settings, app_id, raw_from)
    log = (log_dir or settings.state_dir) / f"{app_id}-{uuid.uuid4().hex[:4]}.log"
    return WorkerProcess(settings, log, AIWARDEN_WORKER__APP_ID=app_id, **env).start()


def viewer_headers(settings: Settings) -> dict[str, str]:
    """Headers signing a request in as a new viewer (its API token): every worker endpoint but /health
    needs a sign-in. Written to the accounts topic; a worker started afterwards reads it on start."""
    from streams.soc.accounts import new_token, new_user, record
    from streams.soc.compacted import produce

    name = f"bench-{uuid.uuid4().hex[:6]}"
    token, stored = new_token(name, "bench")
    produce(settings, topics.ACCOUNTS, [record(new_user(name, "viewer", secrets.token_urlsafe(16))), record(stored)])
    return {"Authorization": f"Bearer {token}"}


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
