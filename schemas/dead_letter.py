"""The record written to ``aiwarden.dlq``: why, from where, and the original bytes.

A dead letter always fits the topic it goes to: ``DeadLetter.of(…, max_bytes=<the topic's
max.message.bytes>)`` keeps the first part of an original that would not fit, with the original's
length and SHA-256 and ``truncated`` set. Its ``letter_id`` is derived from the stage, source,
position and original bytes, so the same record dead-lettered at the same place has the same id
(what ``aiwarden dlq show`` and ``replay`` go by).
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas.codec import encode, raw_text

# Kafka's default max.message.bytes (1 MiB + the 12-byte log overhead), used when the real limit is not known.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
REASON_CHARS = 4_096  # a reason is a sentence, not a payload (exception reprs can carry whole records)


def record_budget(max_message_bytes: int) -> int:
    """Bytes one record (value, key and headers) may take on a topic whose ``max.message.bytes`` is
    ``max_message_bytes``: the limit holds the whole record batch, so leave room for the batch and record
    framing and for compression that does not compress (lz4 grows incompressible data by ~0.4%)."""
    return max_message_bytes - 4_096 - max_message_bytes // 100


@dataclass(slots=True)
class DeadLetter:
    reason: str
    source: str
    stage: str  # publish | normalize | detect | correlate | sink …
    position: dict[str, str | int] = field(default_factory=dict)  # file/line or topic/partition/offset
    raw: str = ""  # the original bytes (their first part when truncated)
    raw_encoding: str = "utf-8"  # or base64
    time_ms: int = 0
    letter_id: str = ""
    raw_bytes: int = 0  # length of the whole original
    raw_sha256: str = ""  # of the whole original
    truncated: bool = False

    @classmethod
    def of(
        cls, reason: str, source: str, stage: str, data: bytes, position: dict[str, str | int],
        max_bytes: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    ) -> DeadLetter:
        """The dead letter of ``data``, encoded within ``record_budget(max_bytes)`` (see ``fit``)."""
        text, encoding = raw_text(data)
        digest = hashlib.sha256(data).hexdigest()
        letter = cls(reason[:REASON_CHARS], source, stage, dict(position), text, encoding, int(time.time() * 1000),
                     letter_id(stage, source, position, digest), len(data), digest)
        fit(letter, data, record_budget(max_bytes))
        return letter

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def encode(self) -> bytes:
        return encode(self.to_dict())

    def original(self) -> bytes:
        """The original bytes as kept (the first part when ``truncated``)."""
        return base64.b64decode(self.raw) if self.raw_encoding == "base64" else self.raw.encode()

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> DeadLetter:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in value.items() if k in names})


def letter_id(stage: str, source: str, position: dict[str, str | int], raw_sha256: str) -> str:
    where = "\x1f".join(f"{k}={position[k]}" for k in sorted(position))
    return hashlib.sha256(f"{stage}\x1e{source}\x1e{where}\x1e{raw_sha256}".encode()).hexdigest()[:32]


def fit(letter: DeadLetter, data: bytes, budget: int) -> None:
    """Cut ``letter.raw`` to a prefix of ``data`` whose encoded letter takes at most ``budget``
    bytes (whole characters when the original is UTF-8), and mark it ``truncated``."""
    size = len(letter.encode())
    if size <= budget:
        return
    letter.truncated = True
    letter.raw = ""
    room = budget - len(letter.encode())
    keep = min(len(data), max(room, 0))
    while keep > 0:
        prefix = data[:keep]
        letter.raw = (prefix.decode("utf-8", "ignore") if letter.raw_encoding == "utf-8"
                      else base64.b64encode(prefix).decode("ascii"))
        taken = len(encode(letter.raw)) - 2  # JSON escapes can take up to 6 bytes per byte
        if taken <= room:
            return
        keep = min(keep - 1, keep * room // taken)
    letter.raw = ""
