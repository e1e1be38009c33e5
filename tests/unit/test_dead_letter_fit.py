"""A dead letter always fits its topic: cut to a prefix of the original with the original's length and
SHA-256; one record never stops the publisher; an output over its topic's limit dead-letters its input.
The broker is replaced by fakes here; tests/integration/test_dead_letters.py runs the real one."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.kafka.limits import TopicLimits
from infra.settings import Settings
from schemas.dead_letter import KAFKA_DEFAULT_MAX_MESSAGE_BYTES, DeadLetter, letter_id, record_budget
from streams import topics
from streams.pipeline.normalize import Normalization
from streams.publish import Publisher
from tests.unit.pipeline_fakes import Message, Out

pytestmark = pytest.mark.unit

FALCO = (b'{"uuid": "u-%d", "time": "2026-11-25T10:00:00.000000000Z", "rule": "Terminal shell in container", '
         b'"priority": "Notice", "source": "syscall", "output": "%s", "output_fields": {"container.id": '
         b'"3f2a9c1b7d4e", "proc.name": "bash", "proc.cmdline": "bash -i"}}')


def falco(n: int, filler: int = 0) -> bytes:
    return FALCO % (n, b"x" * filler)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=5000), st.text(max_size=3000).map(str.encode)),
       max_bytes=st.integers(min_value=4_800, max_value=9_000))
def test_a_letter_fits_and_keeps_a_prefix_with_the_whole_length_and_digest(data: bytes, max_bytes: int) -> None:
    letter = DeadLetter.of("too large", "falco", "publish", data, {"file": "f", "line": 1}, max_bytes)
    encoded = letter.encode()
    assert len(encoded) <= record_budget(max_bytes)
    kept = DeadLetter.from_dict(orjson.loads(encoded))
    assert data.startswith(kept.original())
    assert kept.truncated == (kept.original() != data)
    assert kept.raw_bytes == len(data) and kept.raw_sha256 == hashlib.sha256(data).hexdigest()
    assert kept.letter_id == letter_id("publish", "falco", {"file": "f", "line": 1}, kept.raw_sha256)


def test_escapes_multibyte_and_binary_originals_are_cut_on_whole_units() -> None:
    for data in (b"\x01" * 20_000, "é🙂".encode() * 5_000, b"\xff\xfe" * 10_000, b'"\\' * 10_000):
        letter = DeadLetter.of("r", "s", "normalize", data, {}, 8_000)
        assert letter.truncated and len(letter.encode()) <= record_budget(8_000)
        assert data.startswith(letter.original()) and len(letter.original()) > 100
        if letter.raw_encoding == "base64":
            assert base64.b64decode(letter.raw)


def test_a_two_megabyte_record_fits_the_stock_limit_and_small_ones_are_whole() -> None:
    big = b"a" * 2_000_000
    letter = DeadLetter.of("r" * 50_000, "falco", "publish", big, {"file": "f", "line": 2})
    assert letter.truncated and len(letter.reason) <= 4096
    assert record_budget(KAFKA_DEFAULT_MAX_MESSAGE_BYTES) - 2_000 < len(letter.encode()) <= record_budget(
        KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
    small = DeadLetter.of("r", "falco", "publish", b"abc", {"file": "f", "line": 3})
    assert not small.truncated and small.original() == b"abc"


class FlakyProducer:
    """Refuses produce for values containing ``refuse``; reports delivery failure for ``undeliverable``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.pending: list[tuple[Any, Any]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        if b"refuse" in value and topic != topics.DLQ:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append((topic, value))
        error = KafkaError(KafkaError.INVALID_RECORD) if b"undeliverable" in value and topic != topics.DLQ else None
        self.pending.append((on_delivery, (error, FakeMessage(topic, value))))

    def poll(self, timeout: float) -> int:
        pending, self.pending = self.pending, []
        for callback, args in pending:
            callback(*args)
        return len(pending)

    def flush(self, timeout: float) -> int:
        while self.pending:
            self.poll(0)
        return 0


class FakeMessage:
    def __init__(self, topic: str, value: bytes) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value


def test_the_publisher_goes_on_after_records_the_broker_refuses() -> None:
    producer = FlakyProducer()
    pub = Publisher(Settings(kafka={"bootstrap_servers": "unused:9092"}), producer=producer,
                    limits=TopicLimits.fixed(20_000))
    lines = [falco(0), falco(1, 30_000), falco(2).replace(b"bash -i", b"refuse"), falco(3),
             falco(4).replace(b"bash -i", b"undeliverable"), b"{not json", falco(5)]
    for n, line in enumerate(lines, 1):
        pub.publish(line, "falco", {"file": "in.jsonl", "line": n})
    summary = pub.flush()
    raw = [v for t, v in producer.sent if t == topics.RAW_RUNTIME]
    assert [orjson.loads(v)["uuid"] for v in raw] == ["u-0", "u-3", "u-4", "u-5"]  # u-4 sent, then refused
    letters = [orjson.loads(v) for t, v in producer.sent if t == topics.DLQ]
    assert sorted(x["position"]["line"] for x in letters) == [2, 3, 5, 6]
    assert all(len(orjson.dumps(x)) <= record_budget(20_000) for x in letters)
    assert summary.failed == 3 and summary.published[topics.RAW_RUNTIME] == 3
    assert [e.split(":")[1] for e in summary.errors] == ["2", "3", "5"], summary.errors
    assert "over what aiwarden.raw.runtime takes" in summary.errors[0]


def test_an_event_over_the_events_topic_limit_dead_letters_its_raw_record() -> None:
    out = Out({topics.EVENTS: 12_000, topics.DLQ: 9_000})
    stage = Normalization(Settings(), out)
    headers = [(topics.SOURCE_HEADER, b"falco")]
    stage.raw_batch([Message(falco(1), topic=topics.RAW_RUNTIME, offset=1, headers=headers),
                     Message(falco(2, 20_000), topic=topics.RAW_RUNTIME, offset=2, headers=headers),
                     Message(falco(3), topic=topics.RAW_RUNTIME, offset=3, headers=headers)])
    assert [orjson.loads(s["value"])["raw"].count("u-") for s in out.on(topics.EVENTS)] == [1, 1]
    (letter,) = [orjson.loads(s["value"]) for s in out.on(topics.DLQ)]
    assert letter["position"]["offset"] == 2 and "over what aiwarden.events takes" in letter["reason"]
    assert letter["truncated"] and letter["raw_bytes"] == len(falco(2, 20_000))


def test_only_whole_raw_records_are_replayable() -> None:
    from streams.dlq import not_replayable, raw_topic

    published = DeadLetter.of("bad", "falco", "publish", b"{}", {"file": "f", "line": 1})
    normalized = DeadLetter.of("bad", "unknown", "normalize", b"{}", {"topic": topics.RAW_CLOUD, "partition": 0,
                                                                      "offset": 9})
    detected = DeadLetter.of("bug", "events", "detect", b"{}", {"topic": topics.EVENTS, "partition": 0, "offset": 1})
    cut = DeadLetter.of("big", "falco", "publish", b"a" * 20_000, {"file": "f", "line": 2}, 9_000)
    assert (raw_topic(published), raw_topic(normalized), raw_topic(detected)) == (
        topics.RAW_RUNTIME, topics.RAW_CLOUD, None)
    assert not_replayable(published) is None and not_replayable(normalized) is None
    assert "not a raw record" in (not_replayable(detected) or "")
    assert "truncated: it keeps" in (not_replayable(cut) or "")
    unknown = DeadLetter.of("bad", "unknown", "publish", b"{}", {"file": "f", "line": 3})
    assert not_replayable(unknown) is not None  # no source, no topic to send it to


class FakeAdmin:
    """Topic configs readable for ``readable`` only; the broker's message.max.bytes is ``broker``."""

    def __init__(self, readable: dict[str, int], broker: int) -> None:
        self.readable, self.broker = readable, broker

    def describe_configs(self, resources: list[Any], request_timeout: float) -> dict[Any, Any]:
        from concurrent.futures import Future

        from confluent_kafka.admin import ConfigEntry, ResourceType  # type: ignore[attr-defined]

        futures = {}
        for resource in resources:
            future: Future[Any] = Future()
            if resource.restype == ResourceType.BROKER:
                future.set_result({"message.max.bytes": ConfigEntry("message.max.bytes", str(self.broker))})
            elif resource.name in self.readable:
                value = str(self.readable[resource.name])
                future.set_result({"max.message.bytes": ConfigEntry("max.message.bytes", value)})
            else:
                future.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
            futures[resource] = future
        return futures

    def list_topics(self, timeout: float) -> Any:
        return type("Metadata", (), {"brokers": {3: None, 1: None}})()


def test_topic_limits_fall_back_to_the_broker_and_cap_at_what_the_producer_sends() -> None:
    limits = TopicLimits(None, [topics.DLQ, topics.EVENTS], admin=FakeAdmin({topics.DLQ: 500_000}, 3_000_000))
    assert limits.max_bytes(topics.DLQ) == 500_000
    assert limits.max_bytes(topics.EVENTS) == 3_000_000 == limits.client_max  # the topic's own config unreadable
    assert limits.budget(topics.DLQ) == record_budget(500_000)
    tight = TopicLimits(None, [topics.DLQ], admin=FakeAdmin({topics.DLQ: 2_000_000, "big": 9_000_000}, 1_000))
    assert tight.max_bytes("big") == 2_000_000  # read later: capped by the producer's message.max.bytes
