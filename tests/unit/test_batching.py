"""Batch processing in the agents: per-batch table state written once per changed key on the right
partition, failing code leaving no half-made state, bad events dead-lettered without stopping the
batch, replayed findings not duplicating alerts. Faust itself is replaced by plain objects with the
few methods the batch code uses (a topic's ``send``, a table's ``get``/``send_changelog``/``data``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from infra.settings import Settings
from schemas.codec import encode
from schemas.envelope import Event
from streams.agents.batching import TableBatch, load_state
from streams.agents.detect import Correlation, Detection
from tests.contract.events import T0, mixed_stream, runtime

pytestmark = pytest.mark.unit


class Topic:
    """A topic that records what is sent to it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, key: bytes | None = None, value: bytes | None = None, headers: Any = None) -> None:
        self.sent.append({"key": key, "value": value, "headers": headers})


class Changelog:
    """A table's changelog topic: records (partition, key) per record sent."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    async def send(self, *, key: str, value: Any, partition: int, **options: Any) -> None:
        self.records.append((partition, key))


class Table(dict[str, Any]):
    """A Faust table's surface: reads, the store (``data``), its changelog topic and serializers."""

    key_serializer = value_serializer = "json"

    def __init__(self) -> None:
        super().__init__()
        self.changelog_topic = Changelog()

    @property
    def data(self) -> Table:
        return self

    @property
    def changelog(self) -> list[tuple[int, str]]:
        return self.changelog_topic.records

    def _on_changelog_sent(self, fut: Any) -> None:
        pass


def record(value: bytes, key: bytes, partition: int = 0, offset: int = 0, topic: str = "aiwarden.events",
           headers: Any = None) -> SimpleNamespace:
    """A Faust event: ``value`` and ``message`` (topic, partition, offset, key, value, headers, timestamp)."""
    message = SimpleNamespace(topic=topic, partition=partition, offset=offset, key=key, value=value,
                              headers=headers or [], timestamp=time.time())
    return SimpleNamespace(value=value, message=message)


def drive(batch: Coroutine[Any, Any, None]) -> None:
    """Run one batch coroutine to its end."""
    asyncio.run(batch)


def flushed(batch: TableBatch) -> int:
    """``batch.flush()`` run to its end: the number of keys written."""
    return asyncio.run(batch.flush())


def event_record(event: Event, partition: int = 0, offset: int = 0) -> SimpleNamespace:
    return record(encode(event), event.entity_id.encode(), partition, offset)


def miner(i: int, container: str = "3f2a9c1b7d4e5f60718293a4") -> Event:
    return runtime("dns_query", t=T0 + i * 1000, seq=i, container=container, dst_host="pool.supportxmr.com")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def detection(settings: Settings) -> tuple[Detection, dict[str, Any]]:
    parts: dict[str, Any] = {"findings": Topic(), "inventory": Topic(), "rekey": Topic(), "dlq": Topic(),
                             "states": Table(), "assets": Table(), "models": Table()}
    return Detection(settings, **parts), parts


# --- TableBatch ------------------------------------------------------------------------------------


def test_changed_keys_are_written_once_per_batch_on_the_partition_that_touched_them() -> None:
    table = Table()
    table["kept"] = {"n": 1}
    batch = TableBatch(table)
    for _ in range(50):
        batch.get("a", 2)["n"] = batch.get("a", 2).get("n", 0) + 1
    batch.get("b", 3)["seen"] = True
    batch.get("kept", 1)  # read, not changed
    assert flushed(batch) == 2
    assert sorted(table.changelog) == [(2, "a"), (3, "b")]
    assert table["a"] == {"n": 50} and table["kept"] == {"n": 1}
    assert flushed(TableBatch(table)) == 0 and len(table.changelog) == 2  # nothing new: nothing written


def test_state_is_a_private_copy_until_flushed() -> None:
    table = Table()
    table["a"] = {"xs": [1]}
    batch = TableBatch(table)
    batch.get("a", 0)["xs"].append(2)
    assert table["a"] == {"xs": [1]}
    flushed(batch)
    assert table["a"] == {"xs": [1, 2]}
    assert load_state(None) == ({}, b"{}")


