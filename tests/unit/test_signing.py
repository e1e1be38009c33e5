"""Standard Webhooks signing: fixed vectors, header round trips and every rejection reason."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from streams.containment.signing import SignatureError, headers, new_msg_id, secret_key, sign, verify

pytestmark = pytest.mark.unit

# The example of the Standard Webhooks spec and its reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - the spec's published example
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_760_000_000


def test_spec_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    verify(
        SPEC_SECRET,
        {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIGNATURE},
        SPEC_BODY,
        now=SPEC_TS + 10,
    )


def test_formula_with_whsec_and_plain_secrets() -> None:
    key = b"\x00\x01secret-key-bytes\xff"
    body = b'{"action":"notify"}'
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()).decode()
    whsec = "whsec_" + base64.b64encode(key).decode()
    assert sign(whsec, "msg_1", 1700000000, body) == f"v1,{expected}"
    assert sign(key, "msg_1", 1700000000, body) == f"v1,{expected}"

    plain = base64.b64encode(hmac.new(b"hunter2", b"msg_1.1700000000." + body, hashlib.sha256).digest()).decode()
    assert sign("hunter2", "msg_1", 1700000000, body) == f"v1,{plain}"
    assert secret_key("hunter2") == b"hunter2"


def test_bad_secrets() -> None:
    with pytest.raises(ValueError, match="not base64"):
        secret_key("whsec_***")
    with pytest.raises(ValueError, match="empty"):
        secret_key("")


def test_headers_round_trip() -> None:
    msg_id = new_msg_id()
    body = b'{"action": "quarantine_workload"}'
    sent = headers(SPEC_SECRET, msg_id, body, now=NOW)
    assert sent["webhook-id"] == msg_id
    assert sent["webhook-timestamp"] == str(NOW)
    assert sent["webhook-signature"] == sign(SPEC_SECRET, msg_id, NOW, body)
    verify(SPEC_SECRET, sent, body, now=NOW)
    verify(SPEC_SECRET, {k.upper(): v for k, v in sent.items()}, body, now=NOW + 299)  # names: any case
    verify(SPEC_SECRET, headers(SPEC_SECRET, msg_id, body), body)  # the real clock on both sides


def test_any_listed_v1_signature_matches() -> None:
    body = b"{}"
    sent = headers("new-secret", "msg_2", body, now=NOW)
    good = sent["webhook-signature"]
    old = sign("old-secret", "msg_2", NOW, body)
    sent["webhook-signature"] = f"{old} v1a,c29tZXRoaW5n {good}"
    verify("new-secret", sent, body, now=NOW)
    verify("old-secret", sent, body, now=NOW)
    with pytest.raises(SignatureError, match="no matching v1 signature"):
        verify("third-secret", sent, body, now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": None}, "missing header"),
        ({"webhook-signature": ""}, "missing header"),
        ({"webhook-timestamp": None}, "missing header"),
        ({"webhook-timestamp": "17e8"}, "bad webhook-timestamp"),
        ({"webhook-timestamp": "-5"}, "bad webhook-timestamp"),
        ({"webhook-timestamp": str(NOW - 301)}, "too old"),
        ({"webhook-timestamp": str(NOW + 301)}, "future"),
        ({"webhook-id": "msg_other"}, "no matching v1 signature"),
        ({"webhook-signature": "v1a," + sign("s3cret", "msg_3", NOW, b"{}")[3:]}, "no matching v1 signature"),
        ({"webhook-signature": "garbage"}, "no matching v1 signature"),
    ],
)
def test_rejections(change: dict[str, str | None], reason: str) -> None:
    sent: dict[str, str] = headers("s3cret", "msg_3", b"{}", now=NOW)
    for name, value in change.items():
        if value is None:
            del sent[name]
        else:
            sent[name] = value
    with pytest.raises(SignatureError, match=reason) as info:
        verify("s3cret", sent, b"{}", now=NOW)
    assert "s3cret" not in info.value.reason


def test_tampered_body_and_tolerance() -> None:
    sent = headers("s3cret", "msg_4", b'{"a": 1}', now=NOW)
    with pytest.raises(SignatureError, match="no matching"):
        verify("s3cret", sent, b'{"a": 2}', now=NOW)
    verify("s3cret", sent, b'{"a": 1}', now=NOW + 3000, tolerance_s=3600)
    with pytest.raises(SignatureError, match="too old"):
        verify("s3cret", sent, b'{"a": 1}', now=NOW + 31, tolerance_s=30)
