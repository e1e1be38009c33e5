"""Hostile input on every raw topic, straight onto Kafka (no publisher checks): the hostile corpus and
hypothesis mutations of valid records. The worker must not crash; every record must end up where
normalization sends it, once: a dead letter at its topic/partition/offset with the reason normalization
gives, or (for the few that are valid after all) an event. Then a simulated run must still pass the
invariants of ``invariants.py`` on the same worker."""

from __future__ import annotations

import base64
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings

from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.codec import Limits, RecordError
from schemas.sources import normalize_bytes
from streams import topics
from streams.worker_process import new_app_id
from tests.fixtures.hostile import MAX_DEPTH, MAX_RECORD_BYTES, MAX_STRING_CHARS, Hostile, corpus, hostile_records
from tests.integration.invariants import Feeder, Pipeline, Run, wait_until

pytestmark = pytest.mark.integration

LIMITS = Limits(MAX_RECORD_BYTES, MAX_DEPTH, MAX_STRING_CHARS)
INGEST = {"AIWARDEN_INGEST__MAX_RECORD_BYTES": str(MAX_RECORD_BYTES), "AIWARDEN_INGEST__MAX_DEPTH": str(MAX_DEPTH),
          "AIWARDEN_INGEST__MAX_STRING_CHARS": str(MAX_STRING_CHARS), "AIWARDEN_INGEST__PROMPT_CHARS": "256"}


def generated(examples: int) -> list[Hostile]:
    """``examples`` records drawn from the hypothesis strategy (deterministic)."""
    drawn: list[Hostile] = []

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_records())
    def collect(hostile: Hostile) -> None:
        drawn.append(hostile)

    collect()
    return drawn


def expected(data: bytes, source: str | None) -> tuple[str, str]:
    """("dlq", reason) or ("event", event id): what the worker must do with the record."""
    try:
        return "event", normalize_bytes(data, source or None, limits=LIMITS, prompt_chars=256).event_id
    except RecordError as exc:
        return "dlq", exc.reason


def produce_everywhere(settings_: Settings, records: list[Hostile]) -> dict[tuple[str, int, int], Hostile]:
    """Each record on every raw topic; returns what landed at each (topic, partition, offset)."""
    producer = Producer(confluent_config(settings_, **{"enable.idempotence": True, "linger.ms": 20}))
    placed: dict[tuple[str, int, int], Hostile] = {}
    errors: list[str] = []

    def delivered(err: Any, message: Any, record: Hostile) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            placed[(message.topic(), message.partition(), message.offset())] = record

    for record in records:
        _, data, source = record
        headers = [(topics.SOURCE_HEADER, source.encode())] if source is not None else None
        for topic in topics.RAW_TOPICS:
            producer.produce(topic, data, headers=headers,
                             on_delivery=lambda err, msg, r=record: delivered(err, msg, r))  # type: ignore[misc]
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors
    return placed


def test_hostile_input_is_dead_lettered_and_the_worker_keeps_going(
        service_settings: Settings, ch: Any, tmp_path: Path) -> None:
    records = [*corpus(), *generated(150)]
    run = Run.simulate(seed=96, duration_s=30, rate=100, scenarios=("model_server_shell",))
    pipeline = Pipeline(service_settings, ch, new_app_id(service_settings, "fault-hostile"), run)
    started_ms = int(time.time() * 1000) - 60_000
    with pipeline:
        pipeline.start_worker(tmp_path / "w1.log", **INGEST)
        placed = produce_everywhere(service_settings, records)
        want = {position: expected(data, source) for position, (_, data, source) in placed.items()}
        letters_wanted = {p for p, (where, _) in want.items() if where == "dlq"}
        query = ("SELECT position['topic'] AS t, toInt64(position['partition']) AS p, "
                 "toInt64(position['offset']) AS o, reason, raw, raw_encoding FROM aiwarden.dead_letters "
                 "WHERE stage = 'normalize' AND time_ms >= {since:Int64} AND position['topic'] IN {raw:Array(String)}")
        window = {"since": started_ms, "raw": list(topics.RAW_TOPICS)}

        def letters() -> dict[tuple[str, int, int], list[dict[str, Any]]]:
            found: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
            for row in ch.query(query, parameters=window).named_results():
                found.setdefault((row["t"], row["p"], row["o"]), []).append(row)
            return found

        wait_until(lambda: letters_wanted <= set(letters()), 180, f"{len(letters_wanted)} dead letters",
                   pipeline.workers, detail=lambda: f"have {len(letters_wanted & set(letters()))}")
        found = letters()
        event_ids = sorted({value for where, value in want.values() if where == "event"})
        # The same record on three topics is one event; ids never sent there must not appear.
        if event_ids:
            wait_until(lambda: ch.query("SELECT uniqExact(event_id) FROM aiwarden.events WHERE event_id IN "
                                        "{ids:Array(String)}", parameters={"ids": event_ids}).result_rows[0][0]
                       == len(event_ids), 120, f"{len(event_ids)} accepted hostile records as events",
                       pipeline.workers)
        # The worker is still healthy: a normal run after the hostile one passes every invariant.
        feeder = Feeder(service_settings, run, 5)
        feeder.start()
        outcome, settled_s = pipeline.complete(feeder, time.monotonic())
    wrong = []
    for position in letters_wanted:
        rows = found[position]
        _, data, _ = placed[position]
        original = [base64.b64decode(r["raw"]) if r["raw_encoding"] == "base64" else r["raw"].encode() for r in rows]
        if len(rows) != 1 or rows[0]["reason"] != want[position][1] or original[0] != data:
            wrong.append((position, placed[position][0], [r["reason"] for r in rows], want[position][1]))
    stray = set(found) - letters_wanted
    kinds = Counter("corpus" if kind.endswith(".bin") else kind for kind, _, _ in records)
    print(f"\nFAULT hostile input: {len(records)} records x {len(topics.RAW_TOPICS)} raw topics = {len(placed)}; "
          f"kinds {dict(kinds)}; dead-lettered {len(letters_wanted)}, accepted as events {len(event_ids)} distinct; "
          f"then a normal run settled in {settled_s:.1f}s: {outcome.summary()}")
    assert not wrong, f"dead letters missing, doubled or with another reason: {wrong[:5]}"
    assert not stray, f"dead letters for records that normalize: {sorted(stray)[:5]}"
