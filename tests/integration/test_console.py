"""The SOC console on the real services: the alert feed over Kafka, the worker's HTTP endpoints,
`aiwarden alerts tail`, and the web console driven in Debian's headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
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
from schemas.findings import Alert
from streams import topics
from streams.console.feed import AlertFeed, FeedItem, encode_cursor, parse_cursor
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import SimConfig, Simulator
from streams.worker_process import WorkerProcess, settings_env, start_groups_at_end
from tests.integration.signin import Account, make_accounts, sign_in

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def make_alert(entity: str, n: int, severity: str = "high", version: int = 1) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return Alert(
        alert_id=uuid.uuid4().hex, first_seen=now, last_seen=now + n, severity=severity, risk_score=50.0 + n,
        detectors=["cryptominer"], atlas_techniques=["AML.T0034"], attack_techniques=["T1496"],
        tactics=["impact"], entities=[entity], primary_entity=entity, summary=f"test alert {n} on {entity}",
        evidence_event_ids=[], finding_ids=[], maturity="stable", version=version, updated_ms=now,
    ).to_dict()


ACCOUNTS: dict[str, Account] = {}  # filled by the worker fixture: every endpoint but /health needs a sign-in


def viewer() -> dict[str, str]:
    return ACCOUNTS["viewer"].bearer


def produce_alerts(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    from infra.kafka.clients import confluent_config

    producer = Producer(confluent_config(settings, **{"acks": "all"}))
    for alert in alerts:
        producer.produce(topics.ALERTS, key=alert["alert_id"].encode(), value=orjson.dumps(alert))
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def console_worker(service_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One worker with its web server on a free port; yields its base URL once the alert feed reads."""
    app_id = f"console-{uuid.uuid4().hex[:6]}"
    start_groups_at_end(service_settings, app_id)
    ACCOUNTS.update(make_accounts(service_settings))
    port = free_port()
    worker = WorkerProcess(service_settings, tmp_path_factory.mktemp("console") / "worker.log",
                           AIWARDEN_WORKER__APP_ID=app_id, AIWARDEN_WORKER__WEB_PORT=str(port)).start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert worker.running, worker.log_tail()
            try:
                health = httpx.get(f"{base}/health", timeout=5).json()
                if health["status"] == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"worker web server never became healthy:\n{worker.log_tail()}")
        yield base
    finally:
        worker.stop()