def test_guarded_state_is_restored_when_the_block_raises() -> None:
    table = Table()
    batch = TableBatch(table)
    batch.get("a", 0)["n"] = 1
    with pytest.raises(RuntimeError), batch.guarded("a", 0) as state:
        state["n"] = 99
        state["half"] = "made"
        raise RuntimeError("detector bug")
    assert batch.get("a", 0) == {"n": 1}
    flushed(batch)
    assert table["a"] == {"n": 1} and table.changelog == [(0, "a")]


# --- detection ------------------------------------------------------------------------------------


def test_a_batch_writes_each_detector_state_once(settings: Settings) -> None:
    detect, parts = detection(settings)
    drive(detect.events_batch([event_record(miner(i), offset=i) for i in range(40)]))
    findings = [orjson.loads(sent["value"]) for sent in parts["findings"].sent]
    assert [f["detector"] for f in findings] == ["cryptominer"]  # rate-limited per window, as one by one
    keys = [key for _, key in parts["states"].changelog]
    assert len(keys) == len(set(keys)) and "cryptominer|container:3f2a9c1b7d4e" in keys
    assert {partition for partition, _ in parts["states"].changelog} == {0}
    assert parts["dlq"].sent == []


def test_same_results_batched_as_one_by_one(settings: Settings) -> None:
    records = [event_record(e, offset=i) for i, e in enumerate(mixed_stream(seed=3, n=600))]
    batched, parts = detection(settings)
    for start in range(0, len(records), 200):
        drive(batched.events_batch(records[start:start + 200]))
    single, one_parts = detection(settings)
    for one in records:
        drive(single.events_batch([one]))
    for name in ("findings", "inventory", "rekey", "dlq"):
        assert parts[name].sent == one_parts[name].sent, name
    assert parts["findings"].sent
    for name in ("states", "assets"):
        assert dict(parts[name]) == dict(one_parts[name])
        assert len(parts[name].changelog) < len(one_parts[name].changelog), name
    assert len(parts["states"].changelog) < len(one_parts["states"].changelog) / 2


def test_a_detector_exception_dead_letters_that_event_only(settings: Settings,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    detect, parts = detection(settings)
    cryptominer = detect.by_id["cryptominer"]
    real = cryptominer.detect
    bad = miner(5, container="cccccccccccc")

    def flaky(event: Event, state: dict[str, Any]) -> Any:
        if event.event_id == bad.event_id:
            state["poisoned"] = True
            raise ValueError("boom")
        return real(event, state)

    monkeypatch.setattr(cryptominer, "detect", flaky)
    drive(detect.events_batch([event_record(bad, offset=0), event_record(miner(6), offset=1),
                               record(b"not json", b"k", offset=2)]))
    letters = [orjson.loads(sent["value"]) for sent in parts["dlq"].sent]
    assert [letter["stage"] for letter in letters] == ["detect", "detect"]
    assert "boom" in letters[0]["reason"] and "not an aiwarden event" in letters[1]["reason"]
    assert [orjson.loads(s["value"])["detector"] for s in parts["findings"].sent] == ["cryptominer"]
    assert all("poisoned" not in state for state in parts["states"].values())


def test_model_checkpoints_use_the_batch_partitions(settings: Settings) -> None:
    detect, parts = detection(settings)
    detect.checkpoints.interval_s = 0
    drive(detect.events_batch([event_record(miner(1), partition=1), event_record(miner(2), partition=3)]))
    written = parts["models"].changelog
    assert written and {p for p, _ in written} == {1, 3}
    assert all(key.endswith(f"|{p}") for p, key in written)


# --- correlation ----------------------------------------------------------------------------------


def test_replayed_findings_do_not_duplicate_alerts(settings: Settings) -> None:
    detect, parts = detection(settings)
    drive(detect.events_batch([event_record(miner(1))]))
    finding = parts["findings"].sent[0]
    alerts, dlq, table = Topic(), Topic(), Table()
    correlation = Correlation(settings, alerts=alerts, dlq=dlq, states=table)
    as_record = record(finding["value"], finding["key"], topic="aiwarden.findings")
    drive(correlation.findings_batch([as_record, as_record]))
    drive(correlation.findings_batch([as_record]))
    assert len(alerts.sent) == 1 and len(table.changelog) == 1
    drive(correlation.findings_batch([record(b"{}", b"k", topic="aiwarden.findings")]))
    assert len(dlq.sent) == 1 and orjson.loads(dlq.sent[0]["value"])["stage"] == "correlate"
