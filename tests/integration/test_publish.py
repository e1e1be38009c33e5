"""`aiwarden publish` on the real broker: a mixed file with 1% malformed records; every good record
on its topic with its entity key, every bad one in the DLQ with its reason and line, counts exact."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.sources import SOURCES
from streams import topics
from streams.simulator import SimConfig, Simulator
from streams.worker_process import settings_env

pytestmark = pytest.mark.integration

MALFORMED = (
    b'{"time": "2026-11-25T10:00:00Z", "rule": ',  # truncated
    b'{"schemaType": "ModelInvocationLog", "timestamp": 5}',  # wrong type, missing fields
    b"\xff\xfe\x00binary",  # not UTF-8
    b'{"a": ' + b"[" * 60 + b"]" * 60 + b"}",  # too deep
    b'{"Records": "not a list", "eventVersion": "1.09"}',
)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer(confluent_config(settings, **{"group.id": "offsets-probe"}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    finally:
        consumer.close()


def read_from(settings: Settings, topic: str, start: dict[int, int]) -> list[tuple[int, bytes | None, bytes, dict]]:
    end = end_offsets(settings, topic)
    consumer = Consumer(confluent_config(settings, **{"group.id": f"probe-{uuid.uuid4().hex}"}))
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in end])
    out = []
    remaining = sum(end[p] - start.get(p, 0) for p in end)
    try:
        while remaining > 0:
            for message in consumer.consume(1000, timeout=5):
                assert message.error() is None, message.error()
                if message.offset() < end[message.partition()]:
                    out.append((message.partition(), message.key(), message.value(), dict(message.headers() or [])))
                    remaining -= 1
    finally:
        consumer.close()
    return out


def test_mixed_file_with_one_percent_malformed(service_settings: Settings, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    simulated = [r for r in Simulator(SimConfig(seed=int(run, 16) % 1000, duration_s=20, rate=200,
                                                start_ms=1_700_000_000_000)).records() if r.source == "gateway"]
    good = [orjson.dumps({**r.record, "request_id": f"{r.record['request_id']}-{run}"}) for r in simulated][:495]
    lines = list(good)
    bad_lines = {}
    for i, bad in enumerate(MALFORMED):
        position = (i + 1) * 90
        lines.insert(position, bad)
        bad_lines[position + 1] = bad
    path = tmp_path / "mixed.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    assert len(lines) == 500 and len(bad_lines) == 5  # 1% malformed

    before = {t: end_offsets(service_settings, t) for t in (topics.RAW_INFERENCE, topics.DLQ)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env.update(settings_env(service_settings))
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "publish", "--source", "gateway", str(path)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "495" in result.stdout and "aiwarden.dlq (gateway)" in result.stdout

    published = read_from(service_settings, topics.RAW_INFERENCE, before[topics.RAW_INFERENCE])
    mine = [p for p in published if run.encode() in p[2]]
    assert sorted(p[2] for p in mine) == sorted(good)
    for _partition, key, value, headers in mine:
        record = orjson.loads(value)
        assert key == SOURCES["gateway"].primary_key(record).encode()
        assert headers[topics.SOURCE_HEADER] == b"gateway"
    # One entity, one partition.
    by_key: dict[bytes | None, set[int]] = {}
    for partition, key, _value, _headers in mine:
        by_key.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_key.values())

    letters = [orjson.loads(v) for _, _, v, _ in read_from(service_settings, topics.DLQ, before[topics.DLQ])]
    letters = [d for d in letters if d["position"].get("file") == str(path)]
    assert sorted(d["position"]["line"] for d in letters) == sorted(bad_lines)
    for letter in letters:
        assert letter["reason"] and letter["stage"] == "publish" and letter["source"] == "gateway"
        original = bad_lines[letter["position"]["line"]]
        if letter["raw_encoding"] == "base64":
            import base64

            assert base64.b64decode(letter["raw"]) == original
        else:
            assert letter["raw"].encode() == original


def test_unreachable_broker_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text('{"time": "2026-11-25T10:00:00Z"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env["AIWARDEN_KAFKA__BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
    env["AIWARDEN_CLICKHOUSE__URL"] = "http://127.0.0.1:1"
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "publish", "--source", "gateway", str(path)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "unreachable" in result.stderr
    assert "published" not in result.stdout
