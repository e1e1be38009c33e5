"""Hostile input never gets past normalization as anything but an event or a ``RecordError`` (whose
reason the worker dead-letters): the corpus in tests/fixtures/hostile and hypothesis mutations of valid
records of every source. The worker doing the same over Kafka: tests/integration/test_faults_hostile.py."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from schemas.codec import Limits, RecordError, encode
from schemas.sources import normalize_bytes
from tests.fixtures.hostile import MAX_DEPTH, MAX_RECORD_BYTES, MAX_STRING_CHARS, corpus, hostile_records

pytestmark = pytest.mark.unit

LIMITS = Limits(MAX_RECORD_BYTES, MAX_DEPTH, MAX_STRING_CHARS)
# Kinds that can never be a valid record; the others (wrong types, a mismatched source header, random
# bytes) may happen to normalize.
ALWAYS_REJECTED = {"truncated", "huge", "nested", "non_utf8", "bad_number", "unknown_source"}


def outcome(data: bytes, source: str | None) -> str | None:
    """None when the record normalizes (into an event that encodes), else the dead-letter reason."""
    try:
        event = normalize_bytes(data, source, limits=LIMITS, prompt_chars=256)
    except RecordError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return exc.reason
    assert encode(event)
    return None


@pytest.mark.parametrize(("name", "data", "source"), corpus(), ids=[c[0] for c in corpus()])
def test_corpus_is_rejected_with_a_reason(name: str, data: bytes, source: str | None) -> None:
    reason = outcome(data, source)
    if not name.startswith("accept-"):  # accept-*: harmless oddities (an unknown field) that may pass
        assert reason is not None, f"{name} was accepted"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_records())
def test_mutations_are_events_or_record_errors(hostile: tuple[str, bytes, str | None]) -> None:
    kind, data, source = hostile
    reason = outcome(data, source)  # any other exception fails the test
    if kind in ALWAYS_REJECTED:
        assert reason is not None, f"{kind} record accepted: {data[:200]!r}"
