"""Standard Webhooks signing (https://www.standardwebhooks.com), symmetric ``v1`` scheme, on the
reference library (``standardwebhooks``): its ``Webhook.sign`` makes every signature, so a receiver
built on that library accepts our deliveries. This module adds what the library leaves out: plain-string
secrets, an injectable clock and tolerance, and reasons safe to return to a sender.

A delivery carries three headers:

* ``webhook-id``: the message id, the same on every retry of one message (receivers dedupe on it);
* ``webhook-timestamp``: unix seconds when it was signed;
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>``
  entries (several while a secret is being rotated); a receiver accepts when any ``v1`` entry matches.

A secret is ``whsec_<base64 key>`` (the form the spec hands out) or any other string, whose UTF-8
bytes are the key. Secrets are never put in error messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
DEFAULT_TOLERANCE_S = 300


class SignatureError(Exception):
    """A delivery failed verification; ``reason`` says why (safe to return to the sender)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key: raw bytes as given, ``whsec_`` base64 decoded, or a plain string's UTF-8 bytes."""
    if isinstance(secret, bytes):
        key = secret
    elif secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            msg = "secret starts with whsec_ but the rest is not base64"
            raise ValueError(msg) from None
    else:
        key = secret.encode()
    if not key:
        msg = "the webhook secret is empty"
        raise ValueError(msg)
    return key


def new_msg_id() -> str:
    """A fresh message id (``msg_`` + random), for senders."""
    return "msg_" + secrets.token_urlsafe(18)


def _digest(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    try:
        text = body.decode()
    except UnicodeDecodeError:  # the library signs text: a body that is not UTF-8 matches no signature
        return ""
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(int(timestamp), tz=UTC), text).partition(",")[2]


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message: ``v1,<base64 HMAC-SHA256>``."""
    return "v1," + _digest(secret_key(secret), msg_id, int(timestamp), body)


def headers(secret: str | bytes, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed at ``now`` (default: the clock)."""
    timestamp = int(time.time() if now is None else now)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Check a delivery's headers against ``body``; raise ``SignatureError`` unless it is authentic and fresh.

    Header names are matched case-insensitively. The timestamp must be within ``tolerance_s`` of
    ``now`` either way, and at least one ``v1`` signature must match (compared in constant time).
    """
    lowered = {str(name).lower(): value for name, value in headers.items()}
    msg_id = lowered.get(ID_HEADER)
    raw_timestamp = lowered.get(TIMESTAMP_HEADER)
    raw_signatures = lowered.get(SIGNATURE_HEADER)
    missing = [
        name
        for name, value in ((ID_HEADER, msg_id), (TIMESTAMP_HEADER, raw_timestamp), (SIGNATURE_HEADER, raw_signatures))
        if not value
    ]
    if missing or msg_id is None or raw_timestamp is None or raw_signatures is None:
        msg = "missing header(s): " + ", ".join(missing)
        raise SignatureError(msg)
    raw_timestamp = raw_timestamp.strip()
    if not raw_timestamp.isascii() or not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        msg = "bad webhook-timestamp: not unix seconds"
        raise SignatureError(msg)
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        msg = "webhook-timestamp too old"
        raise SignatureError(msg)
    if timestamp > current + tolerance_s:
        msg = "webhook-timestamp too far in the future"
        raise SignatureError(msg)
    expected = _digest(secret_key(secret), msg_id, timestamp, body).encode()
    matched = False
    for entry in raw_signatures.split():
        version, sep, value = entry.partition(",")
        if sep and version == "v1" and expected and hmac.compare_digest(value.encode(), expected):
            matched = True  # keep looping: the time taken does not depend on which entry matched
    if not matched:
        msg = "no matching v1 signature"
        raise SignatureError(msg)
