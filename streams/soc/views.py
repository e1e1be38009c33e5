"""The SOC workflow's HTTP endpoints (behind ``streams.soc.guard``).

``POST /alerts/triage`` status / resolution / assignee / comment of one or many alerts (analyst) ·
``GET /queue`` alerts of any age by triage status and assignee, from ClickHouse · ``GET /alerts/{id}/triage``
an alert's triage history · ``GET /triage/stream`` triage changes live (SSE) · ``GET /audit`` (admin) ·
``GET|POST /exceptions``, ``POST /exceptions/{id}/revoke`` (analyst) · ``GET /actions?state=`` ·
``POST /actions/{id}/approve|deny|release`` (responder).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

import faust
import orjson
from aiohttp import web

from infra.settings import Settings
from schemas.findings import Alert
from streams import topics
from streams.agents.containment import log_row
from streams.console.feed import AlertFeed
from streams.console.filters import FilterError
from streams.console.queries import ConsoleQueries
from streams.console.views import query_int, read_forever, sse
from streams.hunt import HuntError
from streams.integrations.ocsf import triage_finding
from streams.soc import triage
from streams.soc.accounts import allows
from streams.soc.approvals import ApprovalError, Approvals, record
from streams.soc.compacted import TopicView
from streams.soc.exceptions import Exceptions, new_exception
from streams.soc.guard import Guard, Principal, json_response

log = logging.getLogger(__name__)


async def _read(fn: Any, *args: Any) -> web.Response:
    try:
        return json_response(await asyncio.to_thread(fn, *args))
    except triage.TriageError as exc:
        return json_response({"error": str(exc)}, 400)
    except HuntError as exc:
        return json_response({"error": f"ClickHouse: {exc}"}, 503)


async def send_ocsf(guard: Guard, queries: ConsoleQueries, records: list[dict[str, Any]]) -> list[str]:
    """Status changes as OCSF records on ``aiwarden.ocsf`` (``ocsf.triage_finding``); the ids of alerts it could
    not send (not in ClickHouse yet, or ClickHouse unreachable), which the response names."""
    changes = {r["alert_id"]: r for r in records if r["status"]}
    if not changes:
        return []
    try:
        stored = {row["alert_id"]: row for row in await asyncio.to_thread(queries.latest, list(changes))}
    except Exception as exc:  # noqa: BLE001 - the triage is recorded; the response names what OCSF missed
        log.warning("triage: no OCSF records for %d alerts, ClickHouse: %s", len(changes), exc)
        return list(changes)
    missing = [alert_id for alert_id in changes if alert_id not in stored]
    if missing:
        log.warning("triage: no OCSF record for %d alerts not in ClickHouse yet: %s", len(missing), missing[:5])
    for alert_id, row in stored.items():
        record = triage_finding(Alert.from_dict(row), changes[alert_id])
        if record is None:
            continue
        try:
            await guard.send(topics.OCSF, alert_id.encode(), orjson.dumps(record))
        except Exception as exc:  # noqa: BLE001 - as above: named in the response
            log.warning("triage: OCSF record of alert %s not sent: %s", alert_id, exc)
            missing.append(alert_id)
    return missing


def register(app: faust.App, settings: Settings, guard: Guard, queries: ConsoleQueries,
             triage_feed: AlertFeed) -> None:
    router = app.web.web_app.router  # type: ignore[attr-defined]

    async def post_triage(request: web.Request) -> web.Response:
        principal: Principal = request["principal"]
        try:
            records = triage.triage_records(principal.user, await request.json())
        except ValueError as exc:  # TriageError, or a body that is not JSON
            return json_response({"error": f"triage request: {exc}"}, 400)
        for row in records:
            await guard.send(topics.TRIAGE, row["alert_id"].encode(), orjson.dumps(row))
        changed = {k: records[0][k] for k in ("status", "resolution", "assignee", "comment") if records[0][k]}
        if records[0]["assigned"]:
            changed["assignee"] = records[0]["assignee"]
        for row in records:
            await guard.audit(principal, "triage", row["alert_id"], changed)
        unstored = await send_ocsf(guard, queries, records)
        released, kept = await release_resolved(principal, records)
        return json_response({"changed": [r["alert_id"] for r in records], "triage_ids": [r["triage_id"]
                                                                                            for r in records],
                              **({"ocsf_not_sent": unstored} if unstored else {}),
                              **({"released": released} if released else {}),
                              **({"containment_kept": kept} if kept else {})})

    async def release_resolved(principal: Principal, records: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
        """Resolved as one of ``release_on_resolutions``: the alerts' carried-out containment released if
        ``principal`` may release (responder), else kept and said why; (released action ids, kept)."""
        resolved = {r["alert_id"] for r in records
                    if r["status"] == "resolved" and r["resolution"] in settings.containment.release_on_resolutions}
        actions = approvals.releasable(resolved) if resolved else []
        if not actions:
            return [], {}
        if not allows(principal.role, "responder"):
            return [], {"actions": actions, "reason": f"releasing containment needs a responder; {principal.user} is "
                                                      f"{principal.role}: POST /actions/{{id}}/release"}
        released = []
        for action_id in actions:
            try:
                await release_action(principal, action_id, f"{records[0]['resolution']} resolution")
            except ApprovalError as exc:  # released meanwhile by someone else
                log.warning("triage: action %s not released: %s", action_id, exc)
                continue
            released.append(action_id)
        return released, {}

    async def get_queue(request: web.Request) -> web.Response:
        statuses = [s for value in request.query.getall("status", []) for s in value.split(",") if s]
        try:
            limit = query_int(request, "limit", 200)
        except FilterError as exc:
            return json_response({"error": str(exc)}, 400)
        return await _read(triage.queue, queries, statuses or ["open", "acknowledged"],
                           request.query.get("assignee", ""), limit)

    async def get_history(request: web.Request) -> web.Response:
        return await _read(triage.history, queries, request.match_info["alert_id"])

    async def triage_stream(request: web.Request) -> Any:
        return await sse(request, triage_feed, "triage", lambda _record: True)

    async def get_audit(request: web.Request) -> web.Response:
        try:
            limit, since = query_int(request, "limit", 200), query_int(request, "since_ms", 0)
        except FilterError as exc:
            return json_response({"error": str(exc)}, 400)
        return await _read(triage.audit_log, queries, limit, since, request.query.get("actor", ""))

    exceptions: Exceptions = getattr(app, "aiwarden_exceptions", None) or Exceptions()

    async def list_exceptions(request: web.Request) -> web.Response:
        now = int(time.time() * 1000)
        rows = [{**asdict(e), "live": e.live(now)} for e in exceptions.all.values()]
        return json_response(sorted(rows, key=lambda r: -r["created_ms"]))

    async def post_exception(request: web.Request) -> web.Response:
        from detectors.registry import DETECTORS

        principal: Principal = request["principal"]
        try:
            item = new_exception(await request.json(), principal.user, frozenset(DETECTORS))
        except ValueError as exc:
            return json_response({"error": f"exception: {exc}"}, 400)
        await guard.send(topics.EXCEPTIONS, *item.record())
        exceptions.apply(*item.record())  # in force here at once; on other workers through the topic
        await guard.audit(principal, "exception add", item.exception_id, asdict(item))
        return json_response(asdict(item))

    async def revoke_exception(request: web.Request) -> web.Response:
        principal: Principal = request["principal"]
        item = exceptions.all.get(request.match_info["exception_id"])
        if item is None:
            return json_response({"error": "no such exception"}, 404)
        revoked = item.revoke()
        await guard.send(topics.EXCEPTIONS, *revoked.record())
        exceptions.apply(*revoked.record())
        await guard.audit(principal, "exception revoke", item.exception_id, {"detector": item.detector,
                                                                              "entity": item.entity})
        return json_response(asdict(revoked))

    approvals = Approvals(settings.containment.max_action_age_s)
    approvals_view = TopicView(settings, topics.APPROVALS, approvals.apply)

    async def list_actions(request: web.Request) -> web.Response:
        return json_response(approvals.listing(request.query.get("state", "")))

    async def decide_action(request: web.Request) -> web.Response:
        """approve | deny | release one action (the route's last part says which)."""
        principal: Principal = request["principal"]
        action_id, verb = request.match_info["action_id"], request.path.rsplit("/", 1)[1]
        try:
            body = await request.json() if request.can_read_body else {}
            if verb == "approve":
                row = approvals.approve(action_id, principal.user)
            elif verb == "deny":
                row = approvals.deny(action_id, principal.user, str((body or {}).get("reason") or ""))
            else:
                row = await release_action(principal, action_id)
        except ApprovalError as exc:
            await guard.audit(principal, f"action {verb}", action_id, {"refused": str(exc)}, "refused")
            return json_response({"error": str(exc)}, exc.status)
        except ValueError as exc:
            return json_response({"error": f"{verb}: body is not JSON ({exc})"}, 400)
        if verb == "release":  # release_action sent, logged and audited it
            return json_response({**row, "state": approvals.state(row)})
        await guard.send(topics.APPROVALS, *record(row))
        approvals.apply(*record(row))  # here at once; on other workers through the topic
        if verb == "approve" and row["state"] == "approved":
            decide = app.aiwarden_decide_topic  # type: ignore[attr-defined]
            await (await decide.send(key=b"policy", value=orjson.dumps({"approved_action": row})))
        elif verb == "deny":
            await guard.send(topics.ACTION_LOG, action_id.encode(), orjson.dumps(log_row(
                row, "denied", detail=f"denied by {principal.user}: {row['reason']}"[:500])))
        await guard.audit(principal, f"action {verb}", action_id, action_detail(row))
        return json_response({**row, "state": approvals.state(row)})

    def action_detail(row: dict[str, Any]) -> dict[str, Any]:
        detail = {"action": row["action"], "target": row["target"], "state": row["state"],
                  "approvals": [a["user"] for a in row.get("approvals", [])]}
        if row["state"] == "denied":
            detail["reason"] = row["reason"]
        return detail

    async def release_action(principal: Principal, action_id: str, why: str = "") -> dict[str, Any]:
        """Release one carried-out action: the row marked released, its release webhook to delivery, audited."""
        row, release = approvals.release(action_id, principal.user)
        await guard.send(topics.APPROVALS, *record(row))
        approvals.apply(*record(row))
        await guard.send(topics.ACTIONS, release["action_id"].encode(), orjson.dumps(release))
        by = f"{principal.user} ({why})" if why else principal.user
        await guard.send(topics.ACTION_LOG, release["action_id"].encode(), orjson.dumps(log_row(
            release, "pending", detail=f"release of {action_id} by {by}")))
        detail = action_detail(row) | ({"why": why} if why else {})
        await guard.audit(principal, "action release", action_id, detail)
        return row

    router.add_get("/actions", list_actions)
    for verb in ("approve", "deny", "release"):
        router.add_post(f"/actions/{{action_id}}/{verb}", decide_action)

    @app.task  # type: ignore[untyped-decorator]
    async def approvals_follow() -> None:
        await approvals_view.run_until_cancelled()

    router.add_get("/exceptions", list_exceptions)
    router.add_post("/exceptions", post_exception)
    router.add_post("/exceptions/{exception_id}/revoke", revoke_exception)
    router.add_post("/alerts/triage", post_triage)
    router.add_get("/queue", get_queue)
    router.add_get("/alerts/{alert_id}/triage", get_history)
    router.add_get("/triage/stream", triage_stream)
    router.add_get("/audit", get_audit)

    @app.task  # type: ignore[untyped-decorator]
    async def triage_follow() -> None:
        await read_forever(triage_feed)
