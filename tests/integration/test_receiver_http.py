"""The reference receiver over real HTTP: verification, dedupe, replay refusal and the rendered containment.

No Kafka or ClickHouse: a Receiver on a free port in a thread, deliveries POSTed with httpx.
"""

from __future__ import annotations

import io
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from streams.containment.receiver import Receiver, receiver_app
from streams.containment.signing import headers, sign

pytestmark = pytest.mark.integration

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGhlLXJlY2VpdmVyLXRlc3Q="

DELIVERY: dict[str, Any] = {
    "action": "quarantine_workload",
    "target": "pod:ml-prod/vllm-0",
    "alert": {"alert_id": "alrt-123", "severity": "critical", "summary": "model weights exfiltration"},
    "evidence": ["evt-1", "evt-2"],
}


def _body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def receiver(out: io.StringIO) -> Iterator[Receiver]:
    with Receiver(SECRET, 0, kubectl=False, out=out) as server:
        server.start_in_thread()
        yield server


@pytest.fixture
def client(receiver: Receiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{receiver.port}", timeout=10) as http:
        yield http


def _post(client: httpx.Client, msg_id: str, body: bytes, path: str = "/", now: float | None = None) -> httpx.Response:
    sent = headers(SECRET, msg_id, body, now=now)
    return client.post(path, content=body, headers={**sent, "Content-Type": "application/json"})


def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert client.get("/nope").status_code == 404


def test_valid_delivery_renders_quarantine(client: httpx.Client, receiver: Receiver, out: io.StringIO) -> None:
    response = _post(client, "msg_valid", _body(DELIVERY), path="/webhook")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True
    assert answer["duplicate"] is False
    assert answer["outcome"] == "rendered"
    text = out.getvalue()
    assert "msg_valid" in text
    manifests = [doc for doc in yaml.safe_load_all(text) if doc]
    patch, policy = manifests
    assert patch["metadata"] == {"name": "vllm-0", "namespace": "ml-prod"}
    assert patch["patch"]["metadata"]["labels"] == {"aiwarden.io/quarantine": "true"}
    assert patch["patch"]["metadata"]["annotations"] == {"aiwarden.io/quarantine-alert": "alrt-123"}
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["kind"] == "NetworkPolicy"
    assert policy["metadata"]["namespace"] == "ml-prod"
    assert policy["spec"]["podSelector"] == {"matchLabels": {"aiwarden.io/quarantine": "true"}}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]
    assert SECRET not in text
    counters = client.get("/health").json()["counters"]
    assert counters["received"] == 1 and counters["verified"] == 1 and counters["handled"] == 1


def test_bad_signature(client: httpx.Client, out: io.StringIO) -> None:
    body = _body(DELIVERY)
    sent = headers("whsec_" + "b3RoZXI=", "msg_bad", body)
    response = client.post("/", content=body, headers=sent)
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error": "no matching v1 signature"}
    tampered = headers(SECRET, "msg_bad2", body)
    assert client.post("/", content=body + b" ", headers=tampered).status_code == 401
    assert client.post("/", content=body).status_code == 401  # no headers at all
    assert out.getvalue() == ""
    assert client.get("/health").json()["counters"]["rejected_signature"] == 3


def test_stale_timestamp(client: httpx.Client, out: io.StringIO) -> None:
    response = _post(client, "msg_stale", _body(DELIVERY), now=time.time() - 360)
    assert response.status_code == 401
    assert "too old" in response.json()["error"]
    assert out.getvalue() == ""


def test_same_id_same_body_is_idempotent(client: httpx.Client, out: io.StringIO) -> None:
    body = _body(DELIVERY)
    first = _post(client, "msg_dup", body)
    second = _post(client, "msg_dup", body)  # a retry: re-signed with a fresh timestamp
    assert first.status_code == second.status_code == 200
    assert first.json()["duplicate"] is False
    assert second.json() == {**first.json(), "duplicate": True}
    assert out.getvalue().count("kind: NetworkPolicy") == 1
    assert client.get("/health").json()["counters"]["duplicates"] == 1


def test_same_id_different_body_is_refused(client: httpx.Client, out: io.StringIO) -> None:
    assert _post(client, "msg_replay", _body(DELIVERY)).status_code == 200
    other = _body({**DELIVERY, "target": "pod:ml-prod/vllm-1"})
    response = _post(client, "msg_replay", other)
    assert response.status_code == 409
    assert "vllm-1" not in out.getvalue()
    assert client.get("/health").json()["counters"]["replayed"] == 1


def test_other_actions_and_bad_bodies(client: httpx.Client, out: io.StringIO) -> None:
    revoke = _post(client, "msg_revoke", _body({"action": "revoke_api_key", "target": "api_key:sk-…abcd", "alert": {}}))
    assert revoke.status_code == 200
    assert revoke.json()["outcome"] == "acknowledged"
    assert "revoke_api_key" in out.getvalue()
    egress = _post(client, "msg_egress", _body({**DELIVERY, "action": "block_egress"}))
    assert egress.json()["outcome"] == "rendered"
    assert "aiwarden.io/egress-blocked" in out.getvalue()
    assert _post(client, "msg_json", b"not json").status_code == 400
    assert _post(client, "msg_action", _body({"action": "format_disk", "target": "pod:a/b"})).status_code == 400
    # A 400 is not remembered: the sender may fix the body and retry under the same id.
    assert _post(client, "msg_json", _body(DELIVERY)).status_code == 200


def test_seen_ids_are_bounded(out: io.StringIO) -> None:
    with Receiver(SECRET, 0, out=out, max_ids=2) as server:
        server.start_in_thread()
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
            body = _body({"action": "notify", "target": "principal:alice"})
            for msg_id in ("m1", "m2", "m3", "m4"):
                assert _post(http, msg_id, body).status_code == 200
            assert _post(http, "m1", b'{"action": "notify", "target": "principal:bob"}').status_code == 200  # forgotten
            assert _post(http, "m4", b'{"action": "notify", "target": "principal:bob"}').status_code == 409


def test_kubectl_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: io.StringIO) -> None:
    log = tmp_path / "kubectl.log"
    fake = tmp_path / "kubectl"
    fake.write_text(f'#!/bin/sh\necho "ARGS $*" >> {log}\ncat >> {log}\necho ok\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    with Receiver(SECRET, 0, kubectl=True, out=out) as server:
        server.start_in_thread()
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
            answer = _post(http, "msg_kubectl", _body(DELIVERY)).json()
    assert answer["outcome"] == "applied", answer
    recorded = log.read_text()
    assert "ARGS patch pod vllm-0 -n ml-prod --type=merge -p" in recorded
    assert '"aiwarden.io/quarantine": "true"' in recorded
    assert "ARGS apply -f -" in recorded and "kind: NetworkPolicy" in recorded


def test_cli_rejects_bad_secret_without_echoing_it() -> None:
    result = CliRunner().invoke(receiver_app, ["--secret", "whsec_!!!notbase64", "--port", "0"])
    assert result.exit_code == 2
    assert "notbase64" not in result.output


def test_signature_header_format() -> None:
    assert sign(SECRET, "msg", 1, b"").startswith("v1,")
