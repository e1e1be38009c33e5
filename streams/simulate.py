"""Publish the simulator's world to Kafka at a steady wall-clock rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from schemas.sources import SOURCES
from streams.publish import Publisher, PublishSummary
from streams.simulator import SimConfig, Simulator, write_labels


class RecordSink(Protocol):
    """Where simulated records go: a ``Publisher`` (Kafka), or ``aiwarden ingest`` over HTTP."""

    def publish_record(self, source: str, record: dict[str, Any], key: str) -> None: ...

    def flush(self, timeout_s: float = ...) -> PublishSummary: ...


def publish_simulation(
    publisher: Publisher | RecordSink,
    config: SimConfig,
    labels_path: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    paced: bool = True,
) -> tuple[PublishSummary, float]:
    """Publish every simulated record, paced at ``config.rate`` per second when ``paced``.

    Returns the summary and the achieved wall-clock rate (records/s)."""
    simulator = Simulator(config)
    started = time.perf_counter()
    count = 0
    for record in simulator.records():
        spec = SOURCES[record.source]
        publisher.publish_record(record.source, record.record, spec.primary_key(record.record))
        count += 1
        if count % 50 == 0:
            if on_progress is not None:
                on_progress(count)
            if paced:
                ahead = count / config.rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    summary = publisher.flush()
    elapsed = time.perf_counter() - started
    if on_progress is not None:
        on_progress(count)
    if labels_path is not None:
        write_labels(simulator.labels(), labels_path)
    return summary, count / elapsed if elapsed else 0.0
