"""Producers: publish raw source records to the raw topics with confluent-kafka.

Records are validated and normalized before they are sent, only to route them (topic, key =
primary entity id) and to catch bad input early: the raw bytes are what is published. A record
that fails goes to ``aiwarden.dlq`` with its reason and file/line; nothing is dropped silently, and
one record never stops a run (see ``Publisher``).
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from infra.kafka.clients import confluent_config
from infra.kafka.limits import TopicLimits
from infra.settings import Settings
from schemas.codec import Limits, RecordError, decode, encode
from schemas.dead_letter import DeadLetter
from schemas.sources import DOCUMENT_SOURCES, SOURCES, normalize_bytes, split_report
from streams import topics

Headers = list[tuple[str, str | bytes | None]]


class PublishError(RuntimeError):
    """The broker is unreachable, a topic is missing, or the producer cannot go on (a fatal error)."""


MAX_LISTED = 20  # failures listed by position in the summary (all are counted)


@dataclass
class PublishSummary:
    published: Counter[str] = field(default_factory=Counter)  # per topic
    dead_lettered: Counter[str] = field(default_factory=Counter)  # per source
    failed: int = 0  # records neither published nor dead-lettered for their content (see Publisher)
    errors: list[str] = field(default_factory=list)  # the first failures, with their position
    truncated_letters: int = 0  # dead letters whose original was cut to fit the topic

    @property
    def total(self) -> int:
        return sum(self.published.values()) + sum(self.dead_lettered.values())

    def fail(self, position: dict[str, str | int] | None, reason: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append(f"{where(position)}: {reason}" if position else reason)


def where(position: dict[str, str | int]) -> str:
    """``file:line`` (``[record]``) or ``topic[partition]@offset`` or the pairs as they are."""
    if "file" in position:
        record = f"[{position['record']}]" if "record" in position else ""
        return f"{position['file']}:{position.get('line', '?')}{record}"
    if "topic" in position:
        return f"{position['topic']}[{position.get('partition', '?')}]@{position.get('offset', '?')}"
    return ", ".join(f"{k}={v}" for k, v in position.items())


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


def headers_size(headers: Headers | None) -> int:
    return sum(len(k) + len(v or b"") for k, v in headers) if headers else 0


class Publisher:
    """An idempotent, batching, compressing producer for raw records and dead letters.

    One record never stops a run. A record whose content is refused (it does not parse, it is over the
    ingest limits) is dead-lettered; a record the broker cannot take (over the topic's
    ``max.message.bytes``, a produce or delivery error that is not retriable) is dead-lettered too and
    counted in ``summary.failed`` with its position. Dead letters are cut to fit ``aiwarden.dlq``."""

    def __init__(self, settings: Settings, producer: Any = None, limits: TopicLimits | None = None,
                 **overrides: Any) -> None:
        """``producer`` replaces the confluent-kafka producer and ``limits`` the topic limits read from the
        broker (unit tests); ``overrides`` are librdkafka settings."""
        self.settings = settings
        self.limits = limits_of(settings)
        self.topic_limits = limits if limits is not None else TopicLimits(settings, (*topics.RAW_TOPICS, topics.DLQ))
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
                "message.max.bytes": self.topic_limits.client_max,
                **overrides,
            },
        )
        self.producer = producer if producer is not None else Producer(config)
        self.summary = PublishSummary()
        self._refused: list[tuple[bytes, str, dict[str, str | int], str]] = []  # (data, source, position, reason)
        # Told of every delivery report of the records produced while it is set (``aiwarden ingest`` sets one
        # per request, to answer only once Kafka confirmed them all).
        self.delivery_observer: Callable[[KafkaError | None, Any], None] | None = None
        # A record Kafka did not confirm is dead-lettered (publish from files); a collector whose sender
        # retries (HTTP ingest, SQS) turns this off and only counts the failure.
        self.dead_letter_undelivered = True

    def _delivered(self, position: dict[str, str | int], source: str,
                   observer: Callable[[KafkaError | None, Any], None] | None, err: KafkaError | None,
                   message: Any) -> None:
        if observer is not None:
            observer(err, message)
        if err is None:
            return
        reason = f"{message.topic()} refused it: {err.str()}"
        if message.topic() == topics.DLQ:
            self.summary.fail(position, f"dead letter not delivered ({reason})")
        elif not self.dead_letter_undelivered:
            self.summary.published[message.topic()] -= 1
            self.summary.fail(position, reason)
        else:  # dead-lettered once the callback returns (see _drain)
            self.summary.published[message.topic()] -= 1
            self._refused.append((message.value() or b"", source, position, reason))

    def _drain(self) -> None:
        refused, self._refused = self._refused, []
        for data, source, position, reason in refused:
            self.summary.fail(position, reason)
            self.dead_letter(DeadLetter.of(reason, source, "publish", data, position,
                                           self.topic_limits.max_bytes(topics.DLQ)))

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers,
                 position: dict[str, str | int], source: str) -> bool:
        """Queue one record; False (with the failure recorded) when the producer refuses it outright."""
        callback = partial(self._delivered, position, source, self.delivery_observer)
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=callback)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.fatal():
                    msg = f"the producer failed for good at {where(position)}: {error.str()}"
                    raise PublishError(msg) from None
                reason = f"{topic} refused it: {error.str() if isinstance(error, KafkaError) else error}"
                if topic == topics.DLQ:
                    self.summary.fail(position, f"dead letter not produced ({reason})")
                else:
                    self._refused.append((value, source, position, reason))
                    self._drain()
                return False
        self.producer.poll(0)
        if self._refused:
            self._drain()
        return True

    def publish(self, data: bytes, source: str | None, position: dict[str, str | int]) -> bool:
        """Validate and publish one raw record; a bad one is dead-lettered. True if published."""
        try:
            event = normalize_bytes(data, source, limits=self.limits, prompt_chars=0)
        except RecordError as exc:
            self.dead_letter(DeadLetter.of(exc.reason, source or "unknown", "publish", data, position,
                                           self.topic_limits.max_bytes(topics.DLQ)))
            return False
        spec = SOURCES[event.source]
        key = event.entity_id.encode()
        headers: Headers = [(topics.SOURCE_HEADER, event.source.encode())]
        size = len(data) + len(key) + headers_size(headers)
        budget = self.topic_limits.budget(spec.topic)
        if size > budget:
            reason = (f"record of {len(data)} bytes is over what {spec.topic} takes ({budget} bytes for a record "
                      f"under its max.message.bytes {self.topic_limits.max_bytes(spec.topic)})")
            self._refused.append((data, event.source, position, reason))
            self._drain()
            return False
        if not self._produce(spec.topic, key, data, headers, position, event.source):
            return False
        self.summary.published[spec.topic] += 1
        return True

    def publish_record(self, source: str, record: dict[str, Any], key: str) -> None:
        """Publish a record known to be valid (the simulator's), skipping re-validation."""
        spec = SOURCES[source]
        if self._produce(spec.topic, key.encode(), encode(record), [(topics.SOURCE_HEADER, source.encode())],
                         {"record": key}, source):
            self.summary.published[spec.topic] += 1

    def dead_letter(self, letter: DeadLetter) -> None:
        headers: Headers = [(topics.SOURCE_HEADER, letter.source.encode())]
        if self._produce(topics.DLQ, None, letter.encode(), headers, letter.position, letter.source):
            self.summary.dead_lettered[letter.source] += 1
            self.summary.truncated_letters += letter.truncated

    def flush(self, timeout_s: float = 120.0) -> PublishSummary:
        """Wait for every queued record and dead letter (and the dead letters of records refused meanwhile)."""
        while True:
            remaining = self.producer.flush(timeout_s)
            if not self._refused:
                break
            self._drain()
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
    ``{"Records": [...]}`` delivery files are split into records, on one line or pretty-printed; scanner
    reports (``DOCUMENT_SOURCES``) into one record per package (see ``read_reports``)."""
    if source in DOCUMENT_SOURCES:
        yield from read_reports(stream.read(), name, source)
        return
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


def read_reports(data: bytes, name: str, source: str) -> Iterator[tuple[bytes, dict[str, str | int]]]:
    """The package records of whole scanner reports: one JSON document (pretty-printed or not), or one report
    per line. A document that does not parse is one bad record, kept whole for its dead letter."""
    documents: list[tuple[int, bytes]] = [(1, data.strip())]
    if _json_or_none(data) is None:
        lines = data.split(b"\n")
        if _json_or_none(lines[0]) is not None:  # JSON lines: one report each
            documents = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    for number, document in documents:
        if not document:
            continue
        for index, record in enumerate(split_report(document, source)):
            yield record, {"file": name, "line": number, "record": index}


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
