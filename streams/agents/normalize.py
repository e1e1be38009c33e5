"""Raw topics → ``aiwarden.events``: decode, validate, normalize; bad records to the DLQ."""

from __future__ import annotations

import logging
from typing import Any

import faust

from infra.settings import Settings
from schemas.codec import Limits, RecordError, encode
from schemas.sources import normalize_bytes
from streams import topics
from streams.agents.dead_letters import dead_letter

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


def register(app: faust.App, settings: Settings) -> None:
    limits = Limits(settings.ingest.max_record_bytes, settings.ingest.max_depth, settings.ingest.max_string_chars)
    prompt_chars = settings.ingest.prompt_chars
    raw = app.topic(*topics.RAW_TOPICS, key_type=bytes, value_type=bytes, value_serializer="raw")
    events = app.topic(topics.EVENTS, key_type=bytes, value_type=bytes, value_serializer="raw")
    dlq = app.topic(topics.DLQ, key_type=bytes, value_type=bytes, value_serializer="raw")

    @app.agent(raw, name="normalize")
    async def normalize(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            source = header_source(message.headers)
            value = message.value if message.value is not None else b""
            try:
                normalized = normalize_bytes(value, source, limits=limits, prompt_chars=prompt_chars)
            except RecordError as exc:
                await dead_letter(dlq, message, exc.reason, source or "unknown", "normalize")
                continue
            await events.send(key=normalized.entity_id.encode(), value=encode(normalized))
