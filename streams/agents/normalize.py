"""Raw topics → ``aiwarden.events``: decode, validate, normalize; bad records to the DLQ."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import faust

from infra.settings import Settings
from schemas.codec import Limits, RecordError, encode
from schemas.sources import normalize_bytes
from streams import topics
from streams.agents.batching import batches, count_into, observe_latency
from streams.agents.dead_letters import dead_letter
from streams.metrics import EVENTS_IN

log = logging.getLogger(__name__)


def header_source(headers: Any) -> str | None:
    """The ``aiwarden-source`` header, if the producer set one."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == topics.SOURCE_HEADER and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class Normalization:
    """The normalize agent's work on one batch of raw records, apart from Faust (unit-testable).
    ``events`` and ``dlq`` are topics (anything with an async ``send``)."""

    def __init__(self, settings: Settings, *, events: Any, dlq: Any) -> None:
        ingest = settings.ingest
        self.limits = Limits(ingest.max_record_bytes, ingest.max_depth, ingest.max_string_chars)
        self.prompt_chars = ingest.prompt_chars
        self.events, self.dlq = events, dlq

    async def raw_batch(self, batch: Sequence[Any]) -> None:
        """Each record normalized and sent on as its own event, keyed by its entity (so detection
        state is repartitioned by entity); batches only amortize the metrics."""
        sources: Counter[str] = Counter()
        for record in batch:
            message = record.message
            source = header_source(message.headers)
            value = message.value if message.value is not None else b""
            try:
                normalized = normalize_bytes(value, source, limits=self.limits, prompt_chars=self.prompt_chars)
            except RecordError as exc:
                await dead_letter(self.dlq, message, exc.reason, source or "unknown", "normalize")
                continue
            sources[normalized.source] += 1
            await self.events.send(key=normalized.entity_id.encode(), value=encode(normalized))
        count_into(EVENTS_IN, sources)
        observe_latency("normalize", [record.message for record in batch])


def register(app: faust.App, settings: Settings) -> None:
    def topic(*names: str) -> Any:
        return app.topic(*names, key_type=bytes, value_type=bytes, value_serializer="raw")

    normalization = Normalization(settings, events=topic(topics.EVENTS), dlq=topic(topics.DLQ))

    @app.agent(topic(*topics.RAW_TOPICS), name="normalize")
    async def normalize(stream: faust.StreamT[bytes]) -> None:
        async for batch in batches(stream):
            await normalization.raw_batch(batch)
