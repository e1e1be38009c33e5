"""What the stages share: dead letters, per-batch metrics, the ``Out`` they produce through.

Stages receive confluent-kafka ``Message`` objects (``value()``, ``key()``, ``topic()``,
``partition()``, ``offset()``, ``headers()``, ``timestamp()``) and produce through an ``Out``:
inside the engine, the open Kafka transaction; in unit tests, a list. An output over its topic's
limit is refused by ``Out.send`` (``OversizedOutput``) and its input dead-lettered by the stage.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from schemas.codec import encode
from schemas.dead_letter import DeadLetter, record_budget
from streams.metrics import DEAD_LETTERS, STAGE_LATENCY


class Out(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        """Produce one record; ``OversizedOutput`` when it is over what ``topic`` takes."""

    def max_bytes(self, topic: str) -> int:
        """``topic``'s max.message.bytes (as read from the broker)."""


class OversizedOutput(ValueError):
    """A stage's output is over what its topic takes: the input behind it is dead-lettered instead."""


def check_fits(topic: str, key: bytes | None, value: bytes | None, headers: Any, max_message_bytes: int) -> None:
    """Raise ``OversizedOutput`` when a record is over ``record_budget(max_message_bytes)``: refused
    before it is produced, it never fails the open transaction."""
    size = len(value or b"") + len(key or b"")
    if headers:
        size += sum(len(k) + len(v or b"") for k, v in headers)
    budget = record_budget(max_message_bytes)
    if size > budget:
        msg = (f"output of {size} bytes is over what {topic} takes ({budget} bytes for a record under its "
               f"max.message.bytes {max_message_bytes})")
        raise OversizedOutput(msg)


def dead_letter(out: Out, dlq: str, message: Any, reason: str, source: str, stage: str) -> None:
    """Send a consumed ``message`` to the dead-letter topic: its original bytes (their first part when
    the whole would not fit the topic), position and ``reason``."""
    position = {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}
    value, key = message.value(), message.key()
    letter = DeadLetter.of(reason, source, stage, value if value is not None else b"", position,
                           out.max_bytes(dlq) - len(key or b""))
    out.send(dlq, key, encode(letter.to_dict()))
    DEAD_LETTERS.labels(stage).inc()


def observe_latency(stage: str, messages: Sequence[Any], now: float | None = None) -> None:
    """``STAGE_LATENCY`` once per batch: from the oldest record's Kafka timestamp to now (an upper
    bound of every record's latency in the batch)."""
    oldest = min((m.timestamp()[1] for m in messages if m.timestamp()[1] > 0), default=None)
    if oldest is not None:
        STAGE_LATENCY.labels(stage).observe(max(0.0, (time.time() if now is None else now) - oldest / 1000))


def count_into(counter: Any, counts: Counter[str]) -> None:
    """Add per-label ``counts`` (one batch's) to a labelled Prometheus counter."""
    for label, n in counts.items():
        if n:
            counter.labels(label).inc(n)
