"""Alert triage: status ``open → acknowledged → resolved`` with a resolution, assignee and comments.

Each change is a record on ``aiwarden.alert-triage`` (every console follows it live over SSE) and a
row in ClickHouse ``alert_triage``; an alert's current triage is folded from its rows (latest
status, latest assignment, comment count), so hunters can also ask how long alerts waited.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from streams.console.queries import ALERT_COLUMNS, MAX_LIMIT, ConsoleQueries

STATUSES = ("open", "acknowledged", "resolved")
RESOLUTIONS = ("true_positive", "false_positive", "benign", "duplicate")
MAX_BULK = 500


class TriageError(ValueError):
    """A triage request that cannot be applied (the message says what to change)."""


def triage_records(actor: str, body: Any) -> list[dict[str, Any]]:
    """One change record per alert of a request ``{alert_ids, status?, resolution?, assignee?, comment?}``."""
    if not isinstance(body, dict):
        msg = "expected a JSON object {alert_ids, status?, resolution?, assignee?, comment?}"
        raise TriageError(msg)
    ids = body.get("alert_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids):
        msg = "alert_ids: a non-empty list of alert ids"
        raise TriageError(msg)
    if len(ids) > MAX_BULK:
        msg = f"alert_ids: at most {MAX_BULK} at once"
        raise TriageError(msg)
    status = body.get("status") or ""
    resolution = body.get("resolution") or ""
    if status and status not in STATUSES:
        msg = f"status {str(status)[:40]!r}: one of {', '.join(STATUSES)}"
        raise TriageError(msg)
    if status == "resolved" and resolution not in RESOLUTIONS:
        msg = f"resolving needs a resolution: one of {', '.join(RESOLUTIONS)}"
        raise TriageError(msg)
    if resolution and status != "resolved":
        msg = "a resolution goes with status resolved"
        raise TriageError(msg)
    assigned = "assignee" in body and body["assignee"] is not None
    assignee = str(body.get("assignee") or "")[:64]
    comment = str(body.get("comment") or "")[:4000]
    if not (status or assigned or comment):
        msg = "nothing to change: give status, assignee or comment"
        raise TriageError(msg)
    now = int(time.time() * 1000)
    return [{"triage_id": uuid.uuid4().hex, "alert_id": alert_id, "time_ms": now, "actor": actor, "status": status,
             "resolution": resolution, "assignee": assignee, "assigned": int(assigned), "comment": comment}
            for alert_id in dict.fromkeys(ids)]


def queue(queries: ConsoleQueries, statuses: list[str], assignee: str, limit: int) -> list[dict[str, Any]]:
    """Alerts of any age whose triage status is one of ``statuses`` (assigned to ``assignee`` when given),
    with their triage, newest activity first."""
    for status in statuses:
        if status not in STATUSES:
            msg = f"status {status[:40]!r}: one of {', '.join(STATUSES)}"
            raise TriageError(msg)
    db = queries.db
    sql = f"""
        SELECT {ALERT_COLUMNS}, if(t.st = '', 'open', t.st) AS triage_status,
               t.res AS resolution, t.who AS assignee, t.n AS comments
        FROM (SELECT {ALERT_COLUMNS} FROM {db}.alerts FINAL WHERE status != 'merged') AS a
        LEFT JOIN (
            SELECT alert_id, argMaxIf(status, time_ms, status != '') AS st,
                   argMaxIf(resolution, time_ms, status != '') AS res,
                   argMaxIf(assignee, time_ms, assigned = 1) AS who,
                   uniqExactIf(triage_id, comment != '') AS n
            FROM {db}.alert_triage GROUP BY alert_id
        ) AS t USING alert_id
        WHERE triage_status IN {{statuses:Array(String)}}
          AND ({{assignee:String}} = '' OR assignee = {{assignee:String}})
        ORDER BY last_seen DESC, risk_score DESC
        LIMIT {{limit:UInt32}}
    """  # noqa: S608 - the database name is a setting, values are bound
    return queries.rows(sql, {"statuses": statuses or list(STATUSES), "assignee": assignee,
                              "limit": min(max(limit, 1), MAX_LIMIT)}, MAX_LIMIT)


def history(queries: ConsoleQueries, alert_id: str) -> list[dict[str, Any]]:
    sql = f"""
        SELECT triage_id, alert_id, time_ms, actor, status, resolution, assignee, assigned, comment
        FROM {queries.db}.alert_triage WHERE alert_id = {{alert_id:String}} ORDER BY time_ms
    """  # noqa: S608 - the database name is a setting, values are bound
    return queries.rows(sql, {"alert_id": alert_id}, MAX_LIMIT)


def audit_log(queries: ConsoleQueries, limit: int, since_ms: int, actor: str = "") -> list[dict[str, Any]]:
    sql = f"""
        SELECT audit_id, time_ms, actor, role, via, source, action, target, outcome, detail
        FROM {queries.db}.audit_log
        WHERE time_ms >= {{since:Int64}} AND ({{actor:String}} = '' OR actor = {{actor:String}})
        ORDER BY time_ms DESC LIMIT {{limit:UInt32}}
    """  # noqa: S608 - the database name is a setting, values are bound
    params = {"since": since_ms, "actor": actor, "limit": min(max(limit, 1), MAX_LIMIT)}
    return queries.rows(sql, params, MAX_LIMIT)