def read_sse(base: str, params: dict[str, str], n: int, last_event_id: str | None = None,
             timeout_s: float = 60) -> list[tuple[str, dict[str, Any]]]:
    """The first ``n`` alert events (id, alert) of ``/alerts/stream``."""
    headers = {"Last-Event-ID": last_event_id, **viewer()} if last_event_id else viewer()
    events: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    with httpx.stream("GET", f"{base}/alerts/stream", params=params, headers=headers,
                      timeout=httpx.Timeout(timeout_s, connect=10)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                name, _, value = line.partition(":")
                frame[name] = value.strip()
            elif line == "" and frame:
                if frame.get("event") == "alert":
                    events.append((frame["id"], json.loads(frame["data"])))
                    if len(events) == n:
                        return events
                frame = {}
            assert time.monotonic() < deadline, f"only {len(events)} of {n} alerts within {timeout_s} s"
    return events


def test_alert_stream_resumes_with_last_event_id(service_settings: Settings, console_worker: str) -> None:
    entity = f"pod:console-test/{uuid.uuid4().hex[:8]}"
    first = [make_alert(entity, n) for n in range(3)]
    produce_alerts(service_settings, first)
    got = read_sse(console_worker, {"entity": entity, "backlog": "500"}, 3)
    assert sorted(a["alert_id"] for _, a in got) == sorted(a["alert_id"] for a in first)

    later = [make_alert(entity, n) for n in range(3, 5)]
    produce_alerts(service_settings, later)
    resume_from = got[1][0]  # the client saw two, then lost its connection
    resumed = read_sse(console_worker, {"entity": entity}, 3, last_event_id=resume_from)
    # alerts are keyed by id, so they spread over partitions: the order across partitions is arrival order
    assert sorted(a["alert_id"] for _, a in resumed) == sorted([got[2][1]["alert_id"], *(a["alert_id"] for a in later)])
    # each id is a cursor: resuming from the last one yields nothing old, only what comes next
    newest = [make_alert(entity, 9, severity="critical")]
    produce_alerts(service_settings, newest)
    (last,) = read_sse(console_worker, {"entity": entity}, 1, last_event_id=resumed[-1][0])
    assert last[1]["alert_id"] == newest[0]["alert_id"]


def test_filters_and_bad_requests_over_http(service_settings: Settings, console_worker: str) -> None:
    entity = f"pod:console-test/{uuid.uuid4().hex[:8]}"
    alerts = [make_alert(entity, 0, "low"), make_alert(entity, 1, "critical"), make_alert(entity, 2, "medium")]
    produce_alerts(service_settings, alerts)
    (only,) = read_sse(console_worker, {"entity": entity, "min_severity": "critical", "backlog": "500"}, 1)
    assert only[1]["alert_id"] == alerts[1]["alert_id"]

    bad = httpx.get(f"{console_worker}/alerts/stream", headers={"Last-Event-ID": "not-a-cursor", **viewer()},
                    timeout=10)
    assert bad.status_code == 400 and "partition:offset" in bad.json()["error"]
    bad = httpx.get(f"{console_worker}/alerts", params={"min_severity": "urgent"}, headers=viewer(), timeout=10)
    assert bad.status_code == 400 and "unknown severity" in bad.json()["error"]
    missing = httpx.get(f"{console_worker}/alerts/{'0' * 32}", headers=viewer(), timeout=10)
    assert missing.status_code == 404

    # the sink stores the same alerts in ClickHouse: /alerts reads them back, filtered server-side
    deadline = time.monotonic() + 60
    stored: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(stored) < 2:
        stored = httpx.get(f"{console_worker}/alerts", params={"entity": entity, "min_severity": "medium"},
                           headers=viewer(), timeout=10).json()
        time.sleep(0.5)
    assert sorted(a["alert_id"] for a in stored) == sorted([alerts[1]["alert_id"], alerts[2]["alert_id"]])
    assert stored[0]["last_seen"] >= stored[1]["last_seen"]

    assert httpx.get(f"{console_worker}/metrics", timeout=10).status_code == 401  # AIWARDEN_AUTH__METRICS_PUBLIC
    for path in ("/dead-letters", "/techniques", "/inventory", "/aiwarden/state"):  # reads: any signed-in role
        assert httpx.get(f"{console_worker}{path}", timeout=10).status_code == 401, path
        assert httpx.get(f"{console_worker}{path}", headers=viewer(), timeout=10).status_code == 200, path
    assert httpx.post(f"{console_worker}/dead-letters", headers=ACCOUNTS["admin"].bearer,
                      timeout=10).status_code == 403  # no state-changing route there: refused by default
    catalog = httpx.get(f"{console_worker}/techniques", headers=viewer(), timeout=10).json()
    assert catalog["links"]["AML.T0050"]["url"] == "https://atlas.mitre.org/techniques/AML.T0050"
    metrics = httpx.get(f"{console_worker}/metrics", headers=viewer(), timeout=10)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE aiwarden_events_in_total counter" in metrics.text
    health = httpx.get(f"{console_worker}/health", timeout=10).json()
    assert health == {**health, "status": "ok", "checks": {"clickhouse": True, "alert_feed": True, "pipeline": True,
                                                                 "accounts": True}}


def test_feed_replays_from_kafka_what_its_buffer_no_longer_holds(service_settings: Settings) -> None:
    entity = f"pod:console-test/{uuid.uuid4().hex[:8]}"
    alerts = [make_alert(entity, n) for n in range(12)]

    async def scenario() -> list[FeedItem]:
        feed = AlertFeed(service_settings, buffer_size=3, backlog_per_partition=0)
        task = asyncio.create_task(feed.run())
        try:
            await asyncio.wait_for(feed.ready.wait(), 60)
            start = dict(feed.position)  # what a client had seen before these alerts
            await asyncio.to_thread(produce_alerts, service_settings, alerts)
            deadline = time.monotonic() + 60
            while sum(feed.position.values()) < sum(start.values()) + len(alerts):
                assert time.monotonic() < deadline, "the feed did not read the alerts"
                await asyncio.sleep(0.1)
            assert len(feed.buffer) == 3  # the rest only Kafka still has
            got: list[FeedItem] = []
            async for item in feed.follow(parse_cursor(encode_cursor(start)), heartbeat_s=2):
                if item is None:
                    break
                got.append(item)
            return got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    got = asyncio.run(scenario())
    ours = [item for item in got if item.alert["primary_entity"] == entity]
    assert sorted(item.alert["alert_id"] for item in ours) == sorted(a["alert_id"] for a in alerts)
    assert len({(item.partition, item.offset) for item in got}) == len(got)  # nothing twice


def metric_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value}."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def run_tail(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env.update(settings_env(settings))
    return subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "tail", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_alerts_tail_filters_and_prints_json_lines_or_colour(service_settings: Settings) -> None:
    entity = f"pod:console-test/{uuid.uuid4().hex[:8]}"
    alerts = [make_alert(entity, 0, "low"), make_alert(entity, 1, "critical"), make_alert(entity, 2, "high")]
    produce_alerts(service_settings, alerts)
    piped = run_tail(service_settings, "--since", "10m", "--entity", entity, "--min-severity", "high",
                     "--count", "2", "--timeout", "60")
    assert piped.returncode == 0, piped.stderr
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert sorted(a["alert_id"] for a in lines) == sorted([alerts[1]["alert_id"], alerts[2]["alert_id"]])

    terminal = run_tail(service_settings, "--since", "10m", "--entity", entity, "--no-json", "--count", "3",
                        "--timeout", "60")
    assert terminal.returncode == 0, terminal.stderr
    for alert in alerts:
        assert alert["summary"] in terminal.stdout
    assert "CRITICAL" in terminal.stdout and "LOW" in terminal.stdout

    refused = run_tail(service_settings, "--min-severity", "urgent")
    assert refused.returncode == 2 and "unknown severity 'urgent'" in refused.stderr


