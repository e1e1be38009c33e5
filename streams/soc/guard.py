"""Authentication, roles and CSRF for every endpoint of the worker's web server (an aiohttp middleware).

Who: a console session cookie (``/auth/login``) or an API token (``Authorization: Bearer awt_…``,
for the CLI and scripts; never accepted in a URL, so it cannot land in a log). Open without either:
``/health``, the sign-in page and ``/metrics`` when ``auth.metrics_public``.

What: reads need ``viewer``; every state-changing route names its role in ``ROUTE_ROLES``, and a
state-changing request to a route not listed there is refused (deny by default). A session's
state-changing request must carry its ``X-CSRF-Token`` (bearer tokens are not sent by browsers on
their own, so they need none).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import orjson
from aiohttp import web

from infra.settings import Settings
from streams import topics
from streams.soc.accounts import Accounts, User, allows, lock, session_end
from streams.soc.audit import audit_record
from streams.soc.compacted import TopicView
from streams.soc.sessions import COOKIE, CSRF_HEADER, Session, SessionCodec, Throttle, load_secret

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[1] / "console" / "static"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = frozenset({"/health", "/login", "/auth/login", "/auth/oidc/login", "/auth/oidc/callback",
                    "/static/login.js", "/static/console.css"})
#: (method, route) -> the least role allowed; state-changing routes not listed here are refused
ROUTE_ROLES: dict[tuple[str, str], str] = {
    ("POST", "/auth/logout"): "viewer",
    ("POST", "/alerts/triage"): "analyst",
    ("POST", "/exceptions"): "analyst",
    ("POST", "/exceptions/{exception_id}/revoke"): "analyst",
    ("POST", "/actions/{action_id}/approve"): "responder",
    ("POST", "/actions/{action_id}/deny"): "responder",
    ("POST", "/actions/{action_id}/release"): "responder",
    ("GET", "/audit"): "admin",
}


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: str
    via: str  # session | token
    source: str
    session: Session | None = None


Send = Callable[[str, bytes, bytes | None], Awaitable[None]]


def json_response(value: Any, status: int = 200, **headers: str) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json", headers=headers)


class Guard:
    def __init__(self, settings: Settings, accounts: Accounts, view: TopicView, send: Send) -> None:
        conf = settings.auth
        self.settings, self.accounts, self.view, self.send = settings, accounts, view, send
        self.codec = SessionCodec(load_secret(conf.session_secret.get_secret_value(), settings.state_dir.resolve()),
                                  conf.session_ttl_s)
        self.throttle = Throttle(conf.max_failures, conf.lockout_s, conf.max_attempts_per_ip)
        self.public = PUBLIC | ({"/metrics"} if conf.metrics_public else set())

    async def audit(self, principal: Principal | None, action: str, target: str = "",
                    detail: dict[str, Any] | None = None, outcome: str = "ok", *, actor: str = "",
                    source: str = "") -> None:
        key, value = audit_record(principal.user if principal else actor, principal.role if principal else "",
                                  principal.via if principal else "session", principal.source if principal else source,
                                  action, target, detail, outcome)
        await self.send(topics.AUDIT, key, value)

    def _user(self, name: str, issued_ms: int | None = None) -> User | None:
        user = self.accounts.active(name)
        # a user changed (role, password, disabled and enabled again) after the session began: sign in again
        if user is None or (issued_ms is not None and user.updated_ms > issued_ms):
            return None
        return user

    def authenticate(self, request: web.Request) -> Principal | None:
        source = request.remote or ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user = self.accounts.check_token(header.removeprefix("Bearer ").strip())
            return Principal(user.name, user.role, "token", source) if user else None
        cookie = request.cookies.get(COOKIE)
        session = self.codec.read(cookie) if cookie else None
        if session is None or session.sid in self.accounts.ended:
            return None
        if session.role:  # an OpenID Connect session: the provider vouched for the user, the cookie for the role
            return Principal(session.user, session.role, "session", source, session)
        user = self._user(session.user, session.issued_ms)
        return Principal(user.name, user.role, "session", source, session) if user else None

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path in self.public:
            return await handler(request)
        if not self.view.caught_up.is_set():
            return json_response({"error": "accounts are still being read from Kafka; try again"}, 503,
                                 **{"Retry-After": "2"})
        principal = self.authenticate(request)
        if principal is None:
            if request.method == "GET" and request.path == "/":
                return web.Response(status=302, headers={"Location": "/login"})
            return json_response({"error": "sign in, or send an API token as a bearer token"}, 401)
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else request.path
        needed = ROUTE_ROLES.get((request.method, canonical))
        if request.method not in SAFE_METHODS:
            if principal.via == "session" and principal.session is not None and not self.codec.check_csrf(
                    principal.session, request.headers.get(CSRF_HEADER)):
                return json_response({"error": f"missing or wrong {CSRF_HEADER} header"}, 403)
            if needed is None:
                return json_response({"error": f"{request.method} {canonical} is not allowed"}, 403)
        needed = needed or "viewer"
        if not allows(principal.role, needed):
            return json_response({"error": f"needs the {needed} role; {principal.user} is {principal.role}"}, 403)
        request["principal"] = principal
        return await handler(request)

    # -- sign-in and out

    async def login(self, request: web.Request) -> web.Response:
        source = request.remote or ""
        if request.content_type != "application/json":  # a cross-site form cannot send JSON: login CSRF
            return json_response({"error": 'send JSON: {"user": …, "password": …}'}, 415)
        if not self.view.caught_up.is_set():
            return json_response({"error": "accounts are still being read from Kafka; try again"}, 503)
        try:
            body = await request.json()
            name, password = str(body["user"])[:64], str(body["password"])[:1024]
        except (ValueError, KeyError, TypeError):
            return json_response({"error": "expected JSON {\"user\": …, \"password\": …}"}, 400)
        if not self.throttle.ip_allowed(source):
            await self.audit(None, "sign-in", name, {"reason": "too many attempts from this address"}, "refused",
                             actor=name, source=source)
            return json_response({"error": "too many sign-in attempts; wait a minute"}, 429, **{"Retry-After": "60"})
        now = int(time.time() * 1000)
        locked_until = self.accounts.locks.get(name, 0)
        if locked_until > now:
            await self.audit(None, "sign-in", name, {"reason": "locked"}, "refused", actor=name, source=source)
            wait = str(max(1, (locked_until - now) // 1000))
            return json_response({"error": f"{name} is locked after failed sign-ins; try again in {wait} s"}, 429,
                                 **{"Retry-After": wait})
        user = await asyncio.to_thread(self.accounts.check_password, name, password)
        if user is None:
            locked = self.throttle.failed(name)
            detail = {"reason": "wrong user or password", "locked": locked}
            if locked:
                until = now + self.settings.auth.lockout_s * 1000
                self.accounts.locks[name] = until  # at once here; other workers through the topic
                await self.send(topics.ACCOUNTS, *lock(name, until))
            await self.audit(None, "sign-in", name, detail, "refused", actor=name, source=source)
            return json_response({"error": "wrong user or password"}, 401)
        self.throttle.succeeded(name)
        previous = self.authenticate(request)
        if previous is not None and previous.session is not None:  # signing in again ends the old session
            await self._end(previous.session)
        cookie, session = self.codec.issue(user.name)
        principal = Principal(user.name, user.role, "session", source, session)
        await self.audit(principal, "sign-in")
        response = json_response({"user": user.name, "role": user.role, "csrf": self.codec.csrf(session),
                                  "expires_ms": session.expires_ms})
        self.start_session(response, cookie)
        return response

    def start_session(self, response: web.Response, cookie: str) -> None:
        response.set_cookie(COOKIE, cookie, max_age=self.codec.ttl_s, path="/", httponly=True, samesite="Strict",
                            secure=self.settings.auth.cookie_secure)

    async def _end(self, session: Session) -> None:
        self.accounts.ended[session.sid] = session.expires_ms
        await self.send(topics.ACCOUNTS, *session_end(session.sid, session.expires_ms))

    async def logout(self, request: web.Request) -> web.Response:
        principal: Principal = request["principal"]
        if principal.session is not None:
            await self._end(principal.session)
        await self.audit(principal, "sign-out")
        response = json_response({"signed_out": principal.user})
        response.del_cookie(COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        principal: Principal = request["principal"]
        session = principal.session
        return json_response({"user": principal.user, "role": principal.role, "via": principal.via,
                              "csrf": self.codec.csrf(session) if session else None,
                              "expires_ms": session.expires_ms if session else None})


def install(app: faust.App, settings: Settings, send: Send) -> Guard:
    """Read the accounts topic, put the guard in front of every route, add the sign-in routes."""
    accounts = Accounts()
    view = TopicView(settings, topics.ACCOUNTS, accounts.apply)
    guard = Guard(settings, accounts, view, send)
    web_app = app.web.web_app  # type: ignore[attr-defined]
    web_app.middlewares.append(guard.middleware)

    sso = '<p><a id="sso" href="/auth/oidc/login">Sign in with single sign-on</a></p>' if settings.oidc.issuer else ""

    async def login_page(request: web.Request) -> web.Response:
        page = (STATIC / "login.html").read_text().replace("<!-- sso -->", sso)
        return web.Response(text=page, content_type="text/html")

    web_app.router.add_get("/login", login_page)
    web_app.router.add_post("/auth/login", guard.login)
    web_app.router.add_post("/auth/logout", guard.logout)
    web_app.router.add_get("/auth/me", guard.me)
    if settings.oidc.issuer:
        from streams.soc.oidc import OIDCLogin

        OIDCLogin(settings, guard).register(web_app.router)

    @app.task  # type: ignore[untyped-decorator]
    async def accounts_view() -> None:
        await view.run_until_cancelled()

    app.aiwarden_guard = guard  # type: ignore[attr-defined]
    return guard
