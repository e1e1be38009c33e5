"""Bearer tokens of the ingest endpoints: stored as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "aiw_"  # noqa: S105 - a prefix, not a secret


def new_token() -> tuple[str, str]:
    """A fresh random token and its SHA-256 hex digest (the digest goes into AIWARDEN_INGEST__TOKENS)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; '' for anything else."""
    if not header:
        return ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def accepted(token: str, digests: tuple[str, ...]) -> bool:
    """True when ``token`` hashes to one of ``digests``; every digest is compared, each in constant time."""
    if not token:
        return False
    presented = digest(token).encode()
    match = False
    for known in digests:
        match |= hmac.compare_digest(presented, known.encode())
    return match
