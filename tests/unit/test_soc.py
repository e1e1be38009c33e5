"""Sign-in pieces, triage requests and exception matching, without services."""

from __future__ import annotations

import orjson
import pytest

from schemas.findings import Finding
from streams.soc.accounts import AccountError, Accounts, allows, new_token, new_user, record, session_end
from streams.soc.exceptions import ExceptionError, Exceptions, new_exception
from streams.soc.sessions import SessionCodec, Throttle, load_secret
from streams.soc.triage import TriageError, triage_records

pytestmark = pytest.mark.unit


def test_roles_are_ordered() -> None:
    assert allows("admin", "responder") and allows("responder", "analyst") and allows("analyst", "viewer")
    assert not allows("viewer", "analyst") and not allows("analyst", "responder") and not allows("nobody", "viewer")


def test_passwords_are_argon2_and_tokens_stored_as_digests() -> None:
    accounts = Accounts()
    user = new_user("ana", "analyst", "correct horse battery")
    assert user.password_hash.startswith("$argon2id$") and "correct" not in user.password_hash
    accounts.apply(*record(user))
    assert accounts.check_password("ana", "correct horse battery") == user
    assert accounts.check_password("ana", "wrong horse battery") is None
    assert accounts.check_password("nobody", "correct horse battery") is None
    token, stored = new_token("ana", "ci", ttl_s=60)
    _, value = record(stored)
    assert token.encode() not in value  # only the digest is written
    accounts.apply(*record(stored))
    assert accounts.check_token(token) == user
    assert accounts.check_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    accounts.apply(*record(stored.__class__(**{**orjson.loads(value), "revoked": True})))
    assert accounts.check_token(token) is None
    with pytest.raises(AccountError, match="too short"):
        new_user("bob", "viewer", "short")
    with pytest.raises(AccountError, match="unknown role"):
        new_user("bob", "root", "long enough password")


def test_disabled_users_cannot_sign_in_and_ended_sessions_are_remembered() -> None:
    accounts = Accounts()
    user = new_user("ana", "analyst", "correct horse battery")
    accounts.apply(*record(user.__class__(**{**orjson.loads(record(user)[1]), "disabled": True})))
    assert accounts.check_password("ana", "correct horse battery") is None
    accounts.apply(*session_end("sid-1", 123))
    assert accounts.ended == {"sid-1": 123}


def test_session_cookies_are_signed_expire_and_bind_the_csrf_token(tmp_path: object) -> None:
    codec = SessionCodec(b"k" * 32, ttl_s=60)
    cookie, session = codec.issue("ana", now_ms=1_000_000)
    assert codec.read(cookie, now_ms=1_000_001) == session
    assert codec.read(cookie, now_ms=1_000_000 + 60_000) is None  # expired
    body, mac = cookie.split(".")
    assert codec.read(body[:-2] + "xx." + mac, now_ms=1_000_001) is None  # tampered
    assert codec.read("garbage", now_ms=1_000_001) is None
    assert SessionCodec(b"j" * 32, 60).read(cookie, now_ms=1_000_001) is None  # another key
    other_cookie, other = codec.issue("ana", now_ms=1_000_000)
    assert other.sid != session.sid and other_cookie != cookie  # a fresh id at every sign-in
    assert codec.check_csrf(session, codec.csrf(session)) and not codec.check_csrf(session, codec.csrf(other))
    assert not codec.check_csrf(session, None) and "k" not in repr(codec)


def test_the_generated_secret_is_kept_private(tmp_path: object) -> None:
    from pathlib import Path

    state = Path(str(tmp_path))
    first = load_secret("", state)
    assert load_secret("", state) == first and len(first) >= 32
    assert (state / "session-secret").stat().st_mode & 0o077 == 0
    assert load_secret("configured-secret-value", state) == b"configured-secret-value"


