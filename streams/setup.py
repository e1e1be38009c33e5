"""Schema set-up shared by `up`, `migrate`, the demo and the tests."""

from __future__ import annotations

from infra.clickhouse import migrate as ch_migrate
from infra.clickhouse.client import connect
from infra.settings import Settings
from streams.topics import ensure_topics


def migrate(settings: Settings) -> tuple[list[str], list[str]]:
    """Create missing topics and apply pending ClickHouse migrations; returns both lists."""
    created = ensure_topics(settings)
    client = connect(settings)
    try:
        applied = ch_migrate.apply(client, settings)
    finally:
        client.close()
    return created, applied
