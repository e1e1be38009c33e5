"""The SOC workflow on the real services: sign-in, roles, CSRF, sessions, lockout, triage from the
API, the CLI and the console in Debian's headless Chromium, and the audit log of each step."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from infra.services import free_port
from infra.settings import Settings
from schemas.findings import Finding
from streams import topics
from streams.integrations.ocsf import CLOSE, UPDATE, validate
from streams.soc.guard import ROUTE_ROLES
from streams.soc.sessions import COOKIE, SessionCodec
from streams.worker_process import WorkerProcess, settings_env, start_groups_at_end
from tests.integration.invariants import topic_ends
from tests.integration.signin import Account, make_accounts, sign_in, wait_healthy
from tests.integration.test_console import chromium, make_alert, produce_alerts
from tests.integration.test_ocsf_e2e import read_committed

pytestmark = pytest.mark.integration

SECRET = "soc-test-session-secret-" + uuid.uuid4().hex
LOCKOUT_S = 300


class Worker:
    def __init__(self, base: str, process: WorkerProcess, accounts: dict[str, Account]) -> None:
        self.base, self.process, self.accounts = base, process, accounts


@pytest.fixture(scope="module")
def soc(service_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    app_id = f"soc-{uuid.uuid4().hex[:6]}"
    start_groups_at_end(service_settings, app_id)
    accounts = make_accounts(service_settings)
    port = free_port()
    process = WorkerProcess(service_settings, tmp_path_factory.mktemp("soc") / "worker.log",
                            AIWARDEN_WORKER__APP_ID=app_id, AIWARDEN_WORKER__WEB_PORT=str(port),
                            AIWARDEN_AUTH__SESSION_SECRET=SECRET, AIWARDEN_AUTH__LOCKOUT_S=str(LOCKOUT_S)).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield Worker(base, process, accounts)
    finally:
        process.stop()


def login(base: str, account: Account, password: str | None = None,
          cookies: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{base}/auth/login", json={"user": account.name, "password": password or account.password},
                      cookies=cookies, timeout=30)


def session_of(response: httpx.Response) -> tuple[dict[str, str], dict[str, str]]:
    """(cookies, headers with the CSRF token) of a successful sign-in."""
    assert response.status_code == 200, response.text
    return {COOKIE: response.cookies[COOKIE]}, {"X-CSRF-Token": response.json()["csrf"]}


def audit_rows(worker: Worker, actor: str, n: int, action: str | None = None,
               target: str | None = None) -> list[dict[str, Any]]:
    """At least ``n`` audit rows of ``actor`` (optionally of one action, on one target) once the sink
    landed them."""
    deadline = time.monotonic() + 90
    while True:
        rows = httpx.get(f"{worker.base}/audit", params={"actor": actor, "limit": 500},
                         headers=worker.accounts["admin"].bearer, timeout=10).json()
        rows = [r for r in rows if (action is None or r["action"] == action)
                and (target is None or r["target"] == target)]
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, f"audit of {actor}: {rows}"
        time.sleep(0.5)


def test_every_endpoint_but_health_needs_a_sign_in(soc: Worker) -> None:
    assert httpx.get(f"{soc.base}/health", timeout=10).status_code == 200
    for path in ("/alerts", "/queue", "/audit", "/metrics", "/inventory", "/dead-letters", "/alerts/stream",
                 "/triage/stream", "/aiwarden/state", "/static/console.js", "/auth/me"):
        response = httpx.get(f"{soc.base}{path}", timeout=10)
        assert response.status_code == 401, (path, response.status_code)
    page = httpx.get(f"{soc.base}/", timeout=10)
    assert page.status_code == 302 and page.headers["location"] == "/login"
    assert httpx.get(f"{soc.base}/", headers={"Authorization": "Bearer awt_0123456789abcdef_" + "x" * 32},
                     timeout=10).status_code == 302  # an unknown token is no sign-in
    assert httpx.get(f"{soc.base}/login", timeout=10).status_code == 200


def test_sign_in_sets_a_safe_cookie_and_sessions_cannot_be_fixed(soc: Worker) -> None:
    analyst = soc.accounts["analyst"]
    planted = {COOKIE: "attacker-chosen-session"}
    response = login(soc.base, analyst, cookies=planted)
    cookies, csrf = session_of(response)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" in header and "Max-Age=" in header
    assert cookies[COOKIE] != planted[COOKIE]
    assert httpx.get(f"{soc.base}/auth/me", cookies=planted, timeout=10).status_code == 401
    me = httpx.get(f"{soc.base}/auth/me", cookies=cookies, timeout=10).json()
    assert me["user"] == analyst.name and me["role"] == "analyst" and me["csrf"] == csrf["X-CSRF-Token"]

    # signing in again with a live session ends it: a stolen pre-login cookie is worth nothing afterwards
    again, _ = session_of(login(soc.base, analyst, cookies=cookies))
    assert again[COOKIE] != cookies[COOKIE]
    assert httpx.get(f"{soc.base}/auth/me", cookies=cookies, timeout=10).status_code == 401
    # signing out ends the session on the server, not only in the browser
    assert httpx.post(f"{soc.base}/auth/logout", cookies=again, headers={"X-CSRF-Token": httpx.get(
        f"{soc.base}/auth/me", cookies=again, timeout=10).json()["csrf"]}, timeout=10).status_code == 200
    assert httpx.get(f"{soc.base}/auth/me", cookies=again, timeout=10).status_code == 401


def test_expired_and_forged_sessions_are_refused(soc: Worker) -> None:
    analyst = soc.accounts["analyst"]
    codec = SessionCodec(SECRET.encode(), 60)
    long_ago = int(time.time() * 1000) - 3_600_000
    expired, _ = codec.issue(analyst.name, now_ms=long_ago)  # signed with the worker's key, 59 minutes stale
    assert httpx.get(f"{soc.base}/auth/me", cookies={COOKIE: expired}, timeout=10).status_code == 401
    fresh, _ = codec.issue(analyst.name)
    assert httpx.get(f"{soc.base}/auth/me", cookies={COOKIE: fresh}, timeout=10).status_code == 200
    forged, _ = SessionCodec(b"another-key-of-enough-length", 60).issue("admin")
    assert httpx.get(f"{soc.base}/auth/me", cookies={COOKIE: forged}, timeout=10).status_code == 401


def test_brute_force_locks_the_user_and_is_audited(soc: Worker) -> None:
    responder = soc.accounts["responder"]
    codes = [login(soc.base, responder, password=f"wrong-{n}").status_code for n in range(5)]
    assert codes == [401] * 5
    locked = login(soc.base, responder)  # the right password no longer helps
    assert locked.status_code == 429 and "locked" in locked.json()["error"]
    assert 0 < int(locked.headers["retry-after"]) <= LOCKOUT_S
    rows = audit_rows(soc, responder.name, 6, "sign-in")
    assert sum(r["outcome"] == "refused" for r in rows) >= 6
    assert any('"locked":true' in r["detail"] for r in rows)
    # an API token of the same user still works (the lockout guards the password)
    assert httpx.get(f"{soc.base}/auth/me", headers=responder.bearer, timeout=10).status_code == 200


def test_viewer_gets_403_on_every_state_changing_endpoint_and_csrf_is_required(soc: Worker) -> None:
    viewer = soc.accounts["viewer"]
    cookies, csrf = session_of(login(soc.base, viewer))
    for (method, route), role in ROUTE_ROLES.items():
        if method == "GET" or role == "viewer":
            continue
        path = route.replace("{exception_id}", "x").replace("{action_id}", "x")
        for auth in ({"cookies": cookies, "headers": csrf}, {"headers": viewer.bearer}):
            response = httpx.request(method, f"{soc.base}{path}", json={"alert_ids": ["x"], "status": "open"},
                                     timeout=10, **auth)  # type: ignore[arg-type]
            assert response.status_code == 403, (method, path, response.status_code, response.text)
    assert httpx.get(f"{soc.base}/audit", headers=viewer.bearer, timeout=10).status_code == 403
    # a state-changing route nobody declared is refused whoever asks (deny by default)
    admin = soc.accounts["admin"]
    assert httpx.post(f"{soc.base}/alerts", headers=admin.bearer, json={}, timeout=10).status_code == 403

    analyst = soc.accounts["analyst"]
    a_cookies, a_csrf = session_of(login(soc.base, analyst))
    body = {"alert_ids": [uuid.uuid4().hex], "comment": "csrf check"}
    no_csrf = httpx.post(f"{soc.base}/alerts/triage", cookies=a_cookies, json=body, timeout=10)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
    wrong = httpx.post(f"{soc.base}/alerts/triage", cookies=a_cookies, json=body, headers={"X-CSRF-Token": "x" * 43},
                       timeout=10)
    assert wrong.status_code == 403
    assert httpx.post(f"{soc.base}/alerts/triage", cookies=a_cookies, json=body, headers=a_csrf,
                      timeout=10).status_code == 200


def cli(settings: Settings, base: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env.update(settings_env(settings))
    env.update(AIWARDEN_CLIENT__URL=base, AIWARDEN_CLIENT__TOKEN=token)
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def queue(worker: Worker, **params: str) -> dict[str, dict[str, Any]]:
    rows = httpx.get(f"{worker.base}/queue", params=params, headers=worker.accounts["viewer"].bearer,
                     timeout=10).json()
    return {row["alert_id"]: row for row in rows}


def wait_queue(worker: Worker, alert_id: str, want: dict[str, Any], **params: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        row = queue(worker, **params).get(alert_id)
        if row is not None and all(row.get(k) == v for k, v in want.items()):
            return row
        assert time.monotonic() < deadline, f"{alert_id} never reached {want}: {row}"
        time.sleep(0.5)


def test_triage_from_the_cli_with_a_token_lands_in_the_queue_and_the_audit(
    service_settings: Settings, soc: Worker
) -> None:
    entity = f"pod:soc-test/{uuid.uuid4().hex[:8]}"
    old = make_alert(entity, 1)
    old["first_seen"] = old["last_seen"] = int(time.time() * 1000) - 40 * 86_400_000  # 40 days old, still open
    produce_alerts(service_settings, [old])
    wait_queue(soc, old["alert_id"], {"triage_status": "open"}, status="open")
    ocsf_from = topic_ends(service_settings, topics.OCSF)

    analyst = soc.accounts["analyst"]
    steps = [("ack", old["alert_id"]), ("assign", old["alert_id"], "--to", analyst.name),
             ("comment", old["alert_id"], "--text", "looked at the shell, it is the build job"),
             ("resolve", old["alert_id"], "--resolution", "benign")]
    for step in steps:
        done = cli(service_settings, soc.base, analyst.token, "alerts", *step)
        assert done.returncode == 0, done.stderr
    row = wait_queue(soc, old["alert_id"], {"triage_status": "resolved", "resolution": "benign",
                                            "assignee": analyst.name, "comments": 1}, status="resolved")
    assert row["summary"] == old["summary"]
    assert old["alert_id"] not in queue(soc, status="open,acknowledged")
    assert old["alert_id"] in queue(soc, status="resolved", assignee=analyst.name)

    # the SIEM following aiwarden.ocsf sees the decisions: acknowledged (Update), resolved (Close); the assignment
    # and the comment send nothing
    deadline = time.monotonic() + 60
    while len(ocsf := [r for r in read_committed(service_settings, topics.OCSF, ocsf_from)
                       if r["finding_info"]["uid"] == old["alert_id"]]) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [(r["activity_id"], r["status"]) for r in ocsf] == [(UPDATE, "In Progress"), (CLOSE, "Resolved")], ocsf
    assert ocsf[1]["status_detail"] == f"resolved as benign by {analyst.name}"
    assert ocsf[1]["finding_info"]["desc"] == old["summary"] and not [p for r in ocsf if (p := validate(r))]

    refused = cli(service_settings, soc.base, soc.accounts["viewer"].token, "alerts", "ack", old["alert_id"])
    assert refused.returncode == 1 and "403" in refused.stderr and "analyst" in refused.stderr
    bad = cli(service_settings, soc.base, analyst.token, "alerts", "resolve", old["alert_id"], "--resolution", "meh")
    assert bad.returncode == 1 and "resolution" in bad.stderr

    mine = audit_rows(soc, analyst.name, 4, "triage", old["alert_id"])
    assert len(mine) == 4 and {r["via"] for r in mine} == {"token"}
    rows = audit_rows(soc, analyst.name, 1)
    # the token itself is nowhere: not in the worker's log, not in the audit rows
    for row in rows:
        assert analyst.token not in str(row)
    log_text = soc.process.log_path.read_text()
    for account in soc.accounts.values():
        assert account.token not in log_text and account.password not in log_text
    assert "awt_" not in log_text


def test_console_sign_in_triage_and_audit_in_chromium(service_settings: Settings, soc: Worker) -> None:
    from playwright.sync_api import sync_playwright

    entity = f"pod:soc-ui/{uuid.uuid4().hex[:8]}"
    alert = make_alert(entity, 3, "critical")
    produce_alerts(service_settings, [alert])
    wait_queue(soc, alert["alert_id"], {"triage_status": "open"})
    analyst, admin = soc.accounts["analyst"], soc.accounts["admin"]
    with sync_playwright() as playwright:
        browser = chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            sign_in(page, soc.base, analyst)
            row = page.locator(f'tr.alert[data-alert-id="{alert["alert_id"]}"]')
            row.wait_for(timeout=60_000)  # from ClickHouse: it is not in this page's live stream
            assert row.get_attribute("data-status") == "open"
            row.click()
            page.click("#ack")
            page.wait_for_selector(f'tr.alert[data-alert-id="{alert["alert_id"]}"][data-status="acknowledged"]',
                                   timeout=30_000)
            page.fill("#assign-to", analyst.name)
            page.click("#assign")
            page.wait_for_selector("#triage-history li.triage-change:has-text('assigned to')", timeout=60_000)
            page.fill("#comment-text", "load test of the miner detector, not an attack")
            page.click("#add-exception")
            page.wait_for_selector("#triage-error:has-text('exception added')", timeout=30_000)
            page.click('nav .tab[data-tab="exceptions"]')
            page.wait_for_selector(f"#exceptions tr.exception-row:has-text('{entity}')", timeout=30_000)
            exception_id = page.locator("#exceptions tr.exception-row", has_text=entity).get_attribute(
                "data-exception-id")
            again = publish_finding(service_settings, "cryptominer", entity)  # the same finding once more
            assert suppressed_by(service_settings, again.finding_id) == [(exception_id,)]
            assert not page.locator('nav .tab[data-tab="audit"]').is_visible()  # analysts do not see the audit log
            page.screenshot(path="tests/artifacts/console-triage.png")
            assert not errors, errors

            admin_page = browser.new_page(viewport={"width": 1500, "height": 900})
            sign_in(admin_page, soc.base, admin)
            admin_page.click('nav .tab[data-tab="audit"]')
            admin_page.wait_for_selector(f"#audit tr.audit-row:has-text('{alert['alert_id']}')", timeout=60_000)
            text = admin_page.locator("#audit").inner_text()
            assert analyst.name in text and "sign-in" in text and "triage" in text
            admin_page.screenshot(path="tests/artifacts/console-audit.png")
        finally:
            browser.close()
    wait_queue(soc, alert["alert_id"], {"triage_status": "acknowledged", "assignee": analyst.name})


def publish_finding(settings: Settings, detector: str, entity: str) -> Finding:
    """A finding straight onto aiwarden.findings (what the detect stage writes), for the correlate stage."""
    from confluent_kafka import Producer

    from infra.kafka.clients import confluent_config
    from streams import topics

    item = Finding(finding_id=uuid.uuid4().hex, detector=detector, title=detector, maturity="stable",
                   severity="high", time_ms=int(time.time() * 1000), entity_id=entity, entities=[entity],
                   summary=f"{detector} on {entity}", tactics=["impact"])
    producer = Producer(confluent_config(settings, acks="all"))
    producer.produce(topics.FINDINGS, key=entity.encode(), value=orjson.dumps(item.to_dict()))
    assert producer.flush(30) == 0
    return item


def suppressed_by(settings: Settings, finding_id: str, timeout_s: float = 120) -> list[tuple[str]]:
    """The exception ids ClickHouse recorded as suppressing ``finding_id`` (waits until there is one)."""
    from infra.clickhouse.client import connect

    client = connect(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            got = client.query(f"SELECT exception_id FROM {settings.clickhouse.database}.suppressed_findings "  # noqa: S608 - the database name is a setting
                               "WHERE finding_id = {id:String}", parameters={"id": finding_id}).result_rows
            if got or time.monotonic() > deadline:
                return [tuple(row) for row in got]
            time.sleep(0.5)
    finally:
        client.close()


def test_an_exception_suppresses_the_next_identical_finding(service_settings: Settings, soc: Worker) -> None:
    analyst = soc.accounts["analyst"]
    pod = f"pod:ml-batch-{uuid.uuid4().hex[:6]}/trainer-0"
    created = cli(service_settings, soc.base, analyst.token, "exceptions", "add", "--detector", "cryptominer",
                  "--entity", pod.rsplit("/", 1)[0] + "/*", "--reason", "the nightly benchmark mines on purpose",
                  "--days", "1")
    assert created.returncode == 0, created.stderr
    exception_id = json_loads(created.stdout)["exception_id"]
    refused = cli(service_settings, soc.base, soc.accounts["viewer"].token, "exceptions", "add", "--detector",
                  "cryptominer", "--entity", "pod:x/*", "--reason", "r")
    assert refused.returncode == 1 and "403" in refused.stderr

    suppressed = publish_finding(service_settings, "cryptominer", pod)
    other = publish_finding(service_settings, "cryptominer", f"pod:ml-serving-{uuid.uuid4().hex[:6]}/api-0")
    admin = soc.accounts["admin"]
    deadline = time.monotonic() + 120
    while True:
        rows = httpx.get(f"{soc.base}/alerts", params={"entity": other.entity_id}, headers=admin.bearer,
                         timeout=10).json()
        if rows:
            break
        assert time.monotonic() < deadline, "the uncovered finding raised no alert"
        time.sleep(0.5)
    assert suppressed_by(service_settings, suppressed.finding_id) == [(exception_id,)]
    assert httpx.get(f"{soc.base}/alerts", params={"entity": pod}, headers=admin.bearer, timeout=10).json() == []

    revoked = cli(service_settings, soc.base, analyst.token, "exceptions", "revoke", exception_id)
    assert revoked.returncode == 0 and json_loads(revoked.stdout)["revoked"] is True
    listed = [json_loads(line) for line in cli(service_settings, soc.base, analyst.token, "exceptions",
                                                "list").stdout.splitlines()]
    assert any(row["exception_id"] == exception_id and not row["live"] for row in listed)
    actions = {r["action"] for r in audit_rows(soc, analyst.name, 2, target=exception_id)}
    assert actions == {"exception add", "exception revoke"}


def json_loads(text: str) -> Any:
    import json

    return json.loads(text)


@contextlib.contextmanager
def containing_worker(service_settings: Settings, tmp: Path, policy_yaml: str,
                      accounts: dict[str, Account]) -> Iterator[tuple[Worker, io.StringIO, Any]]:
    """A worker that delivers containment (policy ``policy_yaml``, not dry-run) to the reference receiver:
    (the worker, what the receiver printed, the receiver)."""
    from streams.containment.receiver import Receiver

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    policy = tmp / "policy.yaml"
    policy.write_text(policy_yaml)
    app_id = f"contain-{uuid.uuid4().hex[:6]}"
    start_groups_at_end(service_settings, app_id)
    out = io.StringIO()
    with Receiver(secret, 0, out=out) as receiver:
        port = receiver.start_in_thread()
        web_port = free_port()
        process = WorkerProcess(service_settings, tmp / "worker.log", AIWARDEN_WORKER__APP_ID=app_id,
                                AIWARDEN_WORKER__WEB_PORT=str(web_port),
                                AIWARDEN_CONTAINMENT__WEBHOOK_URL=f"http://127.0.0.1:{port}/",
                                AIWARDEN_CONTAINMENT__SECRET=secret, AIWARDEN_CONTAINMENT__DRY_RUN="false",
                                AIWARDEN_CONTAINMENT__POLICY_PATH=str(policy)).start()
        base = f"http://127.0.0.1:{web_port}"
        try:
            wait_healthy(base, process)
            yield Worker(base, process, accounts), out, receiver
        finally:
            process.stop()


def test_approve_in_the_console_sends_the_signed_quarantine_and_release_undoes_it(
    service_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two distinct responders approve a held quarantine in Chromium: the reference receiver verifies and
    gets it; releasing it sends release_workload; a denial with a reason sends nothing; all audited."""
    import re

    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("approvals")
    accounts = make_accounts(service_settings)
    second = make_accounts(service_settings)["responder"]  # another responder: two distinct people
    approved_pod = f"pod:ml-serving/vllm-{uuid.uuid4().hex[:6]}"
    denied_pod = f"pod:ml-serving/vllm-{uuid.uuid4().hex[:6]}"
    policy = ("rules:\n  - name: quarantine-with-two-approvers\n    when: {detectors: [model_server_shell]}\n"
              "    actions: [quarantine_workload]\n    approval_required: true\n    approvers: 2\n")
    with containing_worker(service_settings, tmp, policy, accounts) as (worker, out, receiver):
        base, process = worker.base, worker.process
        deadline = time.monotonic()
        alerts = []
        for pod in (approved_pod, denied_pod):
            alert = make_alert(pod, 5, "critical")
            alert["detectors"] = ["model_server_shell"]
            alerts.append(alert)
        produce_alerts(service_settings, alerts)
        responder = accounts["responder"]

        def waiting() -> dict[str, dict[str, Any]]:
            rows = httpx.get(f"{base}/actions", params={"state": "awaiting_approval"}, headers=responder.bearer,
                             timeout=10).json()
            return {row["target"]: row for row in rows}

        while {approved_pod, denied_pod} - set(waiting()):
            assert time.monotonic() < deadline + 180, (waiting(), process.log_tail())
            time.sleep(0.5)
        action_id = waiting()[approved_pod]["action_id"]
        listed = cli(service_settings, base, responder.token, "actions", "list", "--pending")
        assert listed.returncode == 0 and action_id in listed.stdout

        denied_id = waiting()[denied_pod]["action_id"]
        no_reason = httpx.post(f"{base}/actions/{denied_id}/deny", json={"reason": ""}, headers=responder.bearer,
                               timeout=10)
        assert no_reason.status_code == 400
        denied = cli(service_settings, base, responder.token, "actions", "deny", denied_id, "--reason",
                     "the pod is the red team's")
        assert denied.returncode == 0, denied.stderr
        assert httpx.post(f"{base}/actions/{denied_id}/approve", headers=responder.bearer,
                          timeout=10).status_code == 409

        with sync_playwright() as playwright:
            browser = chromium(playwright)
            try:
                for n, person in enumerate((responder, second)):
                    page = browser.new_page(viewport={"width": 1500, "height": 900})
                    sign_in(page, base, person)
                    page.click('nav .tab[data-tab="actions"]')
                    row = page.locator(f'tr.action-row[data-action-id="{action_id}"]')
                    row.locator("button.approve").click()
                    want = "awaiting_approval" if n == 0 else "approved"
                    page.wait_for_selector(f'tr.action-row[data-action-id="{action_id}"][data-state="{want}"]',
                                           timeout=30_000)
                    if n == 0:  # the same person cannot approve twice
                        again = httpx.post(f"{base}/actions/{action_id}/approve", headers=responder.bearer,
                                           timeout=10)
                        assert again.status_code == 409 and "another person" in again.json()["error"]
                while "quarantine_workload " + approved_pod not in out.getvalue():
                    assert time.monotonic() < deadline + 240, (out.getvalue(), process.log_tail())
                    time.sleep(0.5)
                page.locator(f'tr.action-row[data-action-id="{action_id}"] button.release').click()
                page.wait_for_selector(f'tr.action-row[data-action-id="{action_id}"][data-state="released"]',
                                       timeout=30_000)
                page.screenshot(path="tests/artifacts/console-actions.png")
            finally:
                browser.close()
        while "release_workload " + approved_pod not in out.getvalue():
            assert time.monotonic() < deadline + 300, (out.getvalue(), process.log_tail())
            time.sleep(0.5)
        assert receiver.snapshot()["rejected_signature"] == 0
        assert len(re.findall(rf"quarantine_workload {re.escape(approved_pod)} ", out.getvalue())) == 1
        assert denied_pod not in out.getvalue()  # denied: nothing sent
        wanted = {(responder.name, "action approve"), (second.name, "action approve"),
                  (second.name, "action release"), (responder.name, "action deny")}
        while True:  # each step lands in ClickHouse within seconds of the sink's batch
            steps = {(r["actor"], r["action"]) for name in (responder.name, second.name)
                     for r in audit_rows(worker, name, 1)}
            if wanted <= steps:
                break
            assert time.monotonic() < deadline + 360, steps
            time.sleep(0.5)


