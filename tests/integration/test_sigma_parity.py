"""One rule, two engines, one answer: the same events go to the stream matcher and into the real
ClickHouse ``events`` table, and every rule (the pack and the conformance set) must select the same
events in both. Events: the conformance events and a simulated organisation with every attack
scenario, through the source parsers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from detectors.sigma.clickhouse import rule_sql, where_clause
from detectors.sigma.matcher import Matcher
from detectors.sigma.rules import PACK_DIR, RuleSet
from infra.settings import Settings
from schemas.codec import encode
from schemas.envelope import Event
from schemas.sources import SOURCES
from streams.hunt import Hunt, Param, run_hunt
from streams.simulator import SimConfig, Simulator
from tests.sigma_cases import CONFORMANCE, EXPECTED, events, rule_id

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def simulated(start_ms: int) -> list[Event]:
    sim = Simulator(SimConfig(seed=23, duration_s=600, rate=40, start_ms=start_ms))
    return [SOURCES[r.source].normalize(r.record) for r in sim.records()]


def test_stream_and_clickhouse_select_the_same_events_for_every_rule(
    service_settings: Settings, ch: Client  # type: ignore[no-untyped-def]
) -> None:
    marker = uuid.uuid4().hex[:10]
    start_ms = int(time.time() * 1000) - 7 * 86_400_000 + uuid.uuid4().int % 3_600_000
    cases = events(start_ms, marker)
    stream = [*cases.values(), *simulated(start_ms)]
    ids = [e.event_id for e in stream]
    assert len(set(ids)) == len(ids)
    ch.raw_insert("aiwarden.events", insert_block=b"\n".join(encode(e) for e in stream), fmt="JSONEachRow")

    ruleset = RuleSet.load([PACK_DIR, ROOT / CONFORMANCE])
    assert ruleset.problems == []
    matcher = Matcher(ruleset.rules)
    by_rule: dict[str, set[str]] = {r.id: set() for r in ruleset.rules}
    for event in stream:
        for rule in matcher.match(event):
            by_rule[rule.id].add(event.event_id)

    # this run's ids, in a table of their own (too many for a query parameter)
    ids_table = f"aiwarden.sigma_parity_{marker}"
    ch.command(f"CREATE TABLE {ids_table} (event_id String) ENGINE = Memory")
    try:
        ch.insert(ids_table, [[i] for i in ids], column_names=["event_id"])
        mismatches = {}
        for rule in ruleset.rules:
            sql = (f"SELECT event_id FROM aiwarden.events FINAL WHERE event_id IN (SELECT event_id FROM {ids_table}) "  # noqa: S608 - our table and generated SQL
                   f"AND {where_clause(rule)}")
            got = {row[0] for row in ch.query(sql).result_rows}
            if got != by_rule[rule.id]:
                mismatches[f"{rule.id} {rule.title}"] = (sorted(by_rule[rule.id] - got), sorted(got - by_rule[rule.id]))
    finally:
        ch.command(f"DROP TABLE IF EXISTS {ids_table}")
    assert mismatches == {}, mismatches
    # not vacuous: the conformance expectations hold, and most pack rules fire on the simulated attacks
    names = {e.event_id: name for name, e in cases.items()}
    for number, expected in EXPECTED.items():
        assert {names[i] for i in by_rule[rule_id(number)] if i in names} == expected
    pack = [r for r in ruleset.rules if r.path.is_relative_to(PACK_DIR)]
    assert sum(1 for r in pack if by_rule[r.id]) >= 10


def test_sigma_hunt_runs_the_rule_read_only_over_a_time_window(
    service_settings: Settings, ch: Client  # type: ignore[no-untyped-def]
) -> None:
    from infra.clickhouse.client import connect
    from infra.clickhouse.cluster import hunt_database

    marker = uuid.uuid4().hex[:10]
    start_ms = int(time.time() * 1000) - 3 * 86_400_000 + uuid.uuid4().int % 3_600_000
    cases = events(start_ms, marker)
    ch.raw_insert("aiwarden.events", insert_block=b"\n".join(encode(e) for e in cases.values()), fmt="JSONEachRow")
    rule = next(r for r in RuleSet.load([ROOT / CONFORMANCE]).rules if r.id == rule_id(5))  # the xmrig one
    hunt = Hunt(name=rule.detector_id, description=rule.title, sql=rule_sql(rule),
                params={"since": Param("since", "DateTime64(3)"), "limit": Param("limit", "UInt32")})
    client = connect(service_settings, readonly=True, database=hunt_database(service_settings))
    try:
        columns, rows = run_hunt(client, hunt, {"since": "4d", "limit": "100000"})
        ours = [row for row in rows if row[columns.index("event_id")] == cases["xmrig"].event_id]
        assert len(ours) == 1
        _, later = run_hunt(client, hunt, {"since": "1d", "limit": "100000"})
        assert all(row[columns.index("event_id")] != cases["xmrig"].event_id for row in later)
    finally:
        client.close()


def test_correlation_rules_run_as_group_by_having_in_clickhouse(
    service_settings: Settings, ch: Client  # type: ignore[no-untyped-def]
) -> None:
    from detectors.sigma.correlation import correlation_sql
    from infra.clickhouse.client import connect
    from infra.clickhouse.cluster import hunt_database
    from tests.unit.test_sigma_correlation import FIXTURE, install
    from tests.unit.test_sigma_correlation import connect as connection

    marker = uuid.uuid4().hex[:10]
    t0 = (int(time.time() * 1000) - 2 * 86_400_000) // 300_000 * 300_000 + 1000  # inside one 5-minute window
    pod, slow = f"p{marker}", f"s{marker}"
    rows = [connection(i, pod, 8000 + i, t0 + i * 1000) for i in range(3)]
    rows += [connection(10 + i, slow, 443, t0 + i * 1000) for i in range(2)]  # 2 events: below every threshold
    rows += [install(pod, t0 + 5000)]  # after the connections: temporal yes, temporal_ordered no
    for event in rows:
        event.event_id = f"{event.event_id}-{marker}"
    ch.raw_insert("aiwarden.events", insert_block=b"\n".join(encode(e) for e in rows), fmt="JSONEachRow")
    client = connect(service_settings, readonly=True, database=hunt_database(service_settings))
    groups: dict[str, set[str]] = {}
    try:
        for correlation in RuleSet.load([FIXTURE]).correlations:
            hunt = Hunt(name=correlation.detector_id, description=correlation.title, sql=correlation_sql(correlation),
                        params={"since": Param("since", "DateTime64(3)"), "limit": Param("limit", "UInt32")})
            columns, found = run_hunt(client, hunt, {"since": "3d", "limit": "100000"})
            groups[correlation.type] = {row[columns.index("Pod")] for row in found} & {pod, slow}
    finally:
        client.close()
    assert groups == {"event_count": {pod}, "value_count": {pod}, "temporal": {pod}, "temporal_ordered": set()}
