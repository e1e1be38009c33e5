"""``partition_ids``: a topic's partitions from confluent-kafka metadata, or an error naming the topic;
``watermarks``: a partition's offsets, waiting out a leader election."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from infra.kafka.clients import partition_ids
from infra.kafka.lag import watermarks

pytestmark = pytest.mark.unit


class Client:
    def __init__(self, topics: dict[str, Any]) -> None:
        self.topics = topics

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics=self.topics)


def test_partitions_are_listed_in_order() -> None:
    client = Client({"aiwarden.alerts": SimpleNamespace(error=None, partitions={3: 0, 0: 0, 2: 0, 1: 0})})
    assert partition_ids(client, "aiwarden.alerts") == [0, 1, 2, 3]


@pytest.mark.parametrize("metadata", [None, SimpleNamespace(error=SimpleNamespace(str=lambda: "Unknown topic"),
                                                            partitions={}),
                                      SimpleNamespace(error=None, partitions={})])
def test_a_missing_topic_is_an_error_naming_it(metadata: Any) -> None:
    client = Client({} if metadata is None else {"aiwarden.alerts": metadata})
    with pytest.raises(RuntimeError, match=r"topic aiwarden.alerts: .*aiwarden migrate"):
        partition_ids(client, "aiwarden.alerts")


class Electing:
    """A consumer whose partition has no leader for its first ``calls`` watermark reads."""

    def __init__(self, calls: int, code: int = KafkaError.LEADER_NOT_AVAILABLE) -> None:
        self.calls, self.code = calls, code

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]:
        if self.calls > 0:
            self.calls -= 1
            raise KafkaException(KafkaError(self.code))
        return 3, 42


def test_watermarks_wait_out_a_leader_election() -> None:
    consumer = Electing(2)
    assert watermarks(consumer, "aiwarden.alerts", 0, timeout_s=5) == (3, 42) and consumer.calls == 0


def test_watermarks_raise_what_is_not_an_election_or_lasts_too_long() -> None:
    with pytest.raises(KafkaException):
        watermarks(Electing(1, KafkaError.TOPIC_AUTHORIZATION_FAILED), "aiwarden.alerts", 0, timeout_s=5)
    with pytest.raises(KafkaException):
        watermarks(Electing(10**6), "aiwarden.alerts", 0, timeout_s=0.3)
