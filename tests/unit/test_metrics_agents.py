"""The agents' Prometheus metrics: a processed batch counts events in per source, dead letters per
stage, findings per detector, alerts per leading detector, and one stage latency per batch."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from infra.settings import Settings
from streams import topics
from streams.metrics import value
from streams.pipeline.correlate import Correlation
from streams.pipeline.normalize import Normalization
from tests.unit.pipeline_fakes import Message, Out, event_message, memory_store
from tests.unit.test_stages import detection, miner

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def test_normalize_counts_events_dead_letters_and_latency(tmp_path: Path) -> None:
    lines = (FIXTURES / "falco" / "falcosecurity_events.jsonl").read_bytes().splitlines()[:3]
    headers = [("aiwarden-source", b"falco")]
    batch = [Message(line, b"k", offset=i, topic="aiwarden.raw.runtime", headers=headers)
             for i, line in enumerate(lines)]
    batch.append(Message(b"{not json", b"k", offset=9, topic="aiwarden.raw.runtime", headers=headers))
    out = Out()
    before = (value("aiwarden_events_in_total", source="falco"),
              value("aiwarden_dead_letters_total", stage="normalize"),
              value("aiwarden_stage_latency_seconds_count", stage="normalize"))
    Normalization(Settings(state_dir=tmp_path), out).raw_batch(batch)
    assert len(out.on(topics.EVENTS)) == 3 and len(out.on(topics.DLQ)) == 1
    assert value("aiwarden_events_in_total", source="falco") == before[0] + 3
    assert value("aiwarden_dead_letters_total", stage="normalize") == before[1] + 1
    assert value("aiwarden_stage_latency_seconds_count", stage="normalize") == before[2] + 1  # one per batch


def test_detect_and_correlate_count_findings_alerts_and_latency(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    detect, out, _ = detection(settings)
    findings = value("aiwarden_findings_total", detector="cryptominer")
    detect_latency = value("aiwarden_stage_latency_seconds_count", stage="detect")
    detect.events_batch([event_message(miner(i), offset=i) for i in range(3)])
    assert value("aiwarden_findings_total", detector="cryptominer") == findings + 1
    assert value("aiwarden_stage_latency_seconds_count", stage="detect") == detect_latency + 1

    alerts = value("aiwarden_alerts_total", detector="cryptominer")
    dead = value("aiwarden_dead_letters_total", stage="correlate")
    correlate_latency = value("aiwarden_stage_latency_seconds_count", stage="correlate")
    sent = out.on(topics.FINDINGS)[0]
    correlated = Out()
    correlation = Correlation(settings, correlated, states=memory_store("correlation"))
    correlation.findings_batch([Message(sent["value"], sent["key"], topic="aiwarden.findings"),
                                Message(b"[]", b"k", offset=1, topic="aiwarden.findings")])
    assert orjson.loads(correlated.on(topics.ALERTS)[0]["value"])["detectors"] == ["cryptominer"]
    assert value("aiwarden_alerts_total", detector="cryptominer") == alerts + 1
    assert value("aiwarden_dead_letters_total", stage="correlate") == dead + 1
    assert value("aiwarden_stage_latency_seconds_count", stage="correlate") == correlate_latency + 1