def test_throttle_locks_after_max_failures_and_limits_each_address() -> None:
    throttle = Throttle(max_failures=3, window_s=100, per_ip=2)
    assert [throttle.failed("ana", now=t) for t in (0, 1, 2)] == [False, False, True]
    assert throttle.failed("bob", now=200) is False
    assert throttle.failed("ana", now=150) is False  # the old failures left the window
    assert throttle.ip_allowed("10.0.0.1", now=0) and throttle.ip_allowed("10.0.0.1", now=1)
    assert not throttle.ip_allowed("10.0.0.1", now=2) and throttle.ip_allowed("10.0.0.1", now=61)


def test_triage_requests_are_validated() -> None:
    (row,) = triage_records("ana", {"alert_ids": ["a1"], "status": "resolved", "resolution": "benign"})
    assert row["status"] == "resolved" and row["actor"] == "ana" and row["assigned"] == 0
    assert len(triage_records("ana", {"alert_ids": ["a", "b", "a"], "assignee": ""})) == 2
    for body, message in (({"alert_ids": []}, "alert_ids"), ({"alert_ids": ["a"], "status": "closed"}, "status"),
                          ({"alert_ids": ["a"], "status": "resolved"}, "resolution"),
                          ({"alert_ids": ["a"], "resolution": "benign"}, "resolution goes with"),
                          ({"alert_ids": ["a"]}, "nothing to change"), ([], "JSON object")):
        with pytest.raises(TriageError, match=message):
            triage_records("ana", body)


def finding(detector: str, entity: str) -> Finding:
    return Finding(finding_id="f", detector=detector, title="t", maturity="stable", severity="high", time_ms=0,
                   entity_id=entity, entities=[entity], summary="s")


def test_exceptions_match_detector_and_entity_glob_until_they_expire_or_are_revoked() -> None:
    exceptions = Exceptions()
    item = new_exception({"detector": "cryptominer", "entity": "pod:ml-batch/*", "reason": "benchmark",
                          "expires_in_s": 3600}, "ana", frozenset({"cryptominer", "model_server_shell"}))
    exceptions.apply(*item.record())
    assert exceptions.match(finding("cryptominer", "pod:ml-batch/job-1")) == item.exception_id
    assert exceptions.match(finding("cryptominer", "pod:ml-serving/job-1")) is None
    assert exceptions.match(finding("model_server_shell", "pod:ml-batch/job-1")) is None
    assert exceptions.match(finding("cryptominer", "pod:ml-batch/job-1"), now_ms=item.expires_ms + 1) is None
    exceptions.apply(*item.revoke().record())
    assert exceptions.match(finding("cryptominer", "pod:ml-batch/job-1")) is None
    known = frozenset({"cryptominer"})
    for body, message in (({"detector": "nope", "entity": "x", "reason": "r"}, "unknown detector"),
                          ({"detector": "cryptominer", "entity": "*", "reason": "r"}, "entity"),
                          ({"detector": "cryptominer", "entity": "x", "reason": " "}, "reason"),
                          ({"detector": "cryptominer", "entity": "x", "reason": "r", "expires_in_s": 1}, "expires")):
        with pytest.raises(ExceptionError, match=message):
            new_exception(body, "ana", known)