def test_a_responder_resolving_a_false_positive_releases_its_containment(
    service_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An alert quarantined by policy, then resolved as false_positive: by an analyst the quarantine stays and
    the response says so; by a responder the signed release_workload reaches the receiver, audited with why."""
    accounts = make_accounts(service_settings)
    analyst, responder = accounts["analyst"], accounts["responder"]
    pod = f"pod:ml-serving/vllm-{uuid.uuid4().hex[:6]}"
    policy = ("rules:\n  - name: quarantine-shells\n    when: {detectors: [model_server_shell]}\n"
              "    actions: [quarantine_workload]\n")
    with containing_worker(service_settings, tmp_path_factory.mktemp("release-on-resolve"), policy,
                           accounts) as (worker, out, receiver):
        base = worker.base
        alert = make_alert(pod, 7, "critical")
        alert["detectors"] = ["model_server_shell"]
        produce_alerts(service_settings, [alert])
        deadline = time.monotonic() + 240

        def carried_out() -> list[dict[str, Any]]:
            rows = httpx.get(f"{base}/actions", params={"state": "sent"}, headers=responder.bearer, timeout=10).json()
            return [r for r in rows if r["alert_id"] == alert["alert_id"]]

        while "quarantine_workload " + pod not in out.getvalue() or not carried_out():
            assert time.monotonic() < deadline, (out.getvalue(), worker.process.log_tail())
            time.sleep(0.5)
        action_id = carried_out()[0]["action_id"]

        def resolve(account: Account) -> dict[str, Any]:
            response = httpx.post(f"{base}/alerts/triage", headers=account.bearer, timeout=30, json={
                "alert_ids": [alert["alert_id"]], "status": "resolved", "resolution": "false_positive"})
            assert response.status_code == 200, response.text
            return dict(response.json())

        kept = resolve(analyst)
        assert kept["containment_kept"]["actions"] == [action_id] and "released" not in kept
        assert "needs a responder" in kept["containment_kept"]["reason"]
        assert [r["action_id"] for r in carried_out()] == [action_id]  # still quarantined
        done = resolve(responder)
        assert done["released"] == [action_id] and "containment_kept" not in done
        while "release_workload " + pod not in out.getvalue():
            assert time.monotonic() < deadline, (out.getvalue(), worker.process.log_tail())
            time.sleep(0.5)
        assert receiver.snapshot()["rejected_signature"] == 0
        assert carried_out() == [] and "released" not in resolve(responder)  # released once
        row = audit_rows(worker, responder.name, 1, "action release", action_id)[0]
        assert "false_positive resolution" in str(row)


def test_single_sign_on_with_openid_connect_maps_groups_to_roles_in_chromium(
    service_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A real OpenID Connect provider (oidc-provider-mock): code flow with PKCE; the groups claim makes a
    responder, a user in no mapped group is refused; the session then acts like a local one (CSRF, audit)."""
    import json

    from oidc_provider_mock import User, run_server_in_thread
    from playwright.sync_api import sync_playwright

    run = uuid.uuid4().hex[:6]
    responder, outsider = f"rita-{run}@example.org", f"olaf-{run}@example.org"
    users = [User(sub=responder, claims={"email": responder, "groups": ["staff", "soc-responders"]}),
             User(sub=outsider, claims={"email": outsider, "groups": ["staff"]})]
    with run_server_in_thread(user_claims=users) as provider:
        issuer = f"http://localhost:{provider.server_port}"
        app_id = f"oidc-{run}"
        start_groups_at_end(service_settings, app_id)
        port = free_port()
        accounts = make_accounts(service_settings)
        process = WorkerProcess(
            service_settings, tmp_path_factory.mktemp("oidc") / "worker.log", AIWARDEN_WORKER__APP_ID=app_id,
            AIWARDEN_WORKER__WEB_PORT=str(port), AIWARDEN_OIDC__ISSUER=issuer, AIWARDEN_OIDC__CLIENT_ID="aiwarden",
            AIWARDEN_OIDC__CLIENT_SECRET=uuid.uuid4().hex,
            AIWARDEN_OIDC__ROLE_GROUPS=json.dumps({"responder": ["soc-responders"], "admin": ["soc-admins"]}),
        ).start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, process)
            with sync_playwright() as playwright:
                browser = chromium(playwright)
                try:
                    page = browser.new_page()
                    page.goto(base + "/")
                    page.wait_for_url("**/login", timeout=30_000)
                    page.click("#sso")
                    page.fill('input[name="sub"]', responder)
                    page.click('button[type="submit"]')
                    page.wait_for_selector(f"#whoami:has-text('{responder} (responder)')", timeout=30_000)
                    me = page.evaluate("fetch('/auth/me').then(r => r.json())")
                    assert me["role"] == "responder" and me["csrf"]
                    # the session is a session like any other: CSRF on writes, and signing out ends it
                    no_csrf = page.evaluate("fetch('/auth/logout', {method: 'POST'}).then(r => r.status)")
                    assert no_csrf == 403

                    other = browser.new_page()
                    other.goto(base + "/login")
                    other.click("#sso")
                    other.fill('input[name="sub"]', outsider)
                    other.click('button[type="submit"]')
                    other.wait_for_selector("text=is in no group that grants a role", timeout=30_000)
                    assert other.evaluate("fetch('/auth/me').then(r => r.status)") == 401
                finally:
                    browser.close()
            worker = Worker(base, process, accounts)
            assert {r["outcome"] for r in audit_rows(worker, responder, 1, "sign-in")} == {"ok"}
            assert {r["outcome"] for r in audit_rows(worker, outsider, 1, "sign-in")} == {"refused"}
            # a forged callback (no sign-in started here) is refused
            forged = httpx.get(f"{base}/auth/oidc/callback", params={"code": "x", "state": "y"}, timeout=10)
            assert forged.status_code == 403
        finally:
            process.stop()
