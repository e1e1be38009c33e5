"""Time from publishing a model-server compromise to the quarantine webhook arriving at the receiver.

A worker runs with containment on (dry run off) against an in-process reference receiver; it is
warmed with benign traffic first. Then, one at a time, ``runs`` compromises (the simulator's
model_server_shell attack records, timestamped now) are published; the clock starts when the first
record of the attack is handed to the producer and stops when the signed quarantine for that pod
reaches the receiver. An upper bound on detection-to-containment latency (the shell is not the first
record of the attack)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import SECRET, Arrivals, containment_env, publish_attack, spread, start_worker
from streams.containment.receiver import Receiver
from streams.publish import Publisher


def run(settings: Any, runs: int = 10, log_dir: Path | None = None) -> dict[str, Any]:
    arrivals = Arrivals()
    latencies: list[float] = []
    with Receiver(SECRET, 0, out=arrivals) as receiver:
        port = receiver.start_in_thread()
        env = containment_env(log_dir or settings.state_dir, port)
        worker = start_worker(settings, "bench-contain", log_dir, **env)
        publisher = Publisher(settings, **{"linger.ms": 1})
        try:
            time.sleep(20)  # group join and table recovery
            for i in range(runs):
                pod, started, _ = publish_attack(publisher, 1000 + i)
                deadline = time.monotonic() + 60
                while pod not in arrivals.times and time.monotonic() < deadline:
                    time.sleep(0.01)
                if pod in arrivals.times:
                    latencies.append(arrivals.times[pod] - started)
                time.sleep(1)
        finally:
            worker.stop()
    stats = spread(latencies)
    return {"runs": runs, "delivered": len(latencies), "p50_s": stats["p50"], "p99_s": stats["p99"],
            "max_s": stats["max"]}
