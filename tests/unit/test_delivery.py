from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from streams.containment.delivery import Breaker, backoff_s, retry_after

pytestmark = pytest.mark.unit


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        samples = [backoff_s(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # jitter spans the range


def test_retry_after_seconds_or_http_date() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    in_a_minute = retry_after(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 <= in_a_minute <= 61
    assert retry_after(formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_breaker_opens_after_consecutive_failures_and_half_opens() -> None:
    breaker = Breaker(failures=3, open_s=0.2)
    for _ in range(2):
        breaker.record(False)
    assert breaker.allow()
    breaker.record(False)
    assert not breaker.allow()
    time.sleep(0.25)
    assert breaker.allow()  # half-open: one try
    breaker.record(True)
    assert breaker.allow() and breaker.consecutive == 0
