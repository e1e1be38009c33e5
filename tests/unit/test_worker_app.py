"""The worker's Faust app: where its web server listens (loopback unless told otherwise, with a warning)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from infra.settings import AuthSettings, KafkaSettings, Settings, WorkerSettings
from streams.app import create_app, is_loopback, web_host

pytestmark = pytest.mark.unit


def app_conf(tmp_path: Path, cookie_secure: bool = True, **worker: object) -> tuple[str, str]:
    settings = Settings(state_dir=tmp_path, kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
                        worker=WorkerSettings(web_port=18080, **worker),  # type: ignore[arg-type]
                        auth=AuthSettings(cookie_secure=cookie_secure))

    async def build() -> tuple[str, str]:  # on asyncio.run's loop, closed with it
        app = create_app(settings)
        return app.conf.web_bind, app.conf.web_host

    return asyncio.run(build())


def test_the_web_server_listens_on_loopback_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert app_conf(tmp_path) == ("127.0.0.1", "127.0.0.1")
    assert "non-Secure" not in caplog.text


def test_another_bind_address_is_used_and_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        bind, host = app_conf(tmp_path, cookie_secure=False, web_bind="0.0.0.0")  # noqa: S104
    assert bind == "0.0.0.0" and host not in ("0.0.0.0", "")  # noqa: S104 - links name the machine
    assert "non-Secure session cookies" in caplog.text


@pytest.mark.parametrize(("bind", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("10.0.0.5", False), ("0.0.0.0", False),  # noqa: S104
                                                ("ml-worker-1", False)])
def test_loopback_addresses(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback


def test_links_name_the_bind_address_or_the_machine() -> None:
    assert web_host("10.0.0.5") == "10.0.0.5"
    assert web_host("::") not in ("::", "")
