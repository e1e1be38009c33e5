"""Console sign-in with OpenID Connect: authorization code flow with PKCE, the groups claim mapped to roles.

``GET /auth/oidc/login`` redirects to the provider with a fresh ``state``, ``nonce`` and PKCE
``code_challenge`` (S256); the three travel in a short-lived signed HttpOnly cookie. ``GET
/auth/oidc/callback`` checks ``state``, redeems the code with the PKCE verifier, verifies the ID token
(signature against the provider's JWKS, issuer, audience, expiry, nonce) and maps its groups claim
through ``oidc.role_groups`` to the highest role granted; no role: refused. The session then works
like a local one (same cookie, CSRF, expiry, sign-out), carrying the role the provider's groups gave.
"""

from __future__ import annotations

import html
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from infra.settings import Settings
from streams.soc.accounts import RANK, ROLES
from streams.soc.guard import Guard, Principal, json_response

log = logging.getLogger(__name__)

FLOW_COOKIE = "aiwarden_oidc"
FLOW_TTL_S = 600


class OIDCError(Exception):
    """The provider's answer cannot be trusted or grants no role (the message is safe to show)."""


def role_for(groups: object, role_groups: dict[str, tuple[str, ...]]) -> str | None:
    """The highest role any of ``groups`` grants."""
    names = {str(g) for g in groups} if isinstance(groups, list | tuple) else ({groups} if groups else set())
    granted = [role for role, wanted in role_groups.items() if role in RANK and names & set(wanted)]
    return max(granted, key=RANK.__getitem__) if granted else None


class OIDCLogin:
    def __init__(self, settings: Settings, guard: Guard) -> None:
        self.conf, self.guard = settings.oidc, guard
        self._discovery: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        unknown = set(self.conf.role_groups) - set(ROLES)
        if unknown:
            msg = f"AIWARDEN_OIDC__ROLE_GROUPS: unknown role(s) {sorted(unknown)}; roles: {', '.join(ROLES)}"
            raise ValueError(msg)

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/auth/oidc/login", self.login)
        router.add_get("/auth/oidc/callback", self.callback)

    async def _provider(self, client: httpx.AsyncClient) -> dict[str, Any]:
        if self._discovery is None:
            issuer = (self.conf.issuer or "").rstrip("/")
            response = await client.get(f"{issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            self._discovery = response.json()
        return self._discovery

    async def _jwks(self, client: httpx.AsyncClient, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            response = await client.get((await self._provider(client))["jwks_uri"])
            response.raise_for_status()
            self._keys = KeySet.import_key_set(response.json())
        return self._keys

    def _redirect_url(self, request: web.Request) -> str:
        return self.conf.redirect_url or f"{request.scheme}://{request.host}/auth/oidc/callback"

    async def login(self, request: web.Request) -> web.StreamResponse:
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                provider = await self._provider(client)
            except (httpx.HTTPError, ValueError) as exc:
                return json_response({"error": f"OpenID Connect provider unreachable: {type(exc).__name__}"}, 503)
        state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
        verifier += secrets.token_urlsafe(24)  # 43..128 characters
        query = urlencode({
            "response_type": "code", "client_id": self.conf.client_id, "redirect_uri": self._redirect_url(request),
            "scope": self.conf.scopes, "state": state, "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
        })
        response = web.Response(status=302, headers={"Location": f"{provider['authorization_endpoint']}?{query}"})
        flow = self.guard.codec.seal({"state": state, "nonce": nonce, "verifier": verifier,
                                      "exp": int(time.time()) + FLOW_TTL_S})
        # Lax, not Strict: the provider's redirect back is a cross-site navigation that must carry it
        response.set_cookie(FLOW_COOKIE, flow, max_age=FLOW_TTL_S, path="/auth/oidc/", httponly=True,
                            samesite="Lax", secure=self.guard.settings.auth.cookie_secure)
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        source = request.remote or ""
        try:
            flow = self.guard.codec.unseal(request.cookies.get(FLOW_COOKIE, ""))
            if flow is None or int(str(flow["exp"])) < time.time():
                msg = "the sign-in took too long or did not start here; start again"
                raise OIDCError(msg)
            if request.query.get("error"):
                msg = f"the provider refused: {request.query['error'][:100]}"
                raise OIDCError(msg)
            if not secrets.compare_digest(str(request.query.get("state", "")), str(flow["state"])):
                msg = "state does not match this sign-in"
                raise OIDCError(msg)
            claims = await self._redeem(request, str(request.query.get("code", "")), flow)
            user = str(claims.get("email") or claims.get("preferred_username") or claims["sub"])[:64]
            role = role_for(claims.get(self.conf.groups_claim), self.conf.role_groups)
            if role is None:
                await self.guard.audit(None, "sign-in", user, {"via": "oidc", "reason": "no role for the groups"},
                                       "refused", actor=user, source=source)
                msg = f"{user} is in no group that grants a role here"
                raise OIDCError(msg)
        except OIDCError as exc:
            return web.Response(status=403, text=f"sign-in refused: {exc}", content_type="text/plain")
        cookie, session = self.guard.codec.issue(user, role=role)
        await self.guard.audit(Principal(user, role, "session", source, session), "sign-in", user, {"via": "oidc"})
        # a page that navigates on: the Strict session cookie is sent on this same-site navigation, not on
        # a redirect chain that began at the provider
        response = web.Response(text='<!doctype html><meta http-equiv="refresh" content="0;url=/">'
                                     f"<p>Signed in as {html.escape(user)}. <a href=\"/\">Open the console</a></p>",
                                content_type="text/html")
        self.guard.start_session(response, cookie)
        response.del_cookie(FLOW_COOKIE, path="/auth/oidc/")
        return response

    async def _redeem(self, request: web.Request, code: str, flow: dict[str, object]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                provider = await self._provider(client)
                response = await client.post(provider["token_endpoint"], data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": self._redirect_url(request),
                    "client_id": self.conf.client_id, "client_secret": self.conf.client_secret.get_secret_value(),
                    "code_verifier": str(flow["verifier"]),
                })
                if response.status_code != 200:
                    msg = f"the provider did not redeem the code (HTTP {response.status_code})"
                    raise OIDCError(msg)
                id_token = response.json()["id_token"]
                try:
                    token = jwt.decode(id_token, await self._jwks(client))
                except (JoseError, ValueError):  # a rotated key: fetch the keys once more
                    token = jwt.decode(id_token, await self._jwks(client, refresh=True))
            except (httpx.HTTPError, KeyError, ValueError, JoseError) as exc:
                msg = f"the provider's answer is not usable ({type(exc).__name__})"
                raise OIDCError(msg) from None
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": str(provider.get("issuer") or self.conf.issuer)},
            aud={"essential": True, "value": self.conf.client_id},
            exp={"essential": True}, sub={"essential": True}, nonce={"essential": True, "value": str(flow["nonce"])},
        )
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            msg = f"the ID token does not hold: {exc.error}"
            raise OIDCError(msg) from None
        return dict(token.claims)
