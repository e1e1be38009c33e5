"""Helpers shared by every source parser: model conversion, timestamps, text, IPs, prompts, entities.

Everything here is on the hot path, so it stays small and allocation-light. Vendor values that are
not typed by a parser's ``msgspec`` model (free-form request bodies and the like) are read only
through the tolerant helpers below (``dig``, ``text``), which never raise on a wrong shape.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from schemas import entities as ent
from schemas.codec import RecordError
from schemas.envelope import Event, event_id

T = TypeVar("T")

# Extra values are short context strings, never payloads.
EXTRA_CHARS = 256
# Message lines (vendor ``output`` / ``errorMessage``) kept in the envelope.
MESSAGE_CHARS = 1024

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# 9999-12-31T23:59:59.999Z: anything later cannot be a real event time.
MAX_TIME_MS = 253_402_300_799_999
# Where an ``auto`` epoch number stops being seconds / ms / µs (see ``to_time_ms``).
_AUTO_S_BELOW, _AUTO_MS_BELOW, _AUTO_US_BELOW = 1e11, 1e14, 1e17
_US_PER_MS, _NS_PER_MS = 1_000, 1_000_000

TimeUnit = Literal["auto", "s", "ms", "us", "ns"]


def fail(source: str, reason: str) -> RecordError:
    """A ``RecordError`` whose reason starts with the source name (raise the result)."""
    return RecordError(f"{source}: {reason}")


def convert(record: Any, model: type[T], source: str, *, strict: bool = True) -> T:
    """``msgspec.convert`` a decoded record into ``model``; a mismatch names the source and path."""
    if type(record) is not dict:
        raise fail(source, f"expected a JSON object, got {type(record).__name__}")
    try:
        return msgspec.convert(record, model, strict=strict)
    except msgspec.ValidationError as exc:
        raise fail(source, str(exc)) from None


# Falco's rule priorities (used by Falco and by runtime agents reporting their own rule hits) -> OCSF severity_id.
PRIORITY_SEVERITY = {
    "emergency": 5,
    "alert": 5,
    "critical": 5,
    "error": 4,
    "warning": 3,
    "notice": 2,
    "informational": 1,
    "info": 1,
    "debug": 1,
}


# --- timestamps -----------------------------------------------------------------------------------


def to_time_ms(value: object, source: str, field: str, unit: TimeUnit = "auto") -> int:
    """UTC epoch milliseconds from an ISO-8601/RFC 3339 string or an epoch number.

    Strings may use ``T`` or a space, ``Z`` or an offset, and up to nanosecond fractions (cut to µs);
    naive times are UTC. A string of digits is an epoch number. Numbers are in ``unit``; ``auto``
    picks seconds, milliseconds, microseconds or nanoseconds from the magnitude (below 1e11 is
    seconds, i.e. any date before year 5138; below 1e14 ms; below 1e17 µs; else ns). Anything
    unparseable, before 1970 or after 9999 is a ``RecordError`` naming ``field``.
    """
    kind = type(value)
    if kind is str:
        text_value: str = value  # type: ignore[assignment]
        stripped = text_value.strip()
        try:
            if stripped.isdigit() or (stripped[:1] == "-" and stripped[1:].isdigit()):
                ms = _epoch_ms(int(stripped), unit)
            else:
                moment = datetime.fromisoformat(stripped)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                ms = (moment - _EPOCH) // _ONE_MS
        except (ValueError, OverflowError):
            raise fail(source, f"bad timestamp {text_value[:64]!r} at `{field}`") from None
    elif kind is int or kind is float:
        try:
            ms = _epoch_ms(value, unit)  # type: ignore[arg-type]
        except (ValueError, OverflowError):
            raise fail(source, f"bad epoch number {value!r} at `{field}`") from None
    elif value is None:
        raise fail(source, f"missing timestamp `{field}`")
    else:
        raise fail(source, f"timestamp `{field}` is a {kind.__name__}, not a string or number")
    if ms < 0 or ms > MAX_TIME_MS:
        raise fail(source, f"timestamp at `{field}` is out of range (before 1970 or after 9999)")
    return ms


def _epoch_ms(number: float, unit: TimeUnit) -> int:
    if unit == "auto":
        size = abs(number)
        if size < _AUTO_S_BELOW:
            unit = "s"
        elif size < _AUTO_MS_BELOW:
            unit = "ms"
        else:
            unit = "us" if size < _AUTO_US_BELOW else "ns"
    # NaN raises ValueError and infinity OverflowError: the caller turns both into a RecordError.
    if unit == "s":
        return int(number * 1000)
    if unit == "ms":
        return int(number)
    divisor = _NS_PER_MS if unit == "ns" else _US_PER_MS
    return number // divisor if type(number) is int else int(number / divisor)


# --- text -----------------------------------------------------------------------------------------


def text(value: object, limit: int = 0) -> str:
    """A vendor scalar as a string ('' for null, objects and lists), cut to ``limit`` chars if > 0."""
    if type(value) is str:
        out = value
    elif value is None:
        return ""
    else:
        kind = type(value)
        if kind is int or kind is float:
            out = str(value)
        elif kind is bool:
            out = "true" if value else "false"
        else:
            return ""
    return out[:limit] if limit > 0 and len(out) > limit else out


def truncate(value: str, limit: int) -> str:
    return value[:limit] if len(value) > limit else value


def dig(obj: Any, *path: str) -> Any:
    """``obj[p0][p1]…`` through dicts only; ``None`` as soon as the shape does not match."""
    for key in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(key)
    return obj


def put(extra: dict[str, str], key: str, value: object, limit: int = EXTRA_CHARS) -> None:
    """Set ``extra[key]`` to the scalar ``value`` as text (cut to ``limit``) unless it is empty."""
    if value is None or value == "":
        return
    if type(value) is str:
        extra[key] = value[:limit] if len(value) > limit else value
        return
    out = text(value, limit)
    if out:
        extra[key] = out


def join_texts(values: object, sep: str = ",", limit: int = EXTRA_CHARS) -> str:
    """A list of scalars joined with ``sep`` (non-scalars skipped), cut to ``limit``."""
    if type(values) is not list:
        return text(values, limit)
    out = sep.join([t for t in [text(v) for v in values] if t])
    return truncate(out, limit)


# --- IP addresses ---------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def clean_ip(value: str) -> str:
    """The canonical text of an IPv4/IPv6 address, or '' when ``value`` is not one.

    IPv4 octets with leading zeros (written by log anonymisers such as LogLicker) are read as decimal;
    IPv4-mapped IPv6 addresses become IPv4; IPv6 is compressed and lower-case (a ``%zone`` is kept).
    Cached: the same few addresses recur all day.
    """
    if not value or len(value) > 64:
        return ""
    if ":" not in value:
        parts = value.split(".")
        if len(parts) != 4:
            return ""
        octets = []
        for part in parts:
            if not part.isdigit() or not part.isascii() or len(part) > 3 or int(part) > 255:
                return ""
            octets.append(str(int(part)))
        return ".".join(octets)
    try:
        address = ipaddress.IPv6Address(value.strip("[]"))
    except ValueError:
        return ""
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else address.compressed


def ip_entity(address: str) -> str:
    """The ``ip:`` entity of a cleaned address; '' for none or an unspecified bind address (0.0.0.0, ::)."""
    return ent.ip(address) if address and address not in _UNSPECIFIED else ""


_UNSPECIFIED = frozenset({"0.0.0.0", "::"})  # noqa: S104 - compared against, never bound


def ip_of(value: object) -> str:
    """``clean_ip`` of any vendor value ('' for non-strings)."""
    return clean_ip(value) if type(value) is str else ""


def split_host_port(endpoint: str) -> tuple[str, int]:
    """``("10.0.0.1", 443)`` from ``10.0.0.1:443`` / ``[::1]:443`` / ``::1:443``; ``("", 0)`` if not one."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not port.isascii() or int(port) > 65535:
        return "", 0
    address = clean_ip(host.strip("[]"))
    return (address, int(port)) if address else ("", 0)


