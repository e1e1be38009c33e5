"""A worker run with a ClickHouse password, a webhook secret and a Kafka SASL password set, in the
failure paths that print most (ClickHouse refusing the login, the broker refusing SASL, webhook
deliveries failing): none of the secrets appears in its log, its web endpoints or ``aiwarden status``."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from infra.services import free_port
from infra.settings import Settings
from streams.worker_process import new_app_id
from tests.integration.invariants import Feeder, Run, wait_until, worker
from tests.integration.signin import make_accounts
from tests.unit.test_secrets import assert_no_secret, secret_env

pytestmark = pytest.mark.integration


def test_secrets_never_appear_in_worker_logs_errors_or_status(service_settings: Settings, tmp_path: Path) -> None:
    assert service_settings.kafka.bootstrap_servers and service_settings.clickhouse.url
    secrets = secret_env(tmp_path, service_settings.kafka.bootstrap_servers, service_settings.clickhouse.url)
    app = new_app_id(service_settings, "fault-secrets")
    webhook = f"http://127.0.0.1:{free_port()}/"  # nobody listens: every delivery fails and is logged
    plain_kafka = {k: v for k, v in secrets.items() if not k.startswith("AIWARDEN_KAFKA__")}
    viewer = make_accounts(service_settings)["viewer"]

    # 1. Kafka without SASL (the local broker has none); ClickHouse refuses the user and password.
    first = worker(service_settings, tmp_path / "ch-auth.log", app, webhook, **plain_kafka,
                   AIWARDEN_WORKER__WEB_PORT=str(port := free_port()))
    # 2. Kafka with SASL against a broker that does not speak it.
    second = worker(service_settings, tmp_path / "sasl.log", f"{app}-sasl", webhook, **secrets)
    try:
        feeder = Feeder(service_settings, Run.simulate(seed=97, duration_s=20, rate=100,
                                                      scenarios=("model_server_shell",)), 2)
        feeder.start()
        feeder.finish()
        wait_until(lambda: "ClickHouse sink cannot write" in first.log_path.read_text(errors="replace"), 120,
                   "the sink logging ClickHouse's refusal", [first])
        signed_in = {"Authorization": f"Bearer {viewer.token}"}  # every page but /health needs a sign-in
        pages = [urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}",  # noqa: S310
                                                               headers=signed_in), timeout=10).read().decode()
                 for path in ("/health", "/aiwarden/state")]
        wait_until(lambda: second.log_path.exists() and second.log_path.stat().st_size > 0, 60,
                   "the SASL worker logging")
    finally:
        first.stop()
        second.stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    status = subprocess.run([sys.executable, "-m", "streams.cli", "status"], env={**env, **secrets},
                            capture_output=True, text=True, timeout=120, check=False)
    texts: dict[str, Any] = {
        "worker log (ClickHouse refusing)": first.log_path.read_text(errors="replace"),
        "worker log (SASL refused)": second.log_path.read_text(errors="replace"),
        "worker web pages": "\n".join(pages),
        "aiwarden status": status.stdout + status.stderr,
    }
    print("\nFAULT secrets: " + "; ".join(f"{where}: {len(text)} chars" for where, text in texts.items()))
    # The failure paths were taken: ClickHouse refused the login, the broker the SASL handshake.
    assert "AUTHENTICATION_FAILED" in texts["worker log (ClickHouse refusing)"]
    assert "Sasl" in texts["worker log (SASL refused)"]
    for where, text in texts.items():
        assert_no_secret(text, where)
