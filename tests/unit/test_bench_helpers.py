"""The benchmarks' pure helpers: percentiles, lag arithmetic, the goals table's verdicts."""

from __future__ import annotations

import pytest

from bench.common import percentile, rate, spread
from bench.run import goals

pytestmark = pytest.mark.unit


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile(reversed(values), 50) == 50  # order does not matter


def test_p99_of_few_values_is_the_maximum() -> None:
    assert percentile([0.3, 0.1, 0.2], 99) == 0.3
    assert percentile([5.0], 50) == 5.0


def test_percentile_of_nothing_and_bad_q() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="0..100"):
        percentile([1], 101)


def test_spread_and_rate() -> None:
    stats = spread([1.0, 2.0, 3.0, 4.0])
    assert stats == {"n": 4, "p50": 2.0, "p99": 4.0, "max": 4.0, "mean": 2.5}
    assert spread([])["p99"] is None
    assert rate(1000, 2.0) == 500
    assert rate(1000, None) is None
    assert rate(1000, 0.0) is None


def test_goals_report_gaps_and_never_invent_values() -> None:
    text = goals({
        "pipeline": {"events_per_s": 5_000, "sustained_events_per_s": 4_000, "cpu_us_per_event": 150},
        "latency": {"alert_s": {"p99": 0.5}, "webhook_s": {"p99": None}},
        "scaling": {"ratio": 1.2},
    })
    assert "| one worker sustained ≥ 10,000 events/s, every detector on | 4000/s | no | 2.5× short |" in text
    assert "≤ 100 µs | 150 µs | no | 1.5× over |" in text
    assert "| p99 publish → alert at half the sustained rate ≤ 1 s | 0.5 s | yes | none |" in text
    assert "| p99 publish → signed webhook at half the sustained rate ≤ 2 s | not measured | ? | ? |" in text
    assert "| two workers vs one ≥ 1.8× | 1.2× | no | 1.5× short |" in text
    assert "| ClickHouse sink ≥ 100k rows/s | not measured | ? | ? |" in text


def test_latency_rate_is_half_the_newest_sustained_rate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bench.latency import DEFAULT_RATE, default_rate

    assert default_rate(500.0, {}, tmp_path) == (500.0, "given")
    assert default_rate(None, {}, tmp_path)[0] == DEFAULT_RATE
    (tmp_path / "20260101T000000.json").write_text('{"time": "old", "pipeline": {"sustained_events_per_s": 800}}')
    (tmp_path / "20260102T000000.json").write_text('{"time": "new", "pipeline": {"events_per_s": 900}}')
    rate_, origin = default_rate(None, {}, tmp_path)
    assert rate_ == 400 and "old" in origin  # the newest result that has a sustained rate
    assert default_rate(None, {"time": "now", "pipeline": {"sustained_events_per_s": 1000}}, tmp_path)[0] == 500


def test_memory_entity_kinds_follow_the_simulator_shares() -> None:
    from collections import Counter

    from bench.memory_scale import kind_of

    assert Counter(kind_of(n) for n in range(1000)) == {"container": 450, "principal": 320, "apikey": 230}


def _quality_run(seed: int, recall: float, alerts: int, false: int) -> dict:  # type: ignore[type-arg]
    classes = {
        "cost_harvesting": {"class": "cost_harvesting", "attacks": 3, "detected": round(3 * recall), "recall": recall,
                            "alerts": alerts, "detect_s_p50": 2.0, "detect_s_max": 5.0},
        "cryptominer": {"class": "cryptominer", "attacks": 3, "detected": 3, "recall": 1.0, "alerts": 3,
                        "detect_s_p50": 0.0, "detect_s_max": 1.0},
    }
    return {"seed": seed, "falco_only": seed % 3 == 0, "hidden_attacks": 1, "events": 100_000, "attacks": 6,
            "benign_events": 99_000, "alerts": alerts + 3 + false,
            "false_alerts": false, "false_per_100k": round(false * 100_000 / 99_000, 2), "precision": 0.9,
            "false_alert_examples": [f"false {seed}"] * false, "classes": classes}


def test_quality_over_seeds_reports_the_worst_seed_not_the_mean() -> None:
    from bench.quality import summarize_seeds

    runs = [_quality_run(7, 1.0, 3, 0), _quality_run(8, 0.67, 5, 0), _quality_run(9, 1.0, 4, 2)]
    summary = summarize_seeds(runs)
    cost = summary["classes"]["cost_harvesting"]
    assert (cost["recall"], cost["recall_worst_seed"]) == (0.67, 8)
    assert (cost["alerts_per_attack"], cost["alerts_per_attack_worst_seed"]) == (1.67, 8)
    assert cost["attacks"] == 9 and cost["detected"] == 8
    assert (summary["false_alerts"], summary["false_worst_seed"]) == (2, 9)
    assert summary["worst_seed"] == 8 and [row["seed"] for row in summary["per_seed"]] == [7, 8, 9]
    table = goals({"quality": summary})
    assert "| 8 (worst) | Falco + native agent |" in table and "0.67 (seed 8)" in table and "| 1.67 |" in table
    assert "| 9 | Falco only | 100000 | 6 (1) |" in table
    assert "| worst seed: ≤ 1.2 alerts per attack in every class | 1.67 | no | 1.4× over |" in table
    assert "| worst seed: ≤ 1 false alert per 100k benign events | 2.02 | no |" in table
    with pytest.raises(ValueError, match="no runs"):
        summarize_seeds([])


def test_an_alert_detects_through_identifying_entities_and_counts_for_one_attack() -> None:
    from streams.evaluate import evaluate
    from streams.simulator import AttackLabel

    def label(scenario: str, key: str) -> AttackLabel:
        return AttackLabel(scenario, f"{scenario}-1", [f"apikey:{key}", "principal:svc-search", "model:gpt-4o"],
                           1000, 5000, 10, "")

    def alert(alert_id: str, *entities: str) -> dict:  # type: ignore[type-arg]
        return {"alert_id": alert_id, "entities": list(entities), "first_seen": 2000, "last_seen": 3000,
                "summary": alert_id}

    labels = [label("stolen_api_key", "key-a"), label("cost_harvesting", "key-b")]
    alerts = [
        alert("on-a", "apikey:key-a", "principal:svc-search", "model:gpt-4o"),
        alert("also-on-a", "apikey:key-a", "ip:198.51.100.7"),
        alert("same-model-only", "apikey:key-z", "model:gpt-4o", "namespace:web"),
    ]
    quality = evaluate(labels, alerts, benign_events=100_000)
    stolen, cost = quality.classes["stolen_api_key"], quality.classes["cost_harvesting"]
    assert (stolen.detected, stolen.alerts) == (1, 2)
    # key-b's attack shares only the service principal with the alerts on key-a: they are key-a's
    assert (cost.detected, cost.alerts) == (0, 0)
    assert quality.false_alerts == 1 and quality.false_alert_examples == ["same-model-only"]
