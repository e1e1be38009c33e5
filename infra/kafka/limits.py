"""The largest record each topic takes, read from the broker once and cached.

A topic's ``max.message.bytes`` (which carries the broker's ``message.max.bytes`` when the topic does not
override it); when the topic's configuration cannot be read (no DescribeConfigs permission on it), the
broker's ``message.max.bytes``; when neither can, Kafka's stock default, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.dead_letter import KAFKA_DEFAULT_MAX_MESSAGE_BYTES, record_budget

log = logging.getLogger(__name__)

LIBRDKAFKA_DEFAULT_MAX_BYTES = 1_000_000  # librdkafka's own message.max.bytes


class TopicLimits:
    """``max_bytes(topic)``: the topic's limit, capped by what the producer is configured to send
    (``client_max``: set ``message.max.bytes`` of the producer to it)."""

    def __init__(self, settings: Settings | None, topics: Iterable[str] = (), timeout_s: float = 10.0,
                 admin: Any = None) -> None:
        """``topics`` are read at once (one request); ``admin`` replaces the AdminClient (unit tests)."""
        self.settings = settings
        self.timeout_s = timeout_s
        self._limits: dict[str, int] = {}
        self._broker: int | None = None
        self._admin: Any = admin
        wanted = list(topics)
        if wanted:
            self._read(wanted)
        self.client_max = max(LIBRDKAFKA_DEFAULT_MAX_BYTES, KAFKA_DEFAULT_MAX_MESSAGE_BYTES, self._broker or 0,
                              *self._limits.values())

    @classmethod
    def fixed(cls, limit: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES) -> TopicLimits:
        """Every topic at ``limit`` (unit tests; no broker)."""
        limits = cls(None)
        limits._broker = limit  # noqa: SLF001
        limits.client_max = max(limit, LIBRDKAFKA_DEFAULT_MAX_BYTES)
        return limits

    def max_bytes(self, topic: str) -> int:
        limit = self._limits.get(topic)
        if limit is None:
            if self._broker is None:
                self._read([topic])
            limit = self._limits.get(topic, self._broker or KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        return min(limit, self.client_max)

    def budget(self, topic: str) -> int:
        """Bytes a record (value, key and headers) may take on ``topic`` (``record_budget`` of its limit)."""
        return record_budget(self.max_bytes(topic))

    def _admin_client(self) -> Any:
        if self._admin is None:
            assert self.settings is not None  # noqa: S101 - fixed() limits never read
            self._admin = AdminClient(confluent_config(self.settings))
        return self._admin

    def _read(self, topics: list[str]) -> None:
        if self.settings is None and self._admin is None:
            return
        admin = self._admin_client()
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics],
                                         request_timeout=self.timeout_s)
        missing = []
        for resource, future in futures.items():
            try:
                entry = future.result(timeout=self.timeout_s).get("max.message.bytes")
                self._limits[resource.name] = int(entry.value)
            except (KafkaException, TimeoutError, AttributeError, ValueError, TypeError) as exc:
                log.debug("max.message.bytes of topic %s unreadable: %s", resource.name, exc)
                missing.append(resource.name)
        if missing:
            self._broker = self._broker_limit()

    def _broker_limit(self) -> int:
        admin = self._admin_client()
        try:
            brokers = admin.list_topics(timeout=self.timeout_s).brokers
            resource = ConfigResource(ResourceType.BROKER, str(min(brokers)))
            entry = admin.describe_configs([resource], request_timeout=self.timeout_s)[resource].result(
                timeout=self.timeout_s).get("message.max.bytes")
            return int(entry.value)
        except (KafkaException, TimeoutError, AttributeError, ValueError, TypeError) as exc:
            log.warning("the broker's message.max.bytes is unreadable (%s); assuming Kafka's default %d", exc,
                        KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
            return KAFKA_DEFAULT_MAX_MESSAGE_BYTES
