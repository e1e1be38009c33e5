"""Versioned, idempotent ClickHouse migrations, recorded in ``<database>.schema_migrations``.

Migrations are ``schemas/clickhouse/migrations/NNNN_name.sql`` files of ``;``-separated
statements with ``${database}``, ``${on_cluster}``, ``${merge_engine}``, ``${aggregating_engine}``,
``${replacing_engine}(ver)`` and ``${ttl_days}`` placeholders; a cluster setting turns them into
``ON CLUSTER`` DDL with replicated engines.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from infra.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse" / "migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


def placeholders(settings: Settings) -> dict[str, str]:
    ch = settings.clickhouse
    if ch.cluster:
        path = "'/clickhouse/tables/{shard}/{database}/{table}'"
        return {
            "database": ch.database,
            "on_cluster": f"ON CLUSTER '{ch.cluster}'",
            "merge_engine": f"ReplicatedMergeTree({path}, '{{replica}}')",
            "aggregating_engine": f"ReplicatedAggregatingMergeTree({path}, '{{replica}}')",
            "replacing_engine": f"ReplicatedReplacingMergeTree({path}, '{{replica}}', ",
            "ttl_days": str(ch.ttl_days),
        }
    return {
        "database": ch.database,
        "on_cluster": "",
        "merge_engine": "MergeTree",
        "aggregating_engine": "AggregatingMergeTree",
        "replacing_engine": "ReplacingMergeTree(",
        "ttl_days": str(ch.ttl_days),
    }


_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def render(sql: str, values: dict[str, str]) -> tuple[str, ...]:
    """Comment-free statements with ``${name}`` placeholders filled (any other ``$`` is left alone)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    # ReplacingMergeTree(ver) and ReplicatedReplacingMergeTree(path, replica, ver) share one placeholder.
    text = "\n".join(lines).replace("${replacing_engine}(", "${replacing_engine}")

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            msg = f"unknown migration placeholder ${{{name}}}"
            raise KeyError(msg)
        return values[name]

    text = _PLACEHOLDER.sub(fill, text)
    return tuple(s.strip() for s in text.split(";") if s.strip())


def load(settings: Settings, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    values = placeholders(settings)
    migrations = []
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        text = path.read_text()
        version, _, name = path.stem.partition("_")
        migrations.append(
            Migration(int(version), name, render(text, values), hashlib.sha256(text.encode()).hexdigest()[:16])
        )
    return migrations


def apply(client: Client, settings: Settings) -> list[str]:
    """Apply pending migrations in order; returns the names applied (none when up to date)."""
    db = settings.clickhouse.database
    on_cluster = placeholders(settings)["on_cluster"]
    client.command(f"CREATE DATABASE IF NOT EXISTS {db} {on_cluster}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations {on_cluster} "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = {placeholders(settings)['merge_engine']} ORDER BY version"
    )
    # Identifiers come from the settings, never from input.
    done = {row[0] for row in client.query(f"SELECT version FROM {db}.schema_migrations").result_rows}  # noqa: S608
    applied = []
    for migration in load(settings):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            f"{db}.schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(f"{migration.version:04d}_{migration.name}")
    return applied
