"""The migrations render for one server and for a cluster (ON CLUSTER, replicated engines with
{shard}/{replica} macros, nothing left unfilled), and the Distributed DDL generator."""

from __future__ import annotations

import re

import pytest

from infra.clickhouse import migrate
from infra.clickhouse.cluster import SHARDING_KEYS, distributed_ddl, hunt_database
from infra.settings import Settings

pytestmark = pytest.mark.unit

CLUSTER = Settings(clickhouse={"cluster": "prod", "ttl_days": 30})
SINGLE = Settings()
CREATE = re.compile(r"^CREATE\s+(TABLE|MATERIALIZED VIEW)\s+IF NOT EXISTS\s+(\S+)", re.I)
ENGINE = re.compile(r"\bENGINE\s*=\s*(\w+)(\([^\n]*\))?")


def statements(settings: Settings) -> list[str]:
    return [s for m in migrate.load(settings) for s in m.statements]


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in migrate.load(SINGLE)]
    assert versions == list(range(1, len(versions) + 1))
    assert {"events", "detections", "hunting_views"} <= {m.name for m in migrate.load(SINGLE)}


def test_cluster_variant_every_create_is_on_cluster_and_replicated() -> None:
    rendered = statements(CLUSTER)
    assert rendered
    for statement in rendered:
        assert "${" not in statement and "$" not in statement, statement[:120]
        if statement.upper().startswith("ALTER TABLE"):  # columns added to a table of an earlier migration
            assert re.match(r"ALTER TABLE aiwarden\.\w+ ON CLUSTER 'prod'\s", statement), statement[:120]
            continue
        assert statement.upper().startswith("CREATE"), statement[:120]
        assert CREATE.match(statement), statement[:120]
        assert "ON CLUSTER 'prod'" in statement, statement[:120]
        engines = ENGINE.findall(statement)
        if statement.upper().startswith("CREATE TABLE"):
            assert len(engines) == 1, statement[:120]
        else:
            assert re.search(r"\sTO aiwarden\.\w+\s", statement) and not engines, "views write TO a replicated table"
        for name, args in engines:
            assert name.startswith("Replicated") and name.endswith("MergeTree"), name
            assert "{shard}" in args and "{replica}" in args, args
        if "TTL" in statement:
            assert "INTERVAL 30 DAY" in statement


def test_single_server_variant_has_no_cluster_parts() -> None:
    for statement in statements(SINGLE):
        assert "${" not in statement and "ON CLUSTER" not in statement and "Replicated" not in statement
        assert "{shard}" not in statement and "{replica}" not in statement


def test_replacing_engines_keep_their_version_column() -> None:
    versions = {}
    for single, cluster in zip(statements(SINGLE), statements(CLUSTER), strict=True):
        if not CREATE.match(single):
            continue
        name = CREATE.match(single).group(2)  # type: ignore[union-attr]
        local, replicated = ENGINE.search(single), ENGINE.search(cluster)
        if local and local.group(1) == "ReplacingMergeTree":
            version = local.group(2).strip("()")
            assert replicated is not None and replicated.group(2).endswith(f", {version})")
            versions[name] = version
    assert versions == {
        "aiwarden.events": "ingested_at",
        "aiwarden.findings": "ingested_at",
        "aiwarden.alerts": "version",
        "aiwarden.inventory": "updated_ms",
        "aiwarden.vulnerabilities": "updated",
    }


def test_tables_dedup_inserts_and_time_tables_are_partitioned_monthly() -> None:
    for statement in statements(SINGLE):
        if not statement.startswith("CREATE TABLE"):
            continue
        assert "non_replicated_deduplication_window" in statement, statement[:80]
        if re.search(r"^\s+time DateTime64", statement, re.M):
            assert "PARTITION BY toYYYYMM(time)" in statement, statement[:80]


def test_only_known_placeholders_and_dollars_elsewhere_survive() -> None:
    for path in sorted(migrate.MIGRATIONS_DIR.glob("*.sql")):
        for name in re.findall(r"\$\{(\w+)\}", path.read_text()):
            assert name in migrate.placeholders(SINGLE), f"{path.name}: unknown placeholder {name}"
    rendered = migrate.render("-- a comment with $ in it\nSELECT match(x, '^a$') FROM ${database}.t", {"database": "d"})
    assert rendered == ("SELECT match(x, '^a$') FROM d.t",)
    with pytest.raises(KeyError, match="nope"):
        migrate.render("SELECT ${nope}", {})


def created_tables(settings: Settings) -> set[str]:
    names = set()
    for statement in statements(settings):
        match = CREATE.match(statement)
        if match and match.group(1).upper() == "TABLE":
            names.add(match.group(2).split(".", 1)[1])
    return names


def test_every_table_has_a_distributed_table() -> None:
    assert set(SHARDING_KEYS) == created_tables(SINGLE)


def test_distributed_ddl_is_empty_without_a_cluster() -> None:
    assert distributed_ddl(SINGLE) == []
    assert hunt_database(SINGLE) == "aiwarden"


def test_distributed_ddl_on_a_cluster() -> None:
    ddl = distributed_ddl(CLUSTER)
    assert ddl[0] == "CREATE DATABASE IF NOT EXISTS aiwarden_all ON CLUSTER 'prod'"
    assert hunt_database(CLUSTER) == "aiwarden_all"
    tables = {}
    for statement in ddl[1:]:
        match = re.fullmatch(
            r"CREATE TABLE IF NOT EXISTS aiwarden_all\.(\w+) ON CLUSTER 'prod' AS aiwarden\.(\w+) "
            r"ENGINE = Distributed\('prod', 'aiwarden', '(\w+)'(?:, (.+))?\)",
            statement,
        )
        assert match, statement
        assert match.group(1) == match.group(2) == match.group(3)
        tables[match.group(1)] = match.group(4)
    assert set(tables) == created_tables(CLUSTER)
    # Rows that replace each other must meet on one shard: shard by their id.
    assert tables["events"] == "cityHash64(event_id)"
    assert tables["alerts"] == "cityHash64(alert_id)"
    assert tables["inventory"] == "cityHash64(asset_id)"
    assert tables["findings"] == "cityHash64(finding_id)"
    assert tables["inference_hourly"] is None and tables["egress_hourly"] is None


def test_distributed_ddl_follows_the_database_setting() -> None:
    settings = Settings(clickhouse={"cluster": "c1", "database": "sec"})
    ddl = distributed_ddl(settings)
    assert ddl[0] == "CREATE DATABASE IF NOT EXISTS sec_all ON CLUSTER 'c1'"
    assert all("AS sec." in s and "Distributed('c1', 'sec', " in s for s in ddl[1:])
