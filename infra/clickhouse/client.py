"""clickhouse-connect clients from the settings; hunting clients are read-only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from infra.kafka.clients import NotConfiguredError
from infra.settings import Settings


def connect(settings: Settings, *, readonly: bool = False, database: str | None = None, **kwargs: Any) -> Client:
    """A client for ``settings.clickhouse.url``. ``readonly`` sets ClickHouse's ``readonly=1``:
    the server itself refuses every write on that session."""
    ch = settings.clickhouse
    if not ch.url:
        msg = "no ClickHouse address: set AIWARDEN_CLICKHOUSE__URL or run `aiwarden up`"
        raise NotConfiguredError(msg)
    url = urlparse(ch.url)
    secure = url.scheme == "https"
    extra: dict[str, Any] = {}
    if secure:
        extra["verify"] = ch.verify_tls
        if ch.ca_cert:
            extra["ca_cert"] = str(ch.ca_cert)
        if ch.client_cert:
            extra["client_cert"] = str(ch.client_cert)
            if ch.client_cert_key:
                extra["client_cert_key"] = str(ch.client_cert_key)
    # A server that stops answering must not hold a caller (the sink) for clickhouse-connect's 300 s default.
    kwargs.setdefault("send_receive_timeout", ch.timeout_s)
    kwargs.setdefault("connect_timeout", min(10, ch.timeout_s))
    settings_: dict[str, Any] = dict(kwargs.pop("settings", {}) or {})
    if readonly:
        settings_["readonly"] = 1
    return clickhouse_connect.get_client(
        host=url.hostname or "127.0.0.1",
        port=url.port or (8443 if secure else 8123),
        username=ch.username,
        password=ch.password.get_secret_value(),
        secure=secure,
        database=database if database is not None else "",
        settings=settings_,
        **extra,
        **kwargs,
    )