# --- prompts --------------------------------------------------------------------------------------

_PROMPT_KEYS = ("prompt", "inputText", "input", "text", "message", "query", "texts", "inputs")


def prompt_text(body: Any, limit: int) -> str:
    """The user-supplied text of an LLM request body, cut to ``limit`` characters ('' if none).

    Handles chat ``messages`` (OpenAI, Anthropic Messages, Bedrock Converse / Nova: ``content`` as a
    string or a list of ``{"text": …}`` parts), where the text of every ``user`` turn is kept in
    order, newline-separated; then single-prompt bodies: Anthropic text completions and Llama /
    Mistral / Cohere (``prompt``), Titan (``inputText``), and generic ``input``/``text``/``message``/
    ``texts``. System prompts and assistant turns are not the caller's input and are left out.
    """
    if limit <= 0 or type(body) is not dict:
        return ""
    messages = body.get("messages")
    if type(messages) is list:
        parts: list[str] = []
        size = 0
        for message in messages:
            if type(message) is not dict or message.get("role", "user") != "user":
                continue
            for piece in _content_texts(message.get("content")):
                parts.append(piece)
                size += len(piece) + 1
            if size > limit:
                break
        if parts:
            return truncate("\n".join(parts), limit)
    for key in _PROMPT_KEYS:
        value = body.get(key)
        if type(value) is str and value:
            return truncate(value, limit)
        if type(value) is list:
            joined = "\n".join(_content_texts(value))
            if joined:
                return truncate(joined, limit)
    return ""


