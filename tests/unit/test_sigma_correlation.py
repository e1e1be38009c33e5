"""Sigma correlation rules in the detect stage: re-keyed by group, state in the re-keyed store (kept
across a restart through its changelog), findings when the condition holds, and their SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.sigma.correlation import correlation_sql
from detectors.sigma.rules import RuleSet
from infra.settings import Settings
from schemas.envelope import Event
from streams import topics
from streams.pipeline.detect import Detection
from tests.unit.pipeline_fakes import Message, Out, commit, event_message, memory_store

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests/fixtures/sigma/correlations.yml"
T0 = 1_700_000_000_000


def stage(tmp_path: Path, stores: dict[str, Any] | None = None) -> tuple[Detection, Out, dict[str, Any]]:
    settings = Settings(state_dir=tmp_path, sigma={"pack": False, "rules": [str(FIXTURE)]})
    stores = stores or {name: memory_store(name) for name in ("states", "rekeyed", "assets", "models")}
    out = Out()
    return Detection(settings, out, **stores), out, stores


def connect(i: int, pod: str, port: int, t: int) -> Event:
    return Event(event_id=f"c{pod}{i}", time_ms=t, source="native", class_uid=4001, activity="network_connect",
                 pod=pod, namespace="ml", dst_ip="203.0.113.9", dst_port=port, entity_id=f"pod:ml/{pod}",
                 entities=[f"pod:ml/{pod}"])


def install(pod: str, t: int) -> Event:
    return Event(event_id=f"i{pod}{t}", time_ms=t, source="native", class_uid=1007, activity="process_exec",
                 pod=pod, namespace="ml", process_name="pip", process_cmdline="pip install evil",
                 entity_id=f"pod:ml/{pod}", entities=[f"pod:ml/{pod}"])


def run(detect: Detection, out: Out, events: list[Event]) -> list[dict[str, Any]]:
    """Events through the detect stage, then its re-keyed records through the re-key path (as Kafka would)."""
    start = len(out.sent)
    detect.events_batch([event_message(e, offset=i) for i, e in enumerate(events)])
    rekeyed = [r for r in out.sent[start:] if r["topic"].endswith("-detect-rekey")]
    detect.rekeyed_batch([Message(r["value"], r["key"], topic="rekey", headers=r["headers"]) for r in rekeyed])
    return [orjson.loads(s["value"]) for s in out.sent[start:] if s["topic"] == topics.FINDINGS]


def by_title(findings: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        grouped.setdefault(finding["title"], []).append(finding)
    return grouped


def test_correlations_load_and_resolve_by_name_and_id() -> None:
    ruleset = RuleSet.load([FIXTURE])
    assert ruleset.problems == []
    kinds = {c.title: c.type for c in ruleset.correlations}
    assert kinds == {"many connections from one pod": "event_count", "one pod to many ports": "value_count",
                     "install then connect": "temporal_ordered", "install and connect, any order": "temporal"}
    standalone = {r.title: r.standalone for r in ruleset.rules}
    assert standalone == {"outbound connection": False, "package install": True}  # generate: true keeps it


def test_event_and_value_counts_fire_per_group_within_the_timespan(tmp_path: Path) -> None:
    detect, out, _ = stage(tmp_path)
    events = [connect(i, "a", 443, T0 + i * 1000) for i in range(3)]  # 3 events, one port
    events += [connect(10 + i, "b", 8000 + i, T0 + i * 30_000) for i in range(3)]  # 3 ports over 60 s
    events += [connect(20 + i, "c", 9000 + i, T0 + i * 61_000) for i in range(3)]  # too slow: never 3 in 1 m
    found = by_title(run(detect, out, events))
    assert "outbound connection" not in found  # feeds correlations only (generate: false)
    counts = found["many connections from one pod"]
    assert sorted(f["entity_id"] for f in counts) == ["pod:ml/a", "pod:ml/b"]
    ports = found["one pod to many ports"]
    assert [f["entity_id"] for f in ports] == ["pod:ml/b"]
    assert ports[0]["severity"] == "high" and ports[0]["maturity"] == "stable"
    assert ports[0]["attack_techniques"] == ["T1046"] and len(ports[0]["evidence_event_ids"]) == 3
    assert ports[0]["detector"] == "sigma:00000000-0000-4000-8000-000000000202"


def test_temporal_ordered_needs_the_order_and_temporal_does_not(tmp_path: Path) -> None:
    detect, out, _ = stage(tmp_path)
    found = by_title(run(detect, out, [install("p", T0), connect(1, "p", 443, T0 + 1000),
                                       connect(2, "q", 443, T0), install("q", T0 + 1000)]))
    assert [f["entity_id"] for f in found["install then connect"]] == ["pod:ml/p"]
    assert sorted(f["entity_id"] for f in found["install and connect, any order"]) == ["pod:ml/p", "pod:ml/q"]
    assert len(found["package install"]) == 2  # generate: true


def test_group_state_survives_a_restart_through_the_changelog(tmp_path: Path) -> None:
    detect, out, stores = stage(tmp_path)
    assert run(detect, out, [connect(i, "r", 443, T0 + i) for i in range(2)]) == []
    changelog = commit(stores["rekeyed"])
    assert any(key.startswith("sigma:00000000-0000-4000-8000-000000000201|") for _, _, key in changelog)
    restarted, out2, _ = stage(tmp_path, stores)  # a new stage over the committed store
    found = by_title(run(restarted, out2, [connect(9, "r", 443, T0 + 5)]))
    assert [f["entity_id"] for f in found["many connections from one pod"]] == ["pod:ml/r"]


def test_correlation_sql_groups_and_filters_by_the_condition() -> None:
    ruleset = RuleSet.load([FIXTURE])
    sql = {c.type: correlation_sql(c) for c in ruleset.correlations}
    assert "count() AS events" in sql["event_count"] and "HAVING events >= 3" in sql["event_count"]
    assert "GROUP BY `Pod`, window" in sql["event_count"] and "INTERVAL 60 SECOND" in sql["event_count"]
    assert "uniqExact(dst_port) AS distinct_values" in sql["value_count"]
    assert "rules_seen = 2" in sql["temporal"] and "minIf(time" in sql["temporal_ordered"]


def test_an_event_counts_once_and_a_group_fires_once_for_the_same_events(tmp_path: Path) -> None:
    detect, out, _ = stage(tmp_path)
    events = [connect(i, "s", 443, T0 + i * 1000) for i in range(5)]
    first = by_title(run(detect, out, events))["many connections from one pod"]
    assert len(first) == 1 and first[0]["time_ms"] == T0  # the group's first event, not the one completing it
    # The same events published again (new offsets, same event ids), in another order: nothing new.
    again = by_title(run(detect, out, [events[0], events[4], events[1], events[3], events[2]]))
    assert "many connections from one pod" not in again
    later = [connect(10 + i, "s", 443, T0 + 10_000 + i * 1000) for i in range(3)]
    fresh = by_title(run(detect, out, later))["many connections from one pod"]
    assert len(fresh) == 1 and fresh[0]["finding_id"] != first[0]["finding_id"]


def test_a_group_found_again_in_another_order_is_the_same_finding_row(tmp_path: Path) -> None:
    """Events of one group (one pod) about several entities (its containers), published twice: the second
    time the older group may fire again (only the last group's events are remembered), and must then give
    the same row (id, time, entity), not a second one keyed by whichever event completed it."""
    detect, out, _ = stage(tmp_path)

    def connection(i: int) -> Event:
        event = connect(i, "s", 443, T0 + i * 1000)
        event.entity_id, event.entities = f"container:c{i}", [f"container:c{i}", "pod:ml/s"]
        return event

    events = [connection(i) for i in range(6)]  # two groups: 0..2 and 3..5
    first = by_title(run(detect, out, events))["many connections from one pod"]
    assert len(first) == 2
    again = by_title(run(detect, out, [events[2], events[0], events[1]])).get("many connections from one pod", [])
    for finding in again:
        original = next(f for f in first if f["finding_id"] == finding["finding_id"])
        assert (finding["time_ms"], finding["entity_id"]) == (original["time_ms"], original["entity_id"])
    assert first[0]["entity_id"] == "container:c0"  # the group's first event names it
