"""Accounts: users with roles, API tokens and ended sessions, as records on the compacted ``aiwarden.accounts``.

Why a compacted Kafka topic (not ClickHouse): every worker already reads Kafka, sign-in must not
depend on the analytics store being up, a disabled user or revoked token reaches every worker within
a second as a record it is already following, and compaction keeps exactly the latest record per key.
ClickHouse gets the *audit* of these changes, never the password hashes.

Keys: ``user:<name>``, ``token:<token id>``, ``session:<session id>`` (ended sessions), ``lock:<name>``
(a user locked after repeated failed sign-ins, shared so that another worker does not reopen the door).
Passwords are argon2id hashes (argon2-cffi); API tokens are ``awt_<id>_<secret>`` and only their
SHA-256 digest is stored (a token is 190 random bits, so a fast digest is as good as a slow hash).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

Role = Literal["viewer", "analyst", "responder", "admin"]
#: each role may do what the roles before it may: viewer reads, analyst triages and writes exceptions,
#: responder approves, denies and releases containment, admin manages users and tokens and reads the audit log
ROLES: tuple[Role, ...] = ("viewer", "analyst", "responder", "admin")
RANK: dict[str, int] = {role: n for n, role in enumerate(ROLES)}
NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
TOKEN = re.compile(r"^awt_([0-9a-f]{16})_([A-Za-z0-9_-]{20,64})$")
HASHER = PasswordHasher()
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))  # verified for unknown users: same time either way
MIN_PASSWORD = 12


class AccountError(ValueError):
    """A bad user name, role, password or token (the message says which)."""


def allows(role: str, needed: str) -> bool:
    return RANK.get(role, -1) >= RANK[needed]


def check_name(name: str) -> str:
    if not NAME.match(name):
        msg = f"bad user name {name[:70]!r}: lower-case letters, digits and . _ @ - (at most 64)"
        raise AccountError(msg)
    return name


def check_role(role: str) -> Role:
    if role not in RANK:
        msg = f"unknown role {role[:40]!r}; roles: {', '.join(ROLES)}"
        raise AccountError(msg)
    return ROLES[RANK[role]]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password_hash: str
    disabled: bool = False
    updated_ms: int = 0
    kind: str = "user"


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    user: str
    digest: str
    label: str = ""
    created_ms: int = 0
    expires_ms: int = 0  # 0: never
    revoked: bool = False
    kind: str = "token"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_user(name: str, role: str, password: str) -> User:
    if len(password) < MIN_PASSWORD:
        msg = f"password too short: at least {MIN_PASSWORD} characters"
        raise AccountError(msg)
    return User(check_name(name), check_role(role), HASHER.hash(password), updated_ms=now_ms())


def new_token(user: str, label: str = "", ttl_s: int = 0) -> tuple[str, Token]:
    """A fresh token (shown once) and the record that stores only its digest."""
    token_id = secrets.token_hex(8)
    token = f"awt_{token_id}_{secrets.token_urlsafe(24)}"
    created = now_ms()
    return token, Token(token_id, check_name(user), digest(token), label[:200], created,
                        created + ttl_s * 1000 if ttl_s else 0)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def record(item: User | Token) -> tuple[bytes, bytes]:
    key = f"user:{item.name}" if isinstance(item, User) else f"token:{item.token_id}"
    return key.encode(), orjson.dumps(asdict(item))


def session_end(sid: str, until_ms: int) -> tuple[bytes, bytes]:
    return f"session:{sid}".encode(), orjson.dumps({"kind": "session_end", "sid": sid, "until_ms": until_ms})


def lock(name: str, until_ms: int) -> tuple[bytes, bytes]:
    return f"lock:{name}".encode(), orjson.dumps({"kind": "lock", "name": name, "until_ms": until_ms})


class Accounts:
    """The latest state of ``aiwarden.accounts``; ``apply`` is fed by a ``TopicView``."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.ended: dict[str, int] = {}  # session id -> until when it must be refused
        self.locks: dict[str, int] = {}  # user -> locked until (ms)

    def apply(self, key: bytes, value: bytes | None) -> None:
        kind, _, ident = key.decode().partition(":")
        if value is None:  # a tombstone
            tables: dict[str, dict[str, Any]] = {"user": self.users, "token": self.tokens, "session": self.ended,
                                                 "lock": self.locks}
            tables.get(kind, {}).pop(ident, None)
            return
        data: dict[str, Any] = orjson.loads(value)
        if kind == "user":
            self.users[ident] = User(**data)
        elif kind == "token":
            self.tokens[ident] = Token(**data)
        elif kind == "session":
            self.ended[ident] = int(data["until_ms"])
        elif kind == "lock":
            self.locks[ident] = int(data["until_ms"])
        else:
            msg = f"unknown accounts key {key[:60]!r}"
            raise ValueError(msg)

    def active(self, name: str) -> User | None:
        user = self.users.get(name)
        return user if user is not None and not user.disabled else None

    def check_password(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs and they are enabled (argon2 verify: ~50 ms, run it in a thread)."""
        user = self.active(name)
        try:
            HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user

    def check_token(self, token: str) -> User | None:
        """The token's enabled user when ``token`` is a live token."""
        match = TOKEN.match(token)
        stored = self.tokens.get(match.group(1)) if match else None
        if stored is None or stored.revoked or (stored.expires_ms and stored.expires_ms < now_ms()):
            return None
        if not hmac.compare_digest(stored.digest, digest(token)):
            return None
        return self.active(stored.user)
