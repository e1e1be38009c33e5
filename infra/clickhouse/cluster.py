"""Reading and writing across shards when ``settings.clickhouse.cluster`` is set.

The migrations create every table ``ON CLUSTER`` with replicated engines: each shard holds its own
part of the data. Reads that should see every shard go through ``Distributed`` tables, which
``distributed_ddl`` creates in a database of their own, ``<database>_all``, under the same table
names. So the saved hunts, which name tables without a database, run unchanged on one server
(session database ``<database>``) and on a cluster (session database ``<database>_all``): see
``hunt_database``.

Why not a migration: the runner applies every migration on every deployment and has no
conditional ones, and ``Distributed`` tables need a cluster. Run this after the migrations, on
clusters only (``distributed_ddl`` returns nothing without a cluster)::

    from infra.clickhouse import cluster, migrate
    migrate.apply(client, settings)
    cluster.apply_distributed(client, settings)

Sharding keys: rows that replace each other (ReplacingMergeTree) must live on the same shard,
so the key hashes the row's id (events: ``event_id``, alerts: ``alert_id`` so every version of
an alert meets the others, inventory: ``asset_id``). Writers that insert through the
``<database>_all`` tables get that placement; rows inserted into a shard's local table stay there.
The hourly rollups are filled by materialized views on each shard from that shard's events, so
their ``Distributed`` tables have no sharding key: they are for reading (``sum()`` / ``uniqMerge()``
over all shards, as for one server).
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from infra.settings import Settings

DISTRIBUTED_SUFFIX = "_all"

# Every table the migrations create, with the sharding key of its Distributed table (None:
# read-only, not inserted into through the Distributed table). tests/unit/test_migrations_render.py
# checks this covers every CREATE TABLE of the migrations.
SHARDING_KEYS: dict[str, str | None] = {
    "events": "cityHash64(event_id)",
    "dead_letters": "rand()",
    "dlq_replays": "cityHash64(letter_id)",
    "findings": "cityHash64(finding_id)",
    "alerts": "cityHash64(alert_id)",
    "inventory": "cityHash64(asset_id)",
    "actions": "cityHash64(action_id)",
    "alert_triage": "cityHash64(alert_id)",
    "audit_log": "cityHash64(audit_id)",
    "suppressed_findings": "cityHash64(finding_id)",
    "vulnerabilities": "cityHash64(workload)",  # one workload's rows on one shard: FINAL replaces within it
    "inference_hourly": None,
    "egress_hourly": None,
}


def distributed_database(settings: Settings) -> str:
    return f"{settings.clickhouse.database}{DISTRIBUTED_SUFFIX}"


def hunt_database(settings: Settings) -> str:
    """The database hunts run in: the local tables on one server, the Distributed ones on a cluster."""
    return distributed_database(settings) if settings.clickhouse.cluster else settings.clickhouse.database


def distributed_ddl(settings: Settings) -> list[str]:
    """``CREATE`` statements for a ``Distributed`` table over each local table; empty without a cluster.

    Idempotent (``IF NOT EXISTS``). Columns, defaults included, are copied from the local table
    (``AS <database>.<table>``), so apply them after the migrations.
    """
    cluster = settings.clickhouse.cluster
    if not cluster:
        return []
    local = settings.clickhouse.database
    dist = distributed_database(settings)
    statements = [f"CREATE DATABASE IF NOT EXISTS {dist} ON CLUSTER '{cluster}'"]
    for table, key in SHARDING_KEYS.items():
        args = f"'{cluster}', '{local}', '{table}'" + (f", {key}" if key else "")
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {dist}.{table} ON CLUSTER '{cluster}' AS {local}.{table} "
            f"ENGINE = Distributed({args})"
        )
    return statements


def apply_distributed(client: Client, settings: Settings) -> list[str]:
    """Run ``distributed_ddl``; returns the statements run (none without a cluster)."""
    statements = distributed_ddl(settings)
    for statement in statements:
        client.command(statement)
    return statements
