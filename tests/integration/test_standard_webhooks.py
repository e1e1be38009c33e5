"""A receiver built on the Standard Webhooks reference library (``standardwebhooks``) accepts our
deliveries, sent over real HTTP by the same ``Deliverer`` the containment agents use, and refuses a
delivery signed with another secret."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from streams.agents.containment import webhook_payload
from streams.containment.delivery import Deliverer

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def library_receiver() -> Iterator[tuple[str, list[Any]]]:
    accepted: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            try:
                accepted.append(Webhook(SECRET).verify(body, dict(self.headers.items())))
                status = 204
            except WebhookVerificationError:
                status = 401
            self.send_response(status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", accepted
    finally:
        server.shutdown()
        server.server_close()


def action(name: str) -> dict[str, Any]:
    return {"action_id": secrets.token_hex(8), "action": name, "target": "pod:ml-serving/vllm-0", "rule": "r",
            "alert_id": "a1", "severity": "high", "risk_score": 80.0, "summary": "shell in vllm — ünïcode",
            "detectors": ["model_server_shell"], "evidence_event_ids": ["e1"], "time_ms": 1, "releases": "x"}


def test_a_standard_webhooks_library_receiver_accepts_our_deliveries(library_receiver: tuple[str, list[Any]]) -> None:
    url, accepted = library_receiver

    async def send() -> list[str]:
        ours, stranger = Deliverer(url, SECRET), Deliverer(url, "whsec_" + base64.b64encode(b"x" * 32).decode())
        try:
            outcomes = [await ours.attempt(a["action_id"], webhook_payload(a))
                        for a in (action("quarantine_workload"), action("release_workload"))]
            outcomes.append(await stranger.attempt("msg_other", webhook_payload(action("notify"))))
        finally:
            await ours.close()
            await stranger.close()
        return [o.status for o in outcomes]

    assert asyncio.run(send()) == ["delivered", "delivered", "failed"]
    assert [a["action"] for a in accepted] == ["quarantine_workload", "release_workload"]
    assert accepted[1]["releases"] == "x" and "ünïcode" in json.dumps(accepted[0], ensure_ascii=False)
