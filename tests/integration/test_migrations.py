"""Every migration applies to the real server, and applying again applies nothing; the cluster
variant (which needs a cluster to run) at least parses on the real server."""

from __future__ import annotations

import time
import uuid

import pytest

from infra.clickhouse import migrate
from infra.clickhouse.client import connect
from infra.clickhouse.cluster import distributed_ddl
from infra.settings import Settings

pytestmark = pytest.mark.integration

TABLES = {
    "schema_migrations": "MergeTree",
    "events": "ReplacingMergeTree",
    "dead_letters": "MergeTree",
    "dlq_replays": "MergeTree",
    "findings": "ReplacingMergeTree",
    "alerts": "ReplacingMergeTree",
    "inventory": "ReplacingMergeTree",
    "actions": "MergeTree",
    "inference_hourly": "AggregatingMergeTree",
    "egress_hourly": "AggregatingMergeTree",
    "inference_hourly_mv": "MaterializedView",
    "egress_hourly_mv": "MaterializedView",
    "alert_triage": "MergeTree",
    "audit_log": "MergeTree",
    "suppressed_findings": "MergeTree",
    "vulnerabilities": "ReplacingMergeTree",
}


def test_apply_all_migrations_twice_on_a_fresh_database(service_settings: Settings) -> None:
    database = f"aiwarden_mig_{uuid.uuid4().hex[:8]}"
    settings = service_settings.model_copy(
        update={"clickhouse": service_settings.clickhouse.model_copy(update={"database": database})}
    )
    expected = [f"{m.version:04d}_{m.name}" for m in migrate.load(settings)]
    client = connect(settings)
    try:
        assert migrate.apply(client, settings) == expected
        assert migrate.apply(client, settings) == []  # idempotent: nothing pending

        engines = dict(
            client.query(
                "SELECT name, engine FROM system.tables WHERE database = {db:String}", parameters={"db": database}
            ).result_rows
        )
        assert engines == TABLES
        recorded = client.query(
            f"SELECT version, name, checksum FROM {database}.schema_migrations ORDER BY version"  # noqa: S608 - test db
        )
        assert [(v, n) for v, n, _ in recorded.result_rows] == [(m.version, m.name) for m in migrate.load(settings)]
        assert [c for _, _, c in recorded.result_rows] == [m.checksum for m in migrate.load(settings)]

        # The views feed their rollups in this database too (a recent time: older rows are past the TTL).
        recent = int(time.time() * 1000) - 3_600_000
        client.insert(
            f"{database}.events",
            [["e1", recent, "gateway", 6003, "chat", "alice", "k1", "gpt-4o", 10, 5, "10.0.0.1"]],
            column_names=[
                "event_id", "time_ms", "source", "class_uid", "activity", "principal", "api_key_id", "model_id",
                "tokens_in", "tokens_out", "src_ip",
            ],
        )
        rollup = client.query(
            f"SELECT principal, sum(requests), sum(tokens_in), sum(tokens_out) FROM {database}.inference_hourly "  # noqa: S608
            "GROUP BY principal"
        )
        assert rollup.result_rows == [("alice", 1, 10, 5)]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        client.close()


def test_the_shared_database_is_up_to_date(service_settings: Settings, ch) -> None:  # type: ignore[no-untyped-def]
    assert migrate.apply(ch, service_settings) == []


def test_cluster_ddl_parses_on_the_real_server(ch) -> None:  # type: ignore[no-untyped-def]
    """No cluster here to run it on, but ClickHouse's own parser accepts every cluster statement."""
    settings = Settings(clickhouse={"cluster": "prod"})
    rendered = [s for m in migrate.load(settings) for s in m.statements] + distributed_ddl(settings)
    for statement in rendered:
        formatted = ch.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
        assert "ON CLUSTER prod" in formatted.replace("'prod'", "prod"), formatted[:120]