def chromium(playwright: Any) -> Any:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
        "--disable-component-update", "--disable-sync",
    ])


def open_console(browser: Any, base: str, account: Account | None = None) -> tuple[Any, list[str]]:
    """The console in a new page signed in as ``account`` (the viewer by default), and the page's script
    errors as they come."""
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, base, account or ACCOUNTS["viewer"])
    return page, errors


def test_console_shows_a_simulated_attack_in_chromium(service_settings: Settings, console_worker: str) -> None:
    from playwright.sync_api import sync_playwright

    start_ms = int(time.time() * 1000) - 60_000
    config = SimConfig(seed=int(uuid.uuid4().int % 10_000), duration_s=20, rate=100,
                       scenarios=("model_server_shell",), start_ms=start_ms)
    (label,) = Simulator(config).labels()
    pod = next(e for e in label.entities if e.startswith("pod:"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = chromium(playwright)
        try:
            page, errors = open_console(browser, console_worker)
            page.wait_for_selector("#status.online", timeout=30_000)

            published_at = time.monotonic()
            summary, _ = publish_simulation(Publisher(service_settings), config, paced=False)
            assert summary.failed == 0

            row = page.locator("tr.alert", has_text=pod.removeprefix("pod:")).first
            row.wait_for(timeout=90_000)
            seconds_to_page = time.monotonic() - published_at
            assert row.get_attribute("data-severity") in ("high", "critical")
            row.click()
            page.wait_for_selector("#evidence tr.evidence", timeout=60_000)
            evidence = page.locator("#evidence").inner_text()
            assert any(word in evidence for word in ("bash", "sh", "pip", "nc ", "curl")), evidence
            page.wait_for_selector("#timeline li.event", timeout=30_000)
            assert "model_server_shell" in page.locator("#findings").inner_text()
            link = row.locator("a.tech", has_text="AML.T0050")  # ids link to MITRE's pages (/techniques)
            link.wait_for(timeout=30_000)
            assert link.get_attribute("href") == "https://atlas.mitre.org/techniques/AML.T0050"
            assert link.get_attribute("title") == "Command and Scripting Interpreter"
            page.screenshot(path=str(ARTIFACTS / "console.png"))

            # merged into another alert (a story that continues elsewhere): off the list, which shows the other
            alert_id = row.get_attribute("data-alert-id")
            merged = make_alert(pod, 0, version=10**6) | {"alert_id": alert_id, "status": "merged",
                                                           "merged_into": "another-alert"}
            produce_alerts(service_settings, [merged])
            page.locator(f'tr.alert[data-alert-id="{alert_id}"]').wait_for(state="detached", timeout=60_000)

            page.click('nav .tab[data-tab="inventory"]')
            page.wait_for_selector("#inventory tr.asset", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "console-inventory.png"))
            assert not errors, errors
        finally:
            browser.close()
    assert (ARTIFACTS / "console.png").stat().st_size > 10_000
    # the worker that raised it counted it: events in per source, findings and alerts per detector, stage latency
    samples = metric_samples(httpx.get(f"{console_worker}/metrics", headers=viewer(), timeout=10).text)
    assert samples.get('aiwarden_events_in_total{source="falco"}', 0) > 0, samples
    assert samples.get('aiwarden_findings_total{detector="model_server_shell"}', 0) >= 1, samples
    assert samples.get('aiwarden_alerts_total{detector="model_server_shell"}', 0) >= 1, samples
    for stage in ("normalize", "detect", "correlate", "sink"):
        assert samples.get(f'aiwarden_stage_latency_seconds_count{{stage="{stage}"}}', 0) > 0, (stage, samples)
    assert any(name.startswith("aiwarden_sink_insert_seconds_count") for name in samples), samples
    print(f"attack on the page {seconds_to_page:.1f} s after publishing; screenshot {ARTIFACTS / 'console.png'}")


def test_console_shows_dead_letters_by_reason_and_source_and_the_newest(
    service_settings: Settings, console_worker: str
) -> None:
    from playwright.sync_api import sync_playwright

    run = uuid.uuid4().hex[:10]
    since_ms = int(time.time() * 1000) - 5_000  # the counts of this test's letters, not of every earlier test's
    publisher = Publisher(service_settings)
    bad = [f'{{"marker": "{run}", "truncated": '.encode(), f'{{"marker": "{run}-{"x" * 2_000_000}"}}'.encode()]
    for line, data in enumerate(bad, 1):
        assert not publisher.publish(data, "gateway", {"file": f"console-{run}.jsonl", "line": line})
    summary = publisher.flush()
    assert summary.failed == 0 and summary.dead_lettered["gateway"] == 2 and summary.truncated_letters == 1

    deadline = time.monotonic() + 90
    while True:  # the sink lands them in ClickHouse
        body = httpx.get(f"{console_worker}/dead-letters", params={"limit": 1000, "since_ms": since_ms},
                         headers=viewer(), timeout=10).json()
        mine = [d for d in body["newest"] if run in d["raw_start"]]
        if len(mine) == 2:
            break
        assert time.monotonic() < deadline, f"dead letters not served: {body}"
        time.sleep(0.5)
    assert {d["position"]["line"] for d in mine} == {"1", "2"}
    assert [d["truncated"] for d in sorted(mine, key=lambda d: d["position"]["line"])] == [False, True]
    assert sum(c["letters"] for c in body["counts"] if c["source"] == "gateway" and c["stage"] == "publish") >= 2
    assert httpx.get(f"{console_worker}/dead-letters", params={"limit": "x"}, headers=viewer(),
                     timeout=10).status_code == 400

    with sync_playwright() as playwright:
        browser = chromium(playwright)
        try:
            page, errors = open_console(browser, console_worker)
            page.click('nav .tab[data-tab="dead-letters"]')
            row = page.locator("#dead-letters tr.letter", has_text=f"console-{run}.jsonl:2").first
            row.wait_for(timeout=30_000)
            assert "truncated of" in row.inner_text() and run in row.inner_text()
            # the day's counts, most letters first: the whole run's letters share the database, so this
            # test's two (one per reason) need not be among the groups shown
            counts = page.locator("#dead-letter-counts tr.dlq-count")
            counts.first.wait_for(timeout=30_000)
            day = httpx.get(f"{console_worker}/dead-letters", headers=viewer(), timeout=10, params={
                "limit": 100, "since_ms": int(time.time() * 1000) - 86_400_000}).json()["counts"]
            assert day and day[0]["source"] in counts.first.inner_text()
            assert not page.locator("#alerts-view").is_visible()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-dead-letters.png"))
            assert not errors, errors
        finally:
            browser.close()
