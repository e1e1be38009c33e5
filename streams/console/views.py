"""The console's HTTP endpoints on the worker's web server (Faust web, aiohttp, 127.0.0.1 by default).

``GET /`` the console page · ``/alerts/stream`` live alerts (Server-Sent Events, resumable with
``Last-Event-ID``) · ``/alerts`` recent alerts · ``/alerts/{id}`` one alert with its evidence ·
``/entities/{id}/timeline`` · ``/inventory`` · ``/dead-letters`` · ``/techniques`` (ATLAS / ATT&CK / OWASP
ids → name and page). Filters: ``min_severity``, ``detector`` (repeatable), ``entity``; lists take ``limit``
and ``since_ms``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from streams.console.feed import HEARTBEAT, AlertFeed, CursorError, Overflow, parse_cursor
from streams.console.filters import AlertFilter, FilterError
from streams.console.queries import ConsoleQueries
from streams.hunt import HuntError

log = logging.getLogger(__name__)


def technique_links() -> dict[str, Any]:
    """What the console links technique ids with: every id's name and page, and each detector's OWASP LLM
    Top 10 categories (shown beside its ATLAS techniques)."""
    from detectors.registry import DETECTORS
    from schemas.techniques import links

    return {"links": links(), "owasp": {name: list(cls.owasp_llm) for name, cls in DETECTORS.items()}}

STATIC = Path(__file__).parent / "static"
RETRY_MS = 2000


def _filter(request: Any) -> AlertFilter:
    return AlertFilter.of(request.query.get("min_severity"), request.query.getall("detector", []),
                          request.query.get("entity"))


def query_int(request: Any, name: str, default: int) -> int:
    """An integer query parameter; ``FilterError`` naming it when it is not one."""
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        msg = f"query parameter {name}={text[:40]!r} is not an integer"
        raise FilterError(msg) from None


def sse_frame(item_id: str | None, event: str, data: bytes) -> bytes:
    head = f"id: {item_id}\n" if item_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


async def sse(request: Any, feed: AlertFeed, event: str, matches: Any) -> Any:
    """Follow ``feed`` as Server-Sent Events named ``event`` (records ``matches`` accepts), resumable
    with ``Last-Event-ID``; ``backlog`` = how many buffered records a new client gets first."""
    try:
        last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        cursor = parse_cursor(last) if last else None
        backlog = query_int(request, "backlog", 50)
    except (FilterError, CursorError) as exc:
        return aioweb.json_response({"error": str(exc)}, status=400)
    response = aioweb.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    try:
        async for item in feed.follow(cursor, backlog):
            if item is HEARTBEAT:
                await response.write(b": keepalive\n\n")
            elif matches(item.alert):
                await response.write(sse_frame(item.cursor, event, orjson.dumps(item.alert)))
    except Overflow:
        await response.write(sse_frame(None, "overflow", b'{"reconnect": true}'))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away, or the worker stops
    return response


def register(app: faust.App, feed: AlertFeed, queries: ConsoleQueries) -> None:
    """Add the console's pages and the static assets to ``app``'s web server."""

    def json(view: View, value: Any, status: int = 200) -> Response:
        return view.bytes(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS), content_type="application/json",
                          status=status)

    async def query(view: View, fn: Any, *args: Any) -> Response:
        try:
            return json(view, await asyncio.to_thread(fn, *args))
        except FilterError as exc:
            return json(view, {"error": str(exc)}, 400)
        except HuntError as exc:
            return json(view, {"error": f"ClickHouse: {exc}"}, 503)

    @app.page("/")
    class Console(View):
        async def get(self, request: Request) -> Response:
            return self.html((STATIC / "index.html").read_text())

    @app.page("/alerts/stream")
    class AlertStream(View):
        """Server-Sent Events: ``event: alert`` with the alert as JSON, ``id`` = the feed cursor."""

        async def get(self, request: Request) -> Any:
            try:
                alert_filter = _filter(request)
            except FilterError as exc:
                return json(self, {"error": str(exc)}, 400)
            return await sse(request, feed, "alert", alert_filter.matches)

    @app.page("/alerts")
    class Alerts(View):
        async def get(self, request: Request) -> Response:
            try:
                args = (_filter(request), query_int(request, "limit", 100), query_int(request, "since_ms", 0))
            except FilterError as exc:
                return json(self, {"error": str(exc)}, 400)
            return await query(self, queries.alerts, *args)

    @app.page("/alerts/{alert_id}")
    class AlertDetail(View):
        async def get(self, request: Request, alert_id: str) -> Response:
            try:
                alert = await asyncio.to_thread(queries.alert, alert_id)
            except HuntError as exc:
                return json(self, {"error": f"ClickHouse: {exc}"}, 503)
            if alert is None:
                return json(self, {"error": f"no alert {alert_id[:80]!r} in ClickHouse (yet)"}, 404)
            return json(self, alert)

    @app.page("/entities/{entity_id:.+}/timeline")
    class Timeline(View):
        async def get(self, request: Request, entity_id: str) -> Response:
            try:
                args = (entity_id, query_int(request, "limit", 200), query_int(request, "since_ms", 0))
            except FilterError as exc:
                return json(self, {"error": str(exc)}, 400)
            return await query(self, queries.timeline, *args)

    @app.page("/workloads/{entity_id:.+}")
    class Workload(View):
        """A workload's AI packages, their vulnerabilities (in use first) and the attack paths it is part of."""

        async def get(self, request: Request, entity_id: str) -> Response:
            try:
                limit = query_int(request, "limit", 500)
            except FilterError as exc:
                return json(self, {"error": str(exc)}, 400)
            return await query(self, queries.workload, entity_id, limit)

    @app.page("/inventory")
    class InventoryView(View):
        async def get(self, request: Request) -> Response:
            try:
                limit = query_int(request, "limit", 500)
            except FilterError as exc:
                return json(self, {"error": str(exc)}, 400)
            return await query(self, queries.inventory, limit)

    @app.page("/dead-letters")
    class DeadLetters(View):
        """Dead letters per reason and source, and the newest ones."""

        async def get(self, request: Request) -> Response:
            try:
                args = (query_int(request, "limit", 50), query_int(request, "since_ms", 0))
            except FilterError as exc:
                return json(self, {"error": str(exc)}, 400)
            return await query(self, queries.dead_letters, *args)

    techniques = orjson.dumps(technique_links())

    @app.page("/techniques")
    class Techniques(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(techniques, content_type="application/json",
                              headers={"Cache-Control": "private, max-age=3600"})  # behind sign-in

    app.web.add_static("/static/", STATIC)

    @app.task  # type: ignore[untyped-decorator]
    async def alert_feed() -> None:
        await read_forever(feed)


async def read_forever(feed: AlertFeed) -> None:
    """Run ``feed`` until cancelled, going on from where it stopped after a failure."""
    while True:
        try:
            await feed.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the broker may be restarting: read on from where it stopped
            log.exception("the feed of %s failed; retrying in 5 s", feed.topic)
            await asyncio.sleep(5)
