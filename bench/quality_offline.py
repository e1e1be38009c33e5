"""Detection quality in one process, no services: the simulator's records through the worker's own stage
classes (``Normalization``, ``Detection`` with its re-key loop, ``Correlation``) over in-memory stores, then
``streams.evaluate`` as ``bench.quality`` does. Minutes instead of a Kafka + ClickHouse run per seed: the
loop to iterate detectors and correlation on; ``bench.quality`` remains the measurement.

    .venv/bin/python -m bench.quality_offline --seeds 5 --events 100000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.quality import class_rows, hidden_attacks, summarize_seeds
from infra.settings import Settings
from streams import topics
from streams.evaluate import evaluate
from streams.pipeline.correlate import Correlation
from streams.pipeline.detect import Detection
from streams.pipeline.memory import Message, commit, memory_store
from streams.pipeline.normalize import Normalization
from streams.pipeline.records import check_fits
from streams.simulator import DEFAULT_START_MS, SimConfig, Simulator
from streams.simulator import estate as simulator_estate

PARTITION = 0
BATCH = 500


class _Out:
    """Collects what a stage sends, per topic."""

    def __init__(self) -> None:
        self.sent: dict[str, list[Message]] = {}

    def max_bytes(self, topic: str) -> int:
        return 1_048_588

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        check_fits(topic, key, value, headers, self.max_bytes(topic))
        self.sent.setdefault(topic, []).append(Message(value, key, PARTITION, topic=topic, headers=headers))

    def take(self, topic: str) -> list[Message]:
        return self.sent.pop(topic, [])


def alerts_of(settings: Settings, sim: Simulator) -> tuple[list[dict[str, Any]], int]:
    """Every alert (latest version) the stages raise on ``sim``'s records, and the records published."""
    out = _Out()
    normalization = Normalization(settings, out)
    stores = {name: memory_store(name, partitions=1) for name in ("states", "rekeyed", "assets", "models")}
    detection = Detection(settings, out, **stores)
    correlation_state = memory_store("correlation", partitions=1)
    correlation = Correlation(settings, out, states=correlation_state)
    alerts: dict[str, dict[str, Any]] = {}
    published = 0
    batch: list[Message] = []

    def flush(raw: Sequence[Message]) -> None:
        normalization.raw_batch(raw)
        detection.events_batch(out.take(topics.EVENTS))
        # a stage's output to its own input (a join's hop namespace → image, the correlate stage's re-keyed
        # copies) is consumed again until nothing more comes
        for topic, stage in ((detection.rekey, detection.rekeyed_batch), (topics.FINDINGS, correlation.findings_batch)):
            while pending := out.take(topic):
                stage(pending)
        commit(*stores.values(), correlation_state)
        for message in out.take(topics.ALERTS):
            alert = orjson.loads(message.value() or b"{}")
            alerts[alert["alert_id"]] = alert
        out.sent.clear()

    for record in sim.records():
        published += 1
        batch.append(Message(orjson.dumps(record.record), None, PARTITION, topic=topics.RAW_RUNTIME,
                             headers=[(topics.SOURCE_HEADER, record.source.encode())]))
        if len(batch) >= BATCH:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    return list(alerts.values()), published


def run(events: int, seed: int, other_estate: bool, rate: float = 1000.0, instances: int = 3) -> dict[str, Any]:
    # not on a minute boundary, as bench.quality's runs are not: windows cut attacks at other places
    start_ms = DEFAULT_START_MS + seed * 7_919 % 59_000
    config = SimConfig(seed=seed, duration_s=events / rate, rate=rate, instances=instances, other_estate=other_estate,
                       start_ms=start_ms)
    sim = Simulator(config)
    with tempfile.TemporaryDirectory() as state_dir:
        settings = simulator_estate.apply(Settings(state_dir=Path(state_dir)), sim.estate())
        alerts, published = alerts_of(settings, sim)
    labels = sim.labels()
    benign = max(0, published - sum(label.events for label in labels))
    quality = evaluate(labels, alerts, benign)
    return {
        "seed": seed, "other_estate": other_estate, "falco_only": sim.variation.falco_only,
        "hidden_attacks": hidden_attacks(labels), "events": published, "attacks": len(labels),
        "benign_events": benign, "alerts": quality.total_alerts, "false_alerts": quality.false_alerts,
        "false_per_100k": round(quality.false_per_100k, 2), "precision": round(quality.precision, 3),
        "false_alert_examples": quality.false_alert_examples[:5], "classes": class_rows(quality),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--same-estate", action="store_true", help="the simulator's own world (not varied)")
    args = parser.parse_args()
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        result = run(args.events, seed, not args.same_estate)
        runs.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "classes"}), flush=True)
        for name, c in result["classes"].items():
            if c["recall"] < 1 or (c["alerts_per_attack"] or 0) > 1.2:
                print(f"   {name}: recall {c['recall']} alerts/attack {c['alerts_per_attack']}", flush=True)
    summary = summarize_seeds(runs)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("classes",)}, indent=1))
    for name, c in summary["classes"].items():
        print(f"{name:22} recall {c['recall']} (seed {c['recall_worst_seed']})  alerts/attack "
              f"{c['alerts_per_attack']} (seed {c['alerts_per_attack_worst_seed']})")


if __name__ == "__main__":
    main()
