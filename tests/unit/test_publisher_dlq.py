"""The publisher's routing, with a fake in place of the Kafka producer (the real broker is in
tests/integration/test_publish.py): good records to their raw topic keyed by entity, junk to the DLQ
with a reason, nothing dropped."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.kafka.limits import TopicLimits
from infra.settings import Settings
from schemas.sources import SOURCES
from streams import topics
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator

pytestmark = pytest.mark.unit


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, dict[str, Any]]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        self.sent.append((topic, key, value, dict(headers)))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def publisher() -> Publisher:
    return Publisher(Settings(kafka={"bootstrap_servers": "unused:9092"}), producer=FakeProducer(),
                     limits=TopicLimits.fixed())


def test_good_records_go_to_their_topic_keyed_by_entity() -> None:
    pub = publisher()
    records = list(Simulator(SimConfig(seed=3, duration_s=20, rate=100, start_ms=1_764_000_000_000)).records())
    for r in records:
        assert pub.publish(orjson.dumps(r.record), r.source, {"file": "sim", "line": 0})
    sent = pub.producer.sent  # type: ignore[attr-defined]
    assert len(sent) == len(records)
    for (topic, key, value, headers), r in zip(sent, records, strict=True):
        assert topic == SOURCES[r.source].topic
        assert key == SOURCES[r.source].primary_key(r.record).encode()
        assert headers[topics.SOURCE_HEADER] == r.source.encode()
        assert orjson.loads(value) == r.record


@settings(max_examples=200, deadline=None)
@given(junk=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
       source=st.sampled_from([*SOURCES, None]))
def test_junk_is_dead_lettered_with_a_reason_never_dropped(junk: bytes, source: str | None) -> None:
    pub = publisher()
    published = pub.publish(junk, source, {"file": "junk", "line": 7})
    (topic, _key, value, _headers), = pub.producer.sent  # type: ignore[attr-defined]
    if published:
        assert topic in topics.RAW_TOPICS
    else:
        letter = orjson.loads(value)
        assert topic == topics.DLQ
        assert letter["reason"] and letter["stage"] == "publish"
        assert letter["position"] == {"file": "junk", "line": 7}
        assert sum(pub.summary.dead_lettered.values()) == 1
