"""Producers: publish raw source records to the raw topics with confluent-kafka.

Records are validated and normalized before they are sent, only to route them (topic, key =
primary entity id) and to catch bad input early: the raw bytes are what is published. A record
that fails goes to ``aiwarden.dlq`` with its reason and file/line; nothing is dropped silently.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.codec import Limits, RecordError, decode, encode
from schemas.dead_letter import DeadLetter
from schemas.sources import SOURCES, normalize_bytes
from streams import topics

Headers = list[tuple[str, str | bytes | None]]


class PublishError(RuntimeError):
    """The broker is unreachable, a topic is missing, or deliveries failed."""


@dataclass
class PublishSummary:
    published: Counter[str] = field(default_factory=Counter)  # per topic
    dead_lettered: Counter[str] = field(default_factory=Counter)  # per source
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.published.values()) + sum(self.dead_lettered.values())


def limits_of(settings: Settings) -> Limits:
    return Limits(settings.ingest.max_record_bytes, settings.ingest.max_depth, settings.ingest.max_string_chars)


def check_broker(settings: Settings, timeout_s: float = 10.0) -> None:
    """Fail fast, before anything is sent, when the broker is unreachable or topics are missing."""
    admin = AdminClient(confluent_config(settings, **{"socket.timeout.ms": int(timeout_s * 1000)}))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        msg = f"Kafka at {settings.kafka.bootstrap_servers} is unreachable: {exc.args[0].str()}"
        raise PublishError(msg) from None
    missing = [t for t in (*topics.RAW_TOPICS, topics.DLQ) if t not in metadata.topics]
    if missing:
        msg = f"topics missing: {', '.join(missing)}; run `aiwarden migrate` (topics are never auto-created)"
        raise PublishError(msg)


class Publisher:
    """An idempotent, batching, compressing producer for raw records and dead letters."""

    def __init__(self, settings: Settings, producer: Any = None, **overrides: Any) -> None:
        """``producer`` replaces the confluent-kafka producer (unit tests); ``overrides`` are librdkafka
        settings."""
        self.settings = settings
        self.limits = limits_of(settings)
        config = confluent_config(
            settings,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "lz4",
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "message.timeout.ms": 120_000,
                **overrides,
            },
        )
        self.producer = producer if producer is not None else Producer(config)
        self.summary = PublishSummary()
        # The delivery callback of the next produce; ``aiwarden ingest`` swaps in one per request.
        self.on_delivery: Callable[[KafkaError | None, Any], None] = self._delivered

    def _delivered(self, err: KafkaError | None, message: Any) -> None:
        if err is not None:
            self.summary.failed += 1
            if len(self.summary.errors) < 10:
                self.summary.errors.append(f"{message.topic()}: {err.str()}")

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=self.on_delivery)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
        self.producer.poll(0)

    def publish(self, data: bytes, source: str | None, position: dict[str, str | int]) -> bool:
        """Validate and publish one raw record; a bad one is dead-lettered. True if published."""
        try:
            event = normalize_bytes(data, source, limits=self.limits, prompt_chars=0)
        except RecordError as exc:
            self.dead_letter(DeadLetter.of(exc.reason, source or "unknown", "publish", data, position))
            return False
        spec = SOURCES[event.source]
        self._produce(spec.topic, event.entity_id.encode(), data, [(topics.SOURCE_HEADER, event.source.encode())])
        self.summary.published[spec.topic] += 1
        return True

    def publish_record(self, source: str, record: dict[str, Any], key: str) -> None:
        """Publish a record known to be valid (the simulator's), skipping re-validation."""
        spec = SOURCES[source]
        self._produce(spec.topic, key.encode(), encode(record), [(topics.SOURCE_HEADER, source.encode())])
        self.summary.published[spec.topic] += 1

    def dead_letter(self, letter: DeadLetter) -> None:
        self._produce(topics.DLQ, None, encode(letter.to_dict()), [(topics.SOURCE_HEADER, letter.source.encode())])
        self.summary.dead_lettered[letter.source] += 1

    def flush(self, timeout_s: float = 120.0) -> PublishSummary:
        remaining = self.producer.flush(timeout_s)
        if remaining:
            self.summary.failed += remaining
            self.summary.errors.append(f"{remaining} records not delivered within {timeout_s:.0f}s")
        return self.summary


def _open(path: Path) -> IO[bytes]:
    """A file, transparently gunzipped when it starts with gzip's magic bytes."""
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return cast(IO[bytes], gzip.open(path, "rb")) if gzipped else path.open("rb")


def read_records(stream: IO[bytes], name: str, source: str) -> Iterator[tuple[bytes, dict[str, str | int]]]:
    """Raw records with their position, streamed line by line (JSON lines). CloudTrail's
    ``{"Records": [...]}`` delivery files are split into records, on one line or pretty-printed."""
    spec = SOURCES[source]
    lines = iter(stream)
    number = 0
    for line in lines:
        number += 1
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        if source == "cloudtrail" and line.lstrip().startswith(b"{"):
            document = _json_or_none(line)
            if document is None and number == 1:
                # Not one object per line: the whole file is one (pretty-printed) document.
                whole = line + b"\n" + b"".join(lines)
                document = _json_or_none(whole)
                if document is None:  # the whole file is the bad record: keep all of it
                    yield whole.rstrip(b"\r\n"), {"file": name, "line": number}
                    return
            if isinstance(document, dict) and "Records" in document:
                for index, record in enumerate(spec.split(document)):
                    yield encode(record), {"file": name, "line": number, "record": index}
                continue
        yield line, {"file": name, "line": number}


def _json_or_none(data: bytes) -> Any:
    try:
        return decode(data)
    except ValueError:
        return None


def iter_inputs(paths: list[str], source: str, stdin: IO[bytes]) -> Iterator[tuple[bytes, dict[str, str | int]]]:
    for path in paths:
        if path == "-":
            yield from read_records(stdin, "<stdin>", source)
        else:
            with _open(Path(path)) as stream:
                yield from read_records(stream, path, source)
