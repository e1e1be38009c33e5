"""Shared fixtures. Integration tests get real Kafka and ClickHouse from one session fixture:

1. the external services when AIWARDEN_KAFKA__BOOTSTRAP_SERVERS / AIWARDEN_CLICKHOUSE__URL are set;
2. testcontainers' Kafka and ClickHouse when a Docker engine answers (or AIWARDEN_TEST_SERVICES=testcontainers);
3. otherwise the local launchers (Apache Kafka from Maven, ClickHouse from chdb-core), as on CI here.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import services
from infra.settings import Settings
from streams.simulator import estate as simulator_estate

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _docker_answers() -> bool:
    """True when a Docker engine answers on its socket (DOCKER_HOST unix:// honoured)."""
    path = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in sock.recv(1024)
    except OSError:
        return False


def _testcontainers(base: Settings) -> Iterator[Settings]:
    from testcontainers.clickhouse import ClickHouseContainer
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka, ClickHouseContainer(
        "clickhouse/clickhouse-server:24.8"
    ) as clickhouse:
        url = f"http://{clickhouse.get_container_host_ip()}:{clickhouse.get_exposed_port(8123)}"
        yield base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"bootstrap_servers": kafka.get_bootstrap_server()}),
                "clickhouse": base.clickhouse.model_copy(
                    update={"url": url, "username": clickhouse.username, "password": clickhouse.password}
                ),
            }
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests (``@pytest.mark.soak``: long fault-injection variants) run only when ``-m`` names them
    (``make soak`` runs ``pytest -m soak``); ``make test`` and every other selection leaves them out.
    A test under ``tests/unit`` or ``tests/integration`` without its folder's marker gets it, so
    ``make unit`` / ``make integration`` select every test of their folder."""
    for item in items:
        folder = item.path.parent.name
        if folder in ("unit", "integration") and item.get_closest_marker(folder) is None:
            item.add_marker(getattr(pytest.mark, folder))
    if "soak" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


@pytest.fixture(scope="session")
def service_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Resolved settings pointing at a real broker and a real ClickHouse, schema applied."""
    from streams.setup import migrate

    state_dir = tmp_path_factory.mktemp("aiwarden-state")
    base = simulator_estate.apply(Settings(state_dir=state_dir))  # the tests' traffic is the simulator's estate
    mode = os.environ.get("AIWARDEN_TEST_SERVICES", "")
    if base.kafka.bootstrap_servers and base.clickhouse.url:
        print("integration services: external (from AIWARDEN_* settings)", file=sys.stderr)
        migrate(base)
        yield base
    elif mode == "testcontainers" or (mode != "local" and _docker_answers()):
        print("integration services: testcontainers", file=sys.stderr)
        for settings in _testcontainers(base):
            migrate(settings)
            yield settings
    else:
        print("integration services: local launchers (Apache Kafka + chdb ClickHouse)", file=sys.stderr)
        try:
            resolved = services.up(base)
            migrate(resolved)
            yield resolved
        finally:
            services.down(base)


@pytest.fixture()
def ch(service_settings: Settings):  # type: ignore[no-untyped-def]
    from infra.clickhouse.client import connect

    client = connect(service_settings)
    yield client
    client.close()
