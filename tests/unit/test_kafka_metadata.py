"""``partition_ids``: a topic's partitions from confluent-kafka metadata, or an error naming the topic."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from infra.kafka.clients import partition_ids

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
