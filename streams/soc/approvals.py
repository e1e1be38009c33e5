"""Containment actions a human acts on: approve or deny those a rule holds for approval, release those
carried out. One record per action on the compacted ``aiwarden.approvals`` (key: action id), read
whole by every worker.

States: ``awaiting_approval`` → ``approved`` (enough distinct approvers: handed to the policy's
blast-radius budget, then the signed delivery) | ``denied`` (with a reason) | ``expired`` (not approved
within ``containment.max_action_age_s``); ``sent`` (handed to delivery without approval) and ``approved``
→ ``released`` (the matching release webhook is sent: by a responder, or by resolving the alert as
one of ``containment.release_on_resolutions``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from schemas.findings import stable_id

#: containment action -> the webhook that undoes it
RELEASES = {"quarantine_workload": "release_workload", "block_egress": "unblock_egress",
            "revoke_api_key": "restore_api_key"}


class ApprovalError(ValueError):
    """An approval, denial or release that cannot happen (``status`` is the HTTP status to answer)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def now_ms() -> int:
    return int(time.time() * 1000)


def record(row: dict[str, Any]) -> tuple[bytes, bytes]:
    return str(row["action_id"]).encode(), orjson.dumps(row)


class Approvals:
    def __init__(self, max_age_s: float) -> None:
        self.max_age_ms = int(max_age_s * 1000)
        self.rows: dict[str, dict[str, Any]] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.rows.pop(key.decode(), None)
        else:
            self.rows[key.decode()] = orjson.loads(value)

    def state(self, row: dict[str, Any], now: int | None = None) -> str:
        current = now_ms() if now is None else now
        if row["state"] == "awaiting_approval" and current - int(row["decided_ms"]) > self.max_age_ms:
            return "expired"
        return str(row["state"])

    def listing(self, state: str = "") -> list[dict[str, Any]]:
        rows = [{**row, "state": self.state(row)} for row in self.rows.values()]
        return sorted((r for r in rows if not state or r["state"] == state), key=lambda r: -int(r["decided_ms"]))

    def get(self, action_id: str) -> dict[str, Any]:
        row = self.rows.get(action_id)
        if row is None:
            msg = f"no action {action_id[:80]!r} awaiting a decision or carried out"
            raise ApprovalError(msg, 404)
        return row

    def approve(self, action_id: str, user: str) -> dict[str, Any]:
        """The row with ``user``'s approval added (``state`` approved once enough distinct people agreed)."""
        row = self.get(action_id)
        state = self.state(row)
        if state != "awaiting_approval":
            msg = f"action {action_id} is {state}, not awaiting approval"
            raise ApprovalError(msg)
        approvals = list(row.get("approvals", []))
        if any(a["user"] == user for a in approvals):
            msg = f"{user} already approved {action_id}: it needs another person"
            raise ApprovalError(msg)
        approvals.append({"user": user, "time_ms": now_ms()})
        done = len(approvals) >= int(row.get("approvers", 1))
        return {**row, "approvals": approvals, "state": "approved" if done else "awaiting_approval"}

    def deny(self, action_id: str, user: str, reason: str) -> dict[str, Any]:
        row = self.get(action_id)
        state = self.state(row)
        if state != "awaiting_approval":
            msg = f"action {action_id} is {state}, not awaiting approval"
            raise ApprovalError(msg)
        if not reason.strip():
            msg = "denying needs a reason"
            raise ApprovalError(msg, 400)
        return {**row, "state": "denied", "denied_by": user, "reason": reason[:1000], "denied_ms": now_ms()}

    def releasable(self, alert_ids: set[str]) -> list[str]:
        """The carried-out actions of ``alert_ids`` that have a release (oldest first)."""
        rows = [r for r in self.rows.values() if r.get("alert_id") in alert_ids and r["action"] in RELEASES
                and self.state(r) in ("sent", "approved")]
        return [str(r["action_id"]) for r in sorted(rows, key=lambda r: int(r["decided_ms"]))]

    def release(self, action_id: str, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the row marked released, the release action for delivery)."""
        row = self.get(action_id)
        state = self.state(row)
        if state not in ("sent", "approved"):
            msg = f"action {action_id} is {state}: only carried-out actions can be released"
            raise ApprovalError(msg)
        undo = RELEASES.get(str(row["action"]))
        if undo is None:
            msg = f"{row['action']} has no release"
            raise ApprovalError(msg, 400)
        now = now_ms()
        action = {**{k: v for k, v in row.items() if k not in ("state", "approvals", "approvers")},
                  "action_id": stable_id(action_id, "release"), "action": undo, "releases": action_id,
                  "status": "pending", "reason": f"released by {user}", "attempt": 1, "decided_ms": now,
                  "time_ms": now}
        return {**row, "state": "released", "released_by": user, "released_ms": now}, action
