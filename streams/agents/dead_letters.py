"""Sending a consumed message to ``aiwarden.dlq`` with its reason and position, from any agent."""

from __future__ import annotations

from typing import Any

from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from streams.metrics import DEAD_LETTERS


async def dead_letter(dlq: Any, message: Any, reason: str, source: str, stage: str) -> None:
    """Dead-letter a Faust ``message`` (its original bytes, topic/partition/offset and ``reason``)."""
    position = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
    value = message.value if message.value is not None else b""
    letter = DeadLetter.of(reason, source, stage, value, position)
    await dlq.send(key=message.key, value=encode(letter.to_dict()))
    DEAD_LETTERS.labels(stage).inc()
