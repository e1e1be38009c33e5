"""One signed webhook delivery attempt, its classification, backoff and a per-endpoint breaker.

Retry on timeouts, connection errors, 5xx and 429 (honouring ``Retry-After``); never on other 4xx.
Backoff is exponential with full jitter. After ``breaker_failures`` consecutive failures an endpoint's
circuit opens for ``breaker_open_s``: attempts are deferred, not sent, until it half-opens.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import SecretStr

from schemas.codec import encode
from streams.containment.signing import headers as signed_headers

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | retry | failed | deferred
    http_status: int
    latency_ms: int
    detail: str
    retry_after_s: float | None = None


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff for attempt 1, 2, …"""
    return rng.uniform(0, min(cap_s, base_s * 2 ** max(0, attempt - 1)))


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Breaker:
    def __init__(self, failures: int, open_s: float) -> None:
        self.failures, self.open_s = failures, open_s
        self.consecutive = 0
        self.opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        return time.monotonic() - self.opened_at >= self.open_s  # half-open: one try

    def record(self, ok: bool) -> None:
        if ok:
            self.consecutive, self.opened_at = 0, None
            return
        self.consecutive += 1
        if self.consecutive >= self.failures:
            self.opened_at = time.monotonic()


class Deliverer:
    """Signed POSTs to one webhook endpoint, with a concurrency limit and a circuit breaker."""

    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0, concurrency: int = 4,
                 breaker_failures: int = 5, breaker_open_s: float = 10.0) -> None:
        self.url, self._secret = url, SecretStr(secret)
        self.client = httpx.AsyncClient(timeout=timeout_s)
        self.limit = asyncio.Semaphore(concurrency)
        self.breaker = Breaker(breaker_failures, breaker_open_s)

    def __repr__(self) -> str:  # never shows the secret
        return f"Deliverer(url={self.url!r})"

    async def close(self) -> None:
        await self.client.aclose()

    async def attempt(self, message_id: str, payload: dict[str, Any]) -> Outcome:
        if not self.breaker.allow():
            return Outcome("deferred", 0, 0, "circuit open: endpoint failing")
        body = encode(payload)
        started = time.perf_counter()
        async with self.limit:
            try:
                response = await self.client.post(
                    self.url, content=body,
                    headers={**signed_headers(self._secret.get_secret_value(), message_id, body),
                             "content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                self.breaker.record(False)
                latency = int((time.perf_counter() - started) * 1000)
                return Outcome("retry", 0, latency, f"{type(exc).__name__}: {exc}"[:300])
        latency = int((time.perf_counter() - started) * 1000)
        code = response.status_code
        if 200 <= code < 300:
            self.breaker.record(True)
            return Outcome("delivered", code, latency, response.text[:300])
        if code in RETRYABLE_STATUS:
            self.breaker.record(False)
            wait = retry_after(response.headers.get("retry-after"))
            return Outcome("retry", code, latency, response.text[:300], wait)
        self.breaker.record(True)  # the endpoint answered: it is up, it refused this one
        return Outcome("failed", code, latency, f"refused, not retried: {response.text[:300]}")