def _content_texts(content: Any) -> Iterable[str]:
    if type(content) is str:
        if content:
            yield content
        return
    if type(content) is not list:
        return
    for part in content:
        if type(part) is str:
            if part:
                yield part
        elif type(part) is dict:
            value = part.get("text")
            if type(value) is str and value:
                yield value


# --- identity and entities ------------------------------------------------------------------------


class SlowPath(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by ``key_str`` when a cheap ``primary_key`` must fall back to full normalization."""


def key_str(value: object) -> str:
    """For cheap ``primary_key`` paths: a string value as is, null as ''; any other type ``SlowPath``."""
    if value is None:
        return ""
    if type(value) is not str:
        raise SlowPath
    return value


def identity_and_raw(source: str, record: dict[str, Any], vendor_id: str) -> tuple[str, str]:
    """``(event_id, raw)``: the id from the vendor's record id, else from the canonical raw bytes."""
    try:
        # Without a vendor id the raw text is the canonical (key-sorted) form the id is computed from.
        raw = orjson.dumps(record) if vendor_id else orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise fail(source, f"record cannot be encoded as JSON: {exc}") from None
    return event_id(source, vendor_id if vendor_id else raw), raw.decode()


def primary(entities: list[str], *preferred: str) -> str:
    """The first of ``preferred`` that is a real id (not blank, not ``kind:``), else the first entity."""
    for candidate in preferred:
        if candidate and not candidate.endswith(":"):
            return candidate
    return entities[0] if entities else ""


def principal_key(
    record: dict[str, Any], outer: str, inner: str, normalize: Callable[[dict[str, Any]], Event]
) -> str:
    """``principal:<record[outer][inner]>`` read straight from the record; full normalization only
    when that is missing or of an unexpected type."""
    try:
        section = record.get(outer)
        if type(section) is dict:
            name = key_str(section.get(inner))
            if name:
                return ent.principal(name)
    except SlowPath:
        pass
    return fallback_key(normalize, record)


def fallback_key(normalize: Callable[[dict[str, Any]], Event], record: dict[str, Any]) -> str:
    """``normalize(record).entity_id``; '' for a record that cannot be normalized (it is dead-lettered
    later, by the normalizer, with the reason)."""
    try:
        return normalize(record).entity_id
    except (ValueError, TypeError, KeyError, AttributeError):  # RecordError is a ValueError
        return ""
