"""The SOC workflow's HTTP endpoints (behind ``streams.soc.guard``).

``POST /alerts/triage`` status / resolution / assignee / comment of one or many alerts (analyst) ·
``GET /queue`` alerts of any age by triage status and assignee, from ClickHouse · ``GET /alerts/{id}/triage``
an alert's triage history · ``GET /triage/stream`` triage changes live (SSE) · ``GET /audit`` (admin).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import orjson
from aiohttp import web

from streams import topics
from streams.console.feed import AlertFeed
from streams.console.queries import ConsoleQueries
from streams.console.views import sse
from streams.hunt import HuntError
from streams.soc import triage
from streams.soc.guard import Guard, Principal, json_response

log = logging.getLogger(__name__)


def _int(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        msg = f"query parameter {name}={text[:40]!r} is not an integer"
        raise triage.TriageError(msg) from None


async def _read(fn: Any, *args: Any) -> web.Response:
    try:
        return json_response(await asyncio.to_thread(fn, *args))
    except triage.TriageError as exc:
        return json_response({"error": str(exc)}, 400)
    except HuntError as exc:
        return json_response({"error": f"ClickHouse: {exc}"}, 503)


def register(app: faust.App, guard: Guard, queries: ConsoleQueries, triage_feed: AlertFeed) -> None:
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
        return json_response({"changed": [r["alert_id"] for r in records], "triage_ids": [r["triage_id"]
                                                                                            for r in records]})

    async def get_queue(request: web.Request) -> web.Response:
        statuses = [s for value in request.query.getall("status", []) for s in value.split(",") if s]
        try:
            limit = _int(request, "limit", 200)
        except triage.TriageError as exc:
            return json_response({"error": str(exc)}, 400)
        return await _read(triage.queue, queries, statuses or ["open", "acknowledged"],
                           request.query.get("assignee", ""), limit)

    async def get_history(request: web.Request) -> web.Response:
        return await _read(triage.history, queries, request.match_info["alert_id"])

    async def triage_stream(request: web.Request) -> Any:
        return await sse(request, triage_feed, "triage", lambda _record: True)

    async def get_audit(request: web.Request) -> web.Response:
        try:
            limit, since = _int(request, "limit", 200), _int(request, "since_ms", 0)
        except triage.TriageError as exc:
            return json_response({"error": str(exc)}, 400)
        return await _read(triage.audit_log, queries, limit, since, request.query.get("actor", ""))

    router.add_post("/alerts/triage", post_triage)
    router.add_get("/queue", get_queue)
    router.add_get("/alerts/{alert_id}/triage", get_history)
    router.add_get("/triage/stream", triage_stream)
    router.add_get("/audit", get_audit)

    @app.task  # type: ignore[untyped-decorator]
    async def triage_follow() -> None:
        while True:
            try:
                await triage_feed.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the broker may be restarting: read on from where it stopped
                log.exception("the triage feed failed; retrying in 5 s")
                await asyncio.sleep(5)
