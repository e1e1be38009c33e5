from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import Limits, RecordError, check_limits, decode, decode_record, encode, raw_text, within_limits
from schemas.dead_letter import DeadLetter
from schemas.envelope import Event, event_id

pytestmark = pytest.mark.unit

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def test_event_round_trips_through_the_codec() -> None:
    event = Event(
        event_id=event_id("falco", b"x"), time_ms=1_764_000_000_123, source="falco", class_uid=1007,
        activity="exec", entities=["container:abc", "pod:ml/vllm-0"], extra={"k": "v"}, tags=["t"],
    )
    assert Event.from_dict(decode(encode(event))) == event
    assert event.class_name == "Process Activity"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty record"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"a": ', "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "nesting deeper"),
        (b'{"a": "' + b"x" * 100 + b'"}', "longer than"),
        (b'{"a": 1e999}', "not valid JSON"),
    ],
)
def test_bad_records_raise_with_a_reason(data: bytes, reason: str) -> None:
    limits = Limits(max_bytes=10_000, max_depth=32, max_string_chars=64)
    with pytest.raises(RecordError, match=reason):
        decode_record(data, limits)


def test_oversized_record_is_refused_before_parsing() -> None:
    with pytest.raises(RecordError, match="over the 2048-byte limit"):
        decode_record(b'{"a": "' + b"x" * 3000 + b'"}', Limits(max_bytes=2048))


@given(json_values)
def test_any_json_either_decodes_or_raises_record_error(value: object) -> None:
    data = orjson.dumps(value)
    try:
        result = decode_record(data, Limits(max_depth=4, max_string_chars=20))
    except RecordError as exc:
        assert exc.reason
    else:
        assert result == value


@given(json_values, st.integers(1, 6), st.integers(0, 24))
def test_the_byte_precheck_never_passes_a_record_the_walk_refuses(
    value: object, max_depth: int, max_chars: int
) -> None:
    limits = Limits(max_depth=max_depth, max_string_chars=max_chars)
    data = orjson.dumps({"v": value})
    if within_limits(data, limits):
        check_limits(orjson.loads(data), limits)  # must not raise


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": "\\u00e9\\u00e9\\u00e9"}',  # 3 characters from 18 bytes
        b'{"a": "[[[[", "b": "{{{{"}',  # brackets inside strings count, nesting is 1
        b'{"\\"[": ["\\\\", "]\\""]}',
        b'  {"a": [1, {"b": null}]}  ',
    ],
)
def test_precheck_and_walk_agree_near_the_limits(data: bytes) -> None:
    value = orjson.loads(data)
    for max_depth in range(1, 5):
        for max_chars in range(len(data) + 2):
            limits = Limits(max_depth=max_depth, max_string_chars=max_chars)
            try:
                check_limits(value, limits)
            except RecordError as exc:
                assert not within_limits(data, limits)
                with pytest.raises(RecordError, match=exc.reason):
                    decode_record(data, limits)
            else:
                assert decode_record(data, limits) == value


@given(st.binary(max_size=200))
def test_any_bytes_either_decode_or_raise_record_error(data: bytes) -> None:
    try:
        decode_record(data)
    except RecordError as exc:
        assert exc.reason


def test_dead_letter_keeps_non_utf8_bytes_as_base64() -> None:
    letter = DeadLetter.of("bad", "gateway", "publish", b"\xff\x00ok", {"file": "f", "line": 3})
    assert letter.raw_encoding == "base64"
    assert base64.b64decode(letter.raw) == b"\xff\x00ok"
    assert raw_text(b"plain") == ("plain", "utf-8")
    assert decode(encode(letter.to_dict()))["position"] == {"file": "f", "line": 3}


def test_event_id_is_deterministic_and_source_scoped() -> None:
    assert event_id("cloudtrail", "abc") == event_id("cloudtrail", b"abc")
    assert event_id("cloudtrail", "abc") != event_id("k8s_audit", "abc")
    for source in ("falco", "not-a-source"):  # the same blake2b whether the source has a seed or not
        for identity in (b"", b"raw bytes", "vendor-id-\u00e9"):
            data = identity.encode() if isinstance(identity, str) else identity
            expected = hashlib.blake2b(source.encode() + b"\0" + data, digest_size=16).hexdigest()
            assert event_id(source, identity) == expected