def test_approvals_need_distinct_people_expire_and_release_what_was_done() -> None:
    from streams.soc.approvals import ApprovalError, Approvals, now_ms, record

    approvals = Approvals(max_age_s=60)
    row = {"action_id": "a1", "alert_id": "x", "action": "quarantine_workload", "target": "pod:ns/p", "rule": "r",
           "state": "awaiting_approval", "decided_ms": now_ms(), "approvals": [], "approvers": 2}
    approvals.apply(*record(row))
    first = approvals.approve("a1", "ana")
    assert first["state"] == "awaiting_approval"
    approvals.apply(*record(first))
    with pytest.raises(ApprovalError, match="another person"):
        approvals.approve("a1", "ana")
    with pytest.raises(ApprovalError, match="not awaiting approval|only carried-out"):
        approvals.release("a1", "ana")
    done = approvals.approve("a1", "bo")
    assert done["state"] == "approved" and [a["user"] for a in done["approvals"]] == ["ana", "bo"]
    approvals.apply(*record(done))
    released, action = approvals.release("a1", "bo")
    assert released["state"] == "released" and action["action"] == "release_workload"
    assert action["releases"] == "a1" and action["action_id"] != "a1" and action["target"] == "pod:ns/p"

    old = {**row, "action_id": "a2", "decided_ms": now_ms() - 61_000}
    approvals.apply(*record(old))
    assert approvals.listing("expired")[0]["action_id"] == "a2"
    with pytest.raises(ApprovalError, match="expired"):
        approvals.approve("a2", "ana")
    with pytest.raises(ApprovalError) as missing:
        approvals.deny("nope", "ana", "r")
    assert missing.value.status == 404
    approvals.apply(*record({**row, "action_id": "a3"}))
    with pytest.raises(ApprovalError, match="reason"):
        approvals.deny("a3", "ana", " ")
    assert approvals.deny("a3", "ana", "red team")["state"] == "denied"


def test_the_releasable_actions_of_resolved_alerts_are_those_carried_out_with_a_release() -> None:
    from streams.soc.approvals import Approvals, now_ms, record

    approvals = Approvals(max_age_s=60)
    base = {"alert_id": "x", "target": "pod:ns/p", "rule": "r", "decided_ms": now_ms()}
    for action_id, action, state, alert in (("sent-q", "quarantine_workload", "sent", "x"),
                                            ("approved-b", "block_egress", "approved", "x"),
                                            ("held", "quarantine_workload", "awaiting_approval", "x"),
                                            ("gone", "quarantine_workload", "released", "x"),
                                            ("no-undo", "notify", "sent", "x"),
                                            ("other", "quarantine_workload", "sent", "y")):
        approvals.apply(*record({**base, "action_id": action_id, "action": action, "state": state,
                                 "alert_id": alert}))
    assert sorted(approvals.releasable({"x"})) == ["approved-b", "sent-q"]
    assert approvals.releasable({"z"}) == []


def test_a_rule_may_require_two_approvers() -> None:
    from streams.containment.policy import parse_policy

    policy = parse_policy("rules: [{name: r, approval_required: true, approvers: 2, actions: [revoke_api_key]}]")
    assert policy.rules[0].approvers == 2
    with pytest.raises(ValueError, match="approvers"):
        parse_policy("rules: [{name: r, approvers: 0, actions: [revoke_api_key]}]")


def test_groups_map_to_the_highest_role_they_grant() -> None:
    from streams.soc.oidc import role_for

    mapping = {"viewer": ("staff",), "responder": ("oncall",), "admin": ("leads",)}
    assert role_for(["staff", "oncall"], mapping) == "responder"
    assert role_for(["leads", "staff"], mapping) == "admin"
    assert role_for("staff", mapping) == "viewer"
    assert role_for(["contractors"], mapping) is None and role_for(None, mapping) is None


def test_an_expired_exception_gives_way_to_a_live_one_on_the_same_entity() -> None:
    from dataclasses import replace

    exceptions = Exceptions()
    known = frozenset({"cryptominer"})
    base = {"detector": "cryptominer", "reason": "r", "expires_in_s": 3600}
    old = new_exception({**base, "entity": "pod:ml-*"}, "ana", known)
    exceptions.apply(*replace(old, expires_ms=1).record())
    live = new_exception({**base, "entity": "pod:ml-batch/*"}, "ana", known)
    exceptions.apply(*live.record())
    exact = new_exception({**base, "entity": "pod:ml-exact/p"}, "ana", known)
    exceptions.apply(*exact.record())
    assert exceptions.match(finding("cryptominer", "pod:ml-batch/job")) == live.exception_id
    assert exceptions.match(finding("cryptominer", "pod:ml-other/job")) is None
    assert exceptions.match(finding("cryptominer", "pod:ml-exact/p")) == exact.exception_id
