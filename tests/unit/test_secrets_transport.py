"""Kafka SASL/SSL and ClickHouse TLS settings reach every client: librdkafka's configuration, aiokafka's
keyword arguments, Faust's credentials and clickhouse-connect's ``get_client`` (captured, not connected)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import certifi
import faust
import pytest

from infra.clickhouse import client as ch_client
from infra.kafka.clients import aiokafka_kwargs, confluent_config, faust_broker
from infra.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed client certificate and key (PEM)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "client.pem", where / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-subj", "/CN=aiwarden-test", "-days", "1"], check=True, capture_output=True)
    return cert, key


def secure_settings(cert: Path, key: Path) -> Settings:
    return Settings(
        kafka={"bootstrap_servers": "k1:9093,k2:9093", "security_protocol": "SASL_SSL",
               "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc-aiwarden", "sasl_password": "pw-kafka",
               "ssl_cafile": certifi.where(), "ssl_certfile": cert, "ssl_keyfile": key},
        clickhouse={"url": "https://ch.example:8443", "username": "aiwarden", "password": "pw-ch",
                    "verify_tls": True, "ca_cert": certifi.where(), "client_cert": cert, "client_cert_key": key},
    )


def test_librdkafka_gets_sasl_and_ssl(client_cert: tuple[Path, Path]) -> None:
    cert, key = client_cert
    config = confluent_config(secure_settings(cert, key))
    assert config["bootstrap.servers"] == "k1:9093,k2:9093"
    assert config["security.protocol"] == "SASL_SSL"
    assert (config["sasl.mechanism"], config["sasl.username"], config["sasl.password"]) == (
        "SCRAM-SHA-512", "svc-aiwarden", "pw-kafka")
    assert config["ssl.ca.location"] == certifi.where()
    assert (config["ssl.certificate.location"], config["ssl.key.location"]) == (str(cert), str(key))
    assert config["ssl.endpoint.identification.algorithm"] == "https"


def test_aiokafka_and_faust_get_sasl_and_a_tls_context(client_cert: tuple[Path, Path]) -> None:
    cert, key = client_cert
    settings = secure_settings(cert, key)
    kwargs = aiokafka_kwargs(settings)
    assert kwargs["bootstrap_servers"] == ["k1:9093", "k2:9093"]
    assert (kwargs["security_protocol"], kwargs["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc-aiwarden", "pw-kafka")
    context: ssl.SSLContext = kwargs["ssl_context"]
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    urls, credentials = faust_broker(settings)
    assert urls == ["kafka://k1:9093", "kafka://k2:9093"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("svc-aiwarden", "pw-kafka")
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.ssl_context is not None
    assert "pw-kafka" not in repr(credentials)
    plain = Settings(kafka={"bootstrap_servers": "k:9092"})
    assert "ssl_context" not in aiokafka_kwargs(plain) and faust_broker(plain)[1] is None


def test_ssl_without_sasl() -> None:
    settings = Settings(kafka={"bootstrap_servers": "k:9093", "security_protocol": "SSL",
                               "ssl_cafile": certifi.where(), "ssl_check_hostname": False})
    config = confluent_config(settings)
    assert "sasl.mechanism" not in config and config["ssl.endpoint.identification.algorithm"] == "none"
    assert not aiokafka_kwargs(settings)["ssl_context"].check_hostname
    assert isinstance(faust_broker(settings)[1], faust.SSLCredentials)


def test_clickhouse_client_gets_tls_and_credentials(monkeypatch: pytest.MonkeyPatch,
                                                     client_cert: tuple[Path, Path]) -> None:
    cert, key = client_cert
    captured: dict[str, Any] = {}
    monkeypatch.setattr(ch_client.clickhouse_connect, "get_client", lambda **kw: captured.update(kw) or "client")
    assert ch_client.connect(secure_settings(cert, key), readonly=True) == "client"
    assert (captured["host"], captured["port"], captured["secure"]) == ("ch.example", 8443, True)
    assert (captured["username"], captured["password"]) == ("aiwarden", "pw-ch")
    assert captured["verify"] is True and captured["ca_cert"] == certifi.where()
    assert (captured["client_cert"], captured["client_cert_key"]) == (str(cert), str(key))
    assert captured["settings"] == {"readonly": 1}
    assert (captured["send_receive_timeout"], captured["connect_timeout"]) == (120, 10)  # not the 300 s default
