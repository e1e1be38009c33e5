"""Console sessions as signed cookies, their CSRF tokens, and the sign-in throttle (pure logic).

A session cookie is ``<base64url JSON {sid, user, iat, exp}>.<base64url HMAC-SHA256>``: any worker
holding the shared secret can check it, so sessions survive a worker restart and work behind a load
balancer. A fresh random session id is minted at every sign-in (a cookie planted before sign-in is
never promoted: no session fixation); signing out records the id as ended on the accounts topic.
The CSRF token is HMAC(secret, "csrf" + sid): bound to the session, sent back in ``X-CSRF-Token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import orjson

COOKIE = "aiwarden_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    user: str
    issued_ms: int
    expires_ms: int
    role: str = ""  # set for OpenID Connect sessions (the role their groups granted); local ones look it up


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, secret: bytes, ttl_s: int) -> None:
        if len(secret) < 16:
            msg = "the session secret must be at least 16 bytes"
            raise ValueError(msg)
        self._key, self.ttl_s = secret, ttl_s

    def __repr__(self) -> str:  # never shows the key
        return f"SessionCodec(ttl_s={self.ttl_s})"

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def issue(self, user: str, now_ms: int | None = None, role: str = "") -> tuple[str, Session]:
        issued = int(time.time() * 1000) if now_ms is None else now_ms
        session = Session(secrets.token_urlsafe(24), user, issued, issued + self.ttl_s * 1000, role)
        return self.seal({"sid": session.sid, "user": user, "iat": issued, "exp": session.expires_ms,
                          "role": role}), session

    def seal(self, value: dict[str, object]) -> str:
        """``value`` as signed cookie text (sessions, and the OpenID Connect state of a sign-in)."""
        body = orjson.dumps(value)
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def unseal(self, cookie: str) -> dict[str, object] | None:
        """What ``seal`` wrote, if the signature holds."""
        body_text, sep, mac_text = cookie.partition(".")
        if not sep or len(cookie) > 2048:
            return None
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        value = orjson.loads(body)
        return value if isinstance(value, dict) else None

    def read(self, cookie: str, now_ms: int | None = None) -> Session | None:
        """The session of a genuine, unexpired cookie, else None."""
        data = self.unseal(cookie)
        if data is None or "sid" not in data:
            return None
        session = Session(str(data["sid"]), str(data["user"]), int(str(data["iat"])), int(str(data["exp"])),
                          str(data.get("role") or ""))
        current = int(time.time() * 1000) if now_ms is None else now_ms
        return session if session.expires_ms > current else None

    def csrf(self, session: Session) -> str:
        return _b64(self._mac(b"csrf" + session.sid.encode()))

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(session), token or "")


def load_secret(configured: str, state_dir: Path) -> bytes:
    """The configured secret, else the one generated once into ``<state_dir>/session-secret`` (mode 0600)."""
    if configured:
        return configured.encode()
    path = state_dir / "session-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text().strip().encode()


class Throttle:
    """Failed sign-ins per user (``max_failures`` within ``window_s`` lock the user for ``window_s``)
    and attempts per client address (at most ``per_ip`` a minute)."""

    def __init__(self, max_failures: int, window_s: float, per_ip: int) -> None:
        self.max_failures, self.window_s, self.per_ip = max_failures, window_s, per_ip
        self.failures: dict[str, deque[float]] = defaultdict(deque)
        self.attempts: dict[str, deque[float]] = defaultdict(deque)

    @staticmethod
    def _recent(times: deque[float], window: float, now: float) -> deque[float]:
        while times and times[0] <= now - window:
            times.popleft()
        return times

    def ip_allowed(self, ip: str, now: float | None = None) -> bool:
        current = time.monotonic() if now is None else now
        attempts = self._recent(self.attempts[ip], 60.0, current)
        if len(attempts) >= self.per_ip:
            return False
        attempts.append(current)
        return True

    def failed(self, user: str, now: float | None = None) -> bool:
        """Count a failure; True when it locks the user."""
        current = time.monotonic() if now is None else now
        failures = self._recent(self.failures[user], self.window_s, current)
        failures.append(current)
        if len(self.failures) > 100_000:  # bounded: forget the oldest users tried
            self.failures.pop(next(iter(self.failures)))
        return len(failures) >= self.max_failures

    def succeeded(self, user: str) -> None:
        self.failures.pop(user, None)
