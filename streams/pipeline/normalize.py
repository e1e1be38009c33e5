"""Raw topics → ``aiwarden.events``: decode, validate, normalize; bad records to the DLQ."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from infra.settings import Settings
from schemas.codec import Limits, RecordError, encode
from schemas.sources import normalize_bytes
from streams import topics
from streams.metrics import EVENTS_IN
from streams.pipeline.records import Out, OversizedOutput, count_into, dead_letter, observe_latency


def header_source(headers: Any) -> str | None:
    """The ``aiwarden-source`` header, if the producer set one."""
    value = topics.header(headers, topics.SOURCE_HEADER)
    return value.decode() if value else None


class Normalization:
    """The normalize stage: each raw record normalized and sent on as its own event, keyed by its
    entity (so detection state is repartitioned by entity); bad records dead-lettered."""

    def __init__(self, settings: Settings, out: Out) -> None:
        ingest = settings.ingest
        self.limits = Limits(ingest.max_record_bytes, ingest.max_depth, ingest.max_string_chars)
        self.prompt_chars = ingest.prompt_chars
        self.out = out

    def raw_batch(self, batch: Sequence[Any]) -> None:
        sources: Counter[str] = Counter()
        send, limits, prompt_chars = self.out.send, self.limits, self.prompt_chars
        for message in batch:
            source = header_source(message.headers())
            value = message.value()
            try:
                normalized = normalize_bytes(value if value is not None else b"", source, limits=limits,
                                             prompt_chars=prompt_chars)
            except RecordError as exc:
                dead_letter(self.out, topics.DLQ, message, exc.reason, source or "unknown", "normalize")
                continue
            try:
                send(topics.EVENTS, normalized.entity_id.encode(), encode(normalized))
            except OversizedOutput as exc:
                dead_letter(self.out, topics.DLQ, message, str(exc), normalized.source, "normalize")
                continue
            sources[normalized.source] += 1
        count_into(EVENTS_IN, sources)
        observe_latency("normalize", batch)
