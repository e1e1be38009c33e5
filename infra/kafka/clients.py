"""Client configuration for every Kafka client aiwarden uses, from the one settings object."""

from __future__ import annotations

import ssl
from typing import Any

from infra.settings import Settings


class NotConfiguredError(RuntimeError):
    """A service address is missing: neither set in the settings nor started locally."""


def bootstrap(settings: Settings) -> str:
    servers = settings.kafka.bootstrap_servers
    if not servers:
        msg = "no Kafka address: set AIWARDEN_KAFKA__BOOTSTRAP_SERVERS or run `aiwarden up`"
        raise NotConfiguredError(msg)
    return servers


def confluent_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka configuration (producer, consumer or admin), security options included."""
    kafka = settings.kafka
    config: dict[str, Any] = {"bootstrap.servers": bootstrap(settings), "security.protocol": kafka.security_protocol}
    if kafka.sasl_mechanism:
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username or ""
        config["sasl.password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    if "SSL" in kafka.security_protocol:
        if kafka.ssl_cafile:
            config["ssl.ca.location"] = str(kafka.ssl_cafile)
        if kafka.ssl_certfile:
            config["ssl.certificate.location"] = str(kafka.ssl_certfile)
        if kafka.ssl_keyfile:
            config["ssl.key.location"] = str(kafka.ssl_keyfile)
        config["ssl.endpoint.identification.algorithm"] = "https" if kafka.ssl_check_hostname else "none"
    config.update(extra)
    return config


def batch_consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    """librdkafka configuration of a consumer that takes batches and commits by itself (the pipeline
    engine's hops, the ClickHouse sink): manual commits, ``read_committed``, cooperative-sticky
    assignment, session timeouts from the worker settings, a bounded prefetch; ``extra`` overrides."""
    worker = settings.worker
    return confluent_config(settings, **{
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": int(worker.session_timeout_s * 1000),
        "heartbeat.interval.ms": max(500, int(worker.session_timeout_s * 250)),
        "max.poll.interval.ms": 600_000,
        "fetch.wait.max.ms": 100,
        # librdkafka prefetches up to 64 MiB per consumer by default: three hops would hold ~200 MiB
        # of records in a busy worker. 16 MiB is more than a second of records at full rate.
        "queued.max.messages.kbytes": 16_384,
        **extra,
    })


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of aiokafka and Faust for SSL / SASL_SSL: CA bundle, client certificate (mutual
    TLS) and host name checking from the settings; None for plaintext protocols."""
    kafka = settings.kafka
    if "SSL" not in kafka.security_protocol:
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
    context.check_hostname = kafka.ssl_check_hostname
    return context


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's consumer and producer."""
    kafka = settings.kafka
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings).split(","),
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def faust_broker(settings: Settings) -> tuple[list[str], Any]:
    """Faust broker URLs and credentials."""
    import faust

    urls = [f"kafka://{server}" for server in bootstrap(settings).split(",")]
    kafka = settings.kafka
    credentials: Any = None
    if kafka.sasl_mechanism:
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context(settings),
        )
    elif "SSL" in kafka.security_protocol:
        credentials = faust.SSLCredentials(ssl_context(settings))
    return urls, credentials


def partition_ids(client: Any, topic: str, timeout_s: float = 15.0) -> list[int]:
    """The partitions of ``topic`` from a confluent-kafka client's metadata (``Consumer`` or
    ``AdminClient``); a clear error when the topic does not exist."""
    metadata = client.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        reason = metadata.error.str() if metadata is not None and metadata.error is not None else "not found"
        msg = f"topic {topic}: {reason} (run `aiwarden migrate`)"
        raise RuntimeError(msg)
    return sorted(metadata.partitions)
