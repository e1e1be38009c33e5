"""orjson encode/decode for every topic, with the limits that keep hostile input out.

``decode_record`` is the one door raw bytes come through: it enforces size, nesting depth and
string length, and raises ``RecordError`` with a reason a human can act on.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import orjson

_DUMP_OPTS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY


class RecordError(ValueError):
    """A record that cannot be accepted; ``reason`` goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 1_048_576
    max_depth: int = 32
    max_string_chars: int = 65_536


DEFAULT_LIMITS = Limits()


def encode(value: Any) -> bytes:
    """orjson bytes; dataclasses, datetimes (UTC, ``Z``) and numpy values included."""
    return orjson.dumps(value, option=_DUMP_OPTS)


def decode(data: bytes | str) -> Any:
    """Plain orjson decode for trusted internal topics."""
    return orjson.loads(data)


def decode_record(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode one untrusted JSON object, enforcing ``limits``; raises ``RecordError``."""
    if len(data) > limits.max_bytes:
        msg = f"record is {len(data)} bytes, over the {limits.max_bytes}-byte limit"
        raise RecordError(msg)
    if not data.strip():
        msg = "empty record"
        raise RecordError(msg)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc}"
        raise RecordError(msg) from None
    if type(value) is not dict:
        msg = f"expected a JSON object, got {type(value).__name__}"
        raise RecordError(msg)
    if not within_limits(data, limits):
        check_limits(value, limits)
    return value


def within_limits(data: bytes, limits: Limits) -> bool:
    """True when the JSON text ``data`` (decoded by orjson) cannot break ``limits``: a cheap
    sufficient test on the raw bytes that lets ``decode_record`` skip the walk of ``check_limits``.

    A decoded string (or key) has no more characters than the bytes that encode it, so none is
    longer than ``max_string_chars`` when the whole record is not; every nesting level opens with a
    ``{`` or ``[``, so the depth is at most the number of those bytes (strings' included). orjson
    refuses NaN, infinities and numbers that overflow a double, so a decoded value is always finite.
    When this is False the exact walk decides, and gives the reason.
    """
    return len(data) <= limits.max_string_chars and data.count(b"{") + data.count(b"[") <= limits.max_depth


def check_limits(value: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    """Depth, string-length and finite-number checks over a decoded value (iterative, no recursion)."""
    max_depth, max_chars = limits.max_depth, limits.max_string_chars
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            msg = f"nesting deeper than {max_depth} levels"
            raise RecordError(msg)
        children = item.values() if type(item) is dict else item
        if type(item) is dict:
            for key in item:
                if len(key) > max_chars:
                    msg = f"a key is longer than {max_chars} characters"
                    raise RecordError(msg)
        for child in children:
            kind = type(child)
            if kind is str:
                if len(child) > max_chars:
                    msg = f"a string is longer than {max_chars} characters"
                    raise RecordError(msg)
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float and not math.isfinite(child):
                msg = "a number is not finite (NaN or infinity)"
                raise RecordError(msg)


def raw_text(data: bytes) -> tuple[str, str]:
    """The original bytes for a dead letter: ``(text, "utf-8")`` or ``(base64, "base64")``."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
