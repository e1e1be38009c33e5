"""Audit records: every human action with who, when, from where and what changed (→ ``aiwarden.audit``
→ ClickHouse ``audit_log``). Nothing in aiwarden edits or deletes them."""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from typing import Any

import orjson


def audit_record(actor: str, role: str, via: str, source: str, action: str, target: str = "",
                 detail: dict[str, Any] | None = None, outcome: str = "ok") -> tuple[bytes, bytes]:
    """``(key, value)`` for the audit topic; ``via`` is session, token or cli, ``source`` the client address."""
    audit_id = uuid.uuid4().hex
    row = {
        "audit_id": audit_id, "time_ms": int(time.time() * 1000), "actor": actor, "role": role, "via": via,
        "source": source, "action": action, "target": target[:300], "outcome": outcome,
        "detail": orjson.dumps(detail or {}).decode()[:4000],
    }
    return audit_id.encode(), orjson.dumps(row)


def cli_actor() -> tuple[str, str]:
    """Who runs a CLI command that writes to Kafka directly (``cli:<os user>``) and from where."""
    return f"cli:{getpass.getuser()}", socket.gethostname()
