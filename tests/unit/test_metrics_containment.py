"""Containment records its Prometheus metrics (streams/metrics.py): webhook outcomes per status. The
sink's metrics are checked in tests/unit/test_sink.py."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.agents.containment import record_action
from streams.metrics import value

pytestmark = pytest.mark.unit


def test_containment_counts_each_outcome() -> None:
    sent: list[tuple[bytes, bytes]] = []

    class Topic:
        async def send(self, key: bytes, value: bytes) -> None:
            sent.append((key, value))

    action = {"action_id": "act-1", "alert_id": "alrt-1", "action": "quarantine_workload", "target": "pod:a/b"}
    before = {s: value("aiwarden_webhook_outcomes_total", outcome=s) for s in ("retrying", "delivered")}
    asyncio.run(record_action(Topic(), action, "retrying", 1))
    asyncio.run(record_action(Topic(), action, "retrying", 2))
    asyncio.run(record_action(Topic(), action, "delivered", 3))
    assert value("aiwarden_webhook_outcomes_total", outcome="retrying") == before["retrying"] + 2
    assert value("aiwarden_webhook_outcomes_total", outcome="delivered") == before["delivered"] + 1
    assert [orjson.loads(v)["status"] for _, v in sent] == ["retrying", "retrying", "delivered"]
    assert all(k == b"act-1" for k, _ in sent)
