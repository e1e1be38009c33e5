"""Detection quality per attack class from the simulator's labels: precision, recall, time to detect
and false alerts per 100k benign events, through a real worker.

A seeded simulation of N records (every attack class, ``instances`` attacks of each, event times a
few days back so no other benchmark's alerts fall in its window) is published unpaced, then one
worker (its groups positioned just before it) drains it; once the pipeline's lag is zero and the
alerts in ClickHouse stop changing, ``streams.evaluate`` scores them against the labels, as
``aiwarden evaluate`` and the demo do. Time to detect is event time (alert first_seen − attack
start): the backlog is replayed faster than real time, so wall-clock delays mean nothing here.

Over seeds (``run_seeds``, ``python -m bench.run --only quality --quality-seeds 5``): one run per seed,
each seed another organisation (``SimConfig.other_estate``: names, accounts and roles renamed, the worker
configured with that organisation's estate file); every class reports its *worst* seed's recall and
alerts per attack, and the false alerts per 100k benign events of the worst seed, never the mean.
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
from streams.evaluate import Quality, evaluate
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import AttackLabel, SimConfig, Simulator, read_labels
from streams.simulator import estate as simulator_estate


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
        log_dir: Path | None = None, seed: int = 7, other_estate: bool = False, days_back: float = 2.0
        ) -> dict[str, Any]:
    raw_from = end_offsets(settings, topics.RAW_TOPICS)
    start_ms = (int(time.time() - days_back * 86_400)) // 60 * 60_000 + uuid.uuid4().int % 59_000
    config = SimConfig(seed=seed, duration_s=events / rate, rate=rate, start_ms=start_ms, instances=instances,
                       other_estate=other_estate)
    if other_estate:  # the worker judges this organisation with its own estate file
        settings = simulator_estate.apply(settings, Simulator(config).estate())
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
    variation = Simulator(config).variation
    quality = evaluate(labels, alerts, benign)
    classes = class_rows(quality)
    return {
        "seed": seed,
        "other_estate": other_estate,
        "falco_only": variation.falco_only,
        "hidden_attacks": hidden_attacks(labels),
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


def hidden_attacks(labels: list[AttackLabel]) -> int:
    """Attacks the simulator diluted in their target's usual traffic or hid (a renamed miner)."""
    return sum(1 for label in labels if "diluted" in label.description or "renamed miner" in label.description)


def class_rows(quality: Quality) -> dict[str, dict[str, Any]]:
    """One row per attack class: attacks, detected, recall, alerts, alerts per attack, time to detect."""
    return {
        name: {
            "class": name, "attacks": q.attacks, "detected": q.detected, "recall": round(q.recall, 3),
            "alerts": q.alerts, "alerts_per_attack": round(q.alerts / q.attacks, 2) if q.attacks else None,
            "detect_s_p50": round(p / 1000, 1) if (p := percentile(q.detect_ms, 50)) is not None else None,
            "detect_s_max": round(max(q.detect_ms) / 1000, 1) if q.detect_ms else None,
        }
        for name, q in sorted(quality.classes.items())
    }


def run_seeds(settings: Settings, seeds: int = 5, events: int = 300_000, rate: float = 1000.0, instances: int = 3,
              log_dir: Path | None = None, first_seed: int = 7) -> dict[str, Any]:
    """``run`` once per seed, each seed another organisation; ``summarize_seeds`` of the runs."""
    # each seed six hours of event time apart (within the broker's 7-day retention for 20 seeds): one seed's
    # alerts never fall in another's window
    runs = [run(settings, events, rate, instances, log_dir, seed=first_seed + i, other_estate=True,
                days_back=2.0 + i / 4) for i in range(seeds)]
    return summarize_seeds(runs)


def summarize_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of several seeds as one result shaped like ``run``'s, every number its worst seed's: per class
    the lowest recall and the most alerts per attack (with the seed), overall the most false alerts per
    100k benign events; ``per_seed`` keeps one row per run, ``worst_seed`` the run with the lowest recall
    of any class (ties: more false alerts per 100k)."""
    if not runs:
        msg = "no runs to summarize"
        raise ValueError(msg)
    classes: dict[str, dict[str, Any]] = {}
    for result in runs:
        for name, c in result["classes"].items():
            into = classes.setdefault(name, {"class": name, "attacks": 0, "detected": 0, "alerts": 0,
                                             "recall": 1.0, "recall_worst_seed": None, "alerts_per_attack": 0.0,
                                             "alerts_per_attack_worst_seed": None, "detect_s_p50": None,
                                             "detect_s_max": None})
            into["attacks"] += c["attacks"]
            into["detected"] += c["detected"]
            into["alerts"] += c["alerts"]
            if into["recall_worst_seed"] is None or c["recall"] < into["recall"]:
                into["recall"], into["recall_worst_seed"] = c["recall"], result["seed"]
            per_attack = c["alerts"] / c["attacks"] if c["attacks"] else 0.0
            if into["alerts_per_attack_worst_seed"] is None or per_attack > into["alerts_per_attack"]:
                into["alerts_per_attack"], into["alerts_per_attack_worst_seed"] = round(per_attack, 2), result["seed"]
            for key in ("detect_s_p50", "detect_s_max"):
                if c.get(key) is not None:
                    into[key] = max(into[key] or 0.0, c[key])
    per_seed = [
        {"seed": r["seed"], "events": r["events"], "attacks": r["attacks"],
         "falco_only": r.get("falco_only", False), "hidden_attacks": r.get("hidden_attacks", 0),
         "recall_min": min((c["recall"] for c in r["classes"].values()), default=0.0),
         "recall_min_class": min(r["classes"].values(), key=lambda c: c["recall"])["class"] if r["classes"] else None,
         "false_alerts": r["false_alerts"], "false_per_100k": r["false_per_100k"],
         "alerts_per_attack_max": max((c["alerts"] / c["attacks"] for c in r["classes"].values() if c["attacks"]),
                                      default=0.0)}
        for r in runs
    ]
    for row in per_seed:
        row["alerts_per_attack_max"] = round(row["alerts_per_attack_max"], 2)
    worst = min(per_seed, key=lambda row: (row["recall_min"], -row["false_per_100k"]))
    noisiest = max(runs, key=lambda r: r["false_per_100k"])
    return {
        "seeds": [r["seed"] for r in runs],
        "events": sum(r["events"] for r in runs),
        "attacks": sum(r["attacks"] for r in runs),
        "benign_events": sum(r["benign_events"] for r in runs),
        "alerts": sum(r["alerts"] for r in runs),
        "false_alerts": noisiest["false_alerts"],
        "false_per_100k": noisiest["false_per_100k"],
        "false_worst_seed": noisiest["seed"],
        "precision": min(r["precision"] for r in runs),
        "false_alert_examples": [e for r in runs for e in r["false_alert_examples"]][:5],
        "classes": dict(sorted(classes.items())),
        "per_seed": per_seed,
        "worst_seed": worst["seed"],
    }
