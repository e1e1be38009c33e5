"""Secrets (ClickHouse password, webhook secret, Kafka SASL password) never show: not in ``repr`` or dumps
of the settings, not in ``aiwarden status`` (healthy or failing), not in the errors of failed deliveries.
A worker running with them set: tests/integration/test_faults_secrets.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.services import free_port, redact_url
from infra.settings import Settings
from streams.containment.delivery import Deliverer

pytestmark = pytest.mark.unit

CH_PASSWORD = "ch-Pa55w0rd-do-not-print"  # noqa: S105 - test values
SASL_PASSWORD = "sasl-Pa55w0rd-do-not-print"  # noqa: S105
WEBHOOK_SECRET = "webhook-secret-do-not-print"  # noqa: S105
SECRETS = (CH_PASSWORD, SASL_PASSWORD, WEBHOOK_SECRET)


def secret_env(state_dir: Path, kafka: str, clickhouse: str) -> dict[str, str]:
    return {
        "AIWARDEN_STATE_DIR": str(state_dir),
        "AIWARDEN_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "AIWARDEN_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "AIWARDEN_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "AIWARDEN_KAFKA__SASL_USERNAME": "aiwarden",
        "AIWARDEN_KAFKA__SASL_PASSWORD": SASL_PASSWORD,
        "AIWARDEN_CLICKHOUSE__URL": clickhouse,
        "AIWARDEN_CLICKHOUSE__USERNAME": "aiwarden",
        "AIWARDEN_CLICKHOUSE__PASSWORD": CH_PASSWORD,
        "AIWARDEN_CONTAINMENT__SECRET": WEBHOOK_SECRET,
    }


def assert_no_secret(text: str, where: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} shows {leaked}"


def test_settings_never_show_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in secret_env(tmp_path, "127.0.0.1:1", "http://127.0.0.1:1").items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.clickhouse.password.get_secret_value() == CH_PASSWORD  # they are set …
    for text, where in ((repr(settings), "repr"), (str(settings), "str"), (settings.model_dump_json(), "JSON dump"),
                        (str(settings.model_dump()), "dump")):
        assert_no_secret(text, where)  # … and never shown


def test_status_never_shows_secrets(tmp_path: Path) -> None:
    """``aiwarden status`` against external services that refuse connections (the error path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    # Credentials in the URL too: status shows the address without them.
    url = f"http://aiwarden:{CH_PASSWORD}@127.0.0.1:{free_port()}"
    env.update(secret_env(tmp_path, f"127.0.0.1:{free_port()}", url))
    done = subprocess.run([sys.executable, "-m", "streams.cli", "status"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr  # both unreachable
    assert "clickhouse" in done.stdout and "kafka" in done.stdout
    assert_no_secret(done.stdout + done.stderr, "aiwarden status")


def test_redact_url() -> None:
    assert redact_url("https://u:secret@ch:8443/db?x=1") == "https://u:***@ch:8443/db?x=1"
    assert redact_url("https://ch:8443") == "https://ch:8443"
    assert redact_url("http://user@ch") == "http://user@ch"


def test_failed_delivery_errors_never_show_the_secret() -> None:
    async def attempt() -> str:
        deliverer = Deliverer(f"http://127.0.0.1:{free_port()}/", WEBHOOK_SECRET, timeout_s=2)
        try:
            outcome = await deliverer.attempt("msg_1", {"action": "notify", "target": "principal:x"})
        finally:
            await deliverer.close()
        return f"{outcome!r} {deliverer!r}"

    assert_no_secret(asyncio.run(attempt()), "a failed delivery")
