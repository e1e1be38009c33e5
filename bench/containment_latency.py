"""Time from publishing a model-server compromise to the quarantine webhook arriving at the receiver.

A worker runs with containment on (dry run off) against an in-process reference receiver; it is
warmed with benign traffic first. Then, one at a time, ``runs`` compromises (the simulator's
model_server_shell attack records, timestamped now) are published; the clock starts when the first
record of the attack is handed to the producer and stops when the signed quarantine for that pod
reaches the receiver. An upper bound on detection-to-containment latency (the shell is not the first
record of the attack)."""

from __future__ import annotations

import io
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from schemas.sources import SOURCES
from streams.containment.receiver import Receiver
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator
from streams.worker_process import WorkerProcess

SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWZvci1jb250YWlubWVudA=="


class Arrivals(io.StringIO):
    """The receiver's output stream, noting when each quarantine header line arrives."""

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


def run(settings: Any, runs: int = 10, log_dir: Path | None = None) -> dict[str, Any]:
    arrivals = Arrivals()
    latencies: list[float] = []
    policy = (log_dir or settings.state_dir) / "bench-policy.yaml"
    policy.write_text(  # no blast-radius hold here: every run must be delivered
        "limits: {window_s: 60, max_actions: {default: 1000}}\n"
        "rules:\n  - name: quarantine\n    when: {detectors: [model_server_shell]}\n"
        "    actions: [quarantine_workload]\n"
    )
    with Receiver(SECRET, 0, out=arrivals) as receiver:
        port = receiver.start_in_thread()
        app_id = f"bench-contain-{uuid.uuid4().hex[:6]}"
        worker = WorkerProcess(
            settings, (log_dir or settings.state_dir) / f"{app_id}.log", AIWARDEN_WORKER__APP_ID=app_id,
            AIWARDEN_CONTAINMENT__WEBHOOK_URL=f"http://127.0.0.1:{port}/", AIWARDEN_CONTAINMENT__SECRET=SECRET,
            AIWARDEN_CONTAINMENT__DRY_RUN="false", AIWARDEN_CONTAINMENT__POLICY_PATH=str(policy),
        ).start()
        publisher = Publisher(settings, **{"linger.ms": 1})
        try:
            time.sleep(20)  # group join and table recovery
            for i in range(runs):
                now_ms = int(time.time() * 1000)
                sim = Simulator(SimConfig(seed=1000 + i, duration_s=20, rate=100, scenarios=("model_server_shell",),
                                          start_ms=now_ms))
                attack = [r for r in sim.records() if r.attack]
                pod = next(e for e in sim.labels()[0].entities if e.startswith("pod:"))
                started = time.perf_counter()
                for record in attack:
                    publisher.publish_record(record.source, record.record,
                                             SOURCES[record.source].primary_key(record.record))
                publisher.flush()
                deadline = time.monotonic() + 60
                while pod not in arrivals.times and time.monotonic() < deadline:
                    time.sleep(0.01)
                if pod in arrivals.times:
                    latencies.append(arrivals.times[pod] - started)
                time.sleep(1)
        finally:
            worker.stop()
    ordered = sorted(latencies)
    return {
        "runs": runs,
        "delivered": len(latencies),
        "p50_s": round(statistics.median(ordered), 3) if ordered else None,
        "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3) if ordered else None,
        "max_s": round(ordered[-1], 3) if ordered else None,
    }
