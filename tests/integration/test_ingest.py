"""``aiwarden ingest`` on the real services: what each sender really sends, posted as the deployment examples
in ``infra/ingest/`` configure it, lands in ClickHouse exactly once (through a real worker), including a
retried request, an ingest killed mid-request and a broker outage during a request."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from infra import services
from infra.settings import Settings
from schemas.envelope import event_id
from schemas.sources import SOURCES, normalize_bytes
from streams.ingest import auth
from streams.ingest.process import IngestProcess
from streams.worker_process import WorkerProcess, new_app_id
from tests.conftest import SHARED_DATA
from tests.fixtures import otel
from tests.integration.invariants import wait_until
from tests.integration.test_dead_letters import cli
from tests.integration.test_faults import local

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "infra" / "ingest"
EXAMPLE_BASE = "https://aiwarden-ingest.security.svc:9480"
ENDPOINTS = ("k8s-audit", "falco", "otlp", "litellm", "scan")
MAX_BODY = 1_048_576


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {name: auth.new_token()[0] for name in ENDPOINTS}


@pytest.fixture(scope="module")
def stack(service_settings: Settings, tokens: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IngestProcess, WorkerProcess]]:
    logs = tmp_path_factory.mktemp("ingest")
    digests = {name: [auth.digest(token)] for name, token in tokens.items()}
    ingest = IngestProcess(
        service_settings, logs / "ingest.log", AIWARDEN_INGEST__TOKENS=orjson.dumps(digests).decode(),
        AIWARDEN_INGEST__MAX_BODY_BYTES=str(MAX_BODY), AIWARDEN_INGEST__DELIVERY_TIMEOUT_S="8",
        AIWARDEN_INGEST__RETRY_AFTER_S="2",
    )
    worker = WorkerProcess(service_settings, logs / "worker.log",
                           AIWARDEN_WORKER__APP_ID=new_app_id(service_settings, "ingest"))
    try:
        ingest.start()
        worker.start()
        yield ingest, worker
    finally:
        ingest.stop()
        worker.stop()


def example(name: str, ingest: IngestProcess, token: str) -> Any:
    """A deployment example of ``infra/ingest``, pointed at the test's ingest process and token."""
    text = (EXAMPLES / name).read_text().replace(EXAMPLE_BASE, ingest.url).replace("REPLACE_WITH_TOKEN", token)
    return yaml.safe_load(text)


def land(ch: Any, ids: set[str], worker: WorkerProcess, timeout_s: float = 180) -> None:
    """Every id in ClickHouse, each exactly once (FINAL folds a redelivered record's repeated row)."""
    query = "SELECT event_id, count() FROM aiwarden.events FINAL WHERE event_id IN {ids:Array(String)} GROUP BY 1"

    def rows() -> dict[str, int]:
        return dict(ch.query(query, parameters={"ids": sorted(ids)}).result_rows)

    found = wait_until(lambda: (lambda r: r if len(r) == len(ids) else None)(rows()), timeout_s, "events land",
                       [worker], detail=lambda: f"{len(rows())} of {len(ids)} landed")
    assert set(found) == ids and set(found.values()) == {1}


def recent(record: dict[str, Any]) -> dict[str, Any]:
    """A recorded event with its times moved to now (ClickHouse's TTL drops events older than 90 days);
    every other field as the sender recorded it."""
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e6) % 1_000_000:06d}Z"
    for key in ("stageTimestamp", "requestReceivedTimestamp", "timestamp", "time", "eventTime"):
        if key in record:
            record[key] = iso
    if isinstance(record.get("metadata"), dict) and "creationTimestamp" in record["metadata"]:
        record["metadata"]["creationTimestamp"] = iso[:19] + "Z"
    if isinstance(record.get("output_fields"), dict) and "evt.time" in record["output_fields"]:
        record["output_fields"]["evt.time"] = int(now * 1e9)
    for key in ("startTime", "endTime", "completionStartTime"):
        if key in record:
            record[key] = now
    if isinstance(record.get("logRecord"), dict):
        record["logRecord"]["timeUnixNano"] = str(int(now * 1e9))
    return record


def ids_of(records: list[bytes], source: str) -> set[str]:
    return {normalize_bytes(record, source).event_id for record in records}


def lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def post_until_ok(url: str, timeout_s: float = 120, **kwargs: Any) -> tuple[httpx.Response, list[int]]:
    """Post like a sender that honours 503 + Retry-After (and retries when the connection drops)."""
    statuses: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reply = httpx.post(url, timeout=30, **kwargs)
        except httpx.TransportError:
            statuses.append(0)
            time.sleep(1)
            continue
        statuses.append(reply.status_code)
        if reply.status_code != 503:
            return reply, statuses
        time.sleep(float(reply.headers["Retry-After"]))
    raise AssertionError(f"no answer but 503 within {timeout_s}s: {statuses}")


# --- the senders ------------------------------------------------------------------------------------


def audit_event_list() -> tuple[bytes, list[bytes]]:
    """A recorded audit2rbac session as the apiserver's webhook batches it: items without kind/apiVersion."""
    items = [recent(orjson.loads(line)) for line in lines(SHARED_DATA / "k8s-audit" / "audit2rbac_demo.jsonl")]
    for item in items:
        item.pop("kind", None)
        item.pop("apiVersion", None)
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
    records = [orjson.dumps({**item, "kind": "Event", "apiVersion": "audit.k8s.io/v1"}) for item in items]
    return body, records


def test_audit_webhook_eventlist_lands_once_even_when_retried(stack: Any, ch: Any, tokens: dict[str, str]) -> None:
    ingest, worker = stack
    config = example("audit-webhook-kubeconfig.yaml", ingest, tokens["k8s-audit"])
    url, token = config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"]
    body, records = audit_event_list()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for _ in range(2):  # the apiserver retries a batch whose answer it did not get
        reply = httpx.post(url, content=body, headers=headers, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"published": len(records), "dead_lettered": 0}
    land(ch, ids_of(records, "k8s_audit"), worker)


def test_falco_http_output_and_falcosidekick_webhook(stack: Any, ch: Any, tokens: dict[str, str]) -> None:
    ingest, worker = stack
    config = example("falcosidekick.yaml", ingest, tokens["falco"])
    url, headers = config["webhook"]["address"], config["webhook"]["customheaders"]
    recorded = lines(SHARED_DATA / "falco" / "falcosecurity_events.jsonl")
    alerts = [orjson.dumps(recent(orjson.loads(alert))) for alert in recorded]
    single, batch = alerts[:12], alerts[12:]
    for alert in single:  # Falco's http_output: one alert per request
        reply = httpx.post(url, content=alert, headers={**headers, "Content-Type": "application/json"}, timeout=30)
        assert reply.status_code == 200, reply.text
    reply = httpx.post(url, content=b"[" + b",".join(batch) + b"]", timeout=30,
                       headers={**headers, "Content-Type": "application/json"})
    assert reply.status_code == 200 and reply.json()["published"] == len(batch)
    records = [orjson.dumps(orjson.loads(alert)) for alert in alerts]
    land(ch, ids_of(records, "falco"), worker)


def test_otel_sdk_exporter_genai_spans(stack: Any, ch: Any, tokens: dict[str, str]) -> None:
    """The OpenTelemetry SDK's own OTLP/HTTP exporter (protobuf, gzip, as the collector example exports)."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    ingest, worker = stack
    config = example("otel-collector.yaml", ingest, tokens["otlp"])["exporters"]["otlphttp/aiwarden"]
    assert config["compression"] == "gzip" and config["encoding"] == "proto"
    exporter = OTLPSpanExporter(endpoint=f"{config['endpoint']}/v1/traces", headers=config["headers"],
                                compression=Compression.Gzip, timeout=30)
    seen = InMemorySpanExporter()
    provider = otel.provider(exporter)
    provider.add_span_processor(otel.SimpleSpanProcessor(seen))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2", "2.1b0")
    for index in range(20):
        otel.chat(tracer, index, prompt=f"Summarise ticket {index}")
    otel.failed_chat(tracer)
    otel.http_call(tracer)  # not GenAI: rejected in the partial success, never published
    assert provider.force_flush(30_000)
    provider.shutdown()
    spans = [s for s in seen.get_finished_spans() if s.attributes and "gen_ai.operation.name" in s.attributes]
    assert len(spans) == 21
    ids = {event_id("otel_genai", f"{s.context.trace_id:032x}/{s.context.span_id:016x}") for s in spans}
    land(ch, ids, worker)
    prompts = ch.query("SELECT prompt FROM aiwarden.events FINAL WHERE event_id IN {ids:Array(String)}",
                       parameters={"ids": sorted(ids)}).result_rows
    assert {p for (p,) in prompts} >= {f"Summarise ticket {i}" for i in range(20)}


def test_otlp_json_logs_and_partial_success(stack: Any, ch: Any, tokens: dict[str, str]) -> None:
    ingest, worker = stack
    fixture = REPO / "tests/fixtures/sources/otel_genai/aiwarden_inference-details-log.jsonl"
    record = recent(orjson.loads(lines(fixture)[0]))
    other = {"timeUnixNano": str(time.time_ns()), "attributes": [{"key": "http.route", "value": {"stringValue": "/"}}]}
    body = {"resourceLogs": [{"resource": record["resource"], "scopeLogs": [
        {"scope": record["scope"], "logRecords": [record["logRecord"], other]}]}]}
    reply = httpx.post(f"{ingest.url}/v1/logs", content=orjson.dumps(body), timeout=30,
                       headers={"Authorization": f"Bearer {tokens['otlp']}", "Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    land(ch, {event_id("otel_genai", "4bf92f3577b34da6a3ce929d0e0e4736/00f067aa0ba902b7")}, worker)


def test_litellm_generic_api_batches(stack: Any, ch: Any, tokens: dict[str, str]) -> None:
    ingest, worker = stack
    callback = example("litellm-config.yaml", ingest, tokens["litellm"])["callback_settings"]["aiwarden"]
    payload = recent(orjson.loads(lines(SHARED_DATA / "gateway" / "litellm_standard-logging-payload.jsonl")[0]))
    payloads = [{**payload, "id": f"chatcmpl-ingest-{time.time_ns()}-{i}", "metadata": {
        **payload["metadata"], "user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
        "requester_ip_address": "10.9.8.7",
        "guardrail_information": {"guardrail_name": "presidio", "guardrail_status": "guardrail_intervened"}}}
        for i in range(6)]
    headers = {**callback["headers"], "Content-Type": "application/json"}
    reply = httpx.post(callback["endpoint"], content=orjson.dumps(payloads[:3]), headers=headers, timeout=30)
    assert reply.status_code == 200 and reply.json()["published"] == 3
    ndjson = b"\n".join(orjson.dumps(p) for p in payloads[3:]) + b"\n"  # log_format: ndjson
    reply = httpx.post(callback["endpoint"], content=ndjson, headers=headers, timeout=30)
    assert reply.status_code == 200 and reply.json()["published"] == 3
    ids = ids_of([orjson.dumps(p) for p in payloads], "gateway")
    land(ch, ids, worker)
    rows = ch.query("SELECT api_key_id, src_ip, extra['guardrail_status'] FROM aiwarden.events FINAL "
                    "WHERE event_id IN {ids:Array(String)}", parameters={"ids": sorted(ids)}).result_rows
    assert set(rows) == {("88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b", "10.9.8.7",
                          "guardrail_intervened")}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def package_ids(document: dict[str, Any], source: str) -> set[str]:
    """The ids of a report's package events (deterministic: the same whatever time a split stamps)."""
    return {normalize_bytes(orjson.dumps(part), source).event_id for part in SOURCES[source].split(document)}


def test_scanner_reports_published_and_posted_land_as_package_events(
    stack: Any, ch: Any, tokens: dict[str, str], service_settings: Settings, tmp_path: Path
) -> None:
    """``aiwarden publish --source trivy`` of a real Trivy report, Trivy Operator's webhook broadcast (as the
    Helm values example configures it) and a Grype report posted to /scan/grype: every package of each is one
    event in ClickHouse, once; another report kind the operator broadcasts is skipped; a bad report is
    dead-lettered with its reason."""
    ingest, worker = stack
    trivy = orjson.loads((SHARED_DATA / "trivy" / "trivy_pip.json").read_bytes())
    trivy["CreatedAt"] = now_iso()  # a fresh scan (ClickHouse's TTL drops events older than 90 days)
    path = tmp_path / "trivy_pip.json"
    path.write_bytes(orjson.dumps(trivy, option=orjson.OPT_INDENT_2))  # as `trivy fs --format json` writes it
    published = cli(service_settings, "publish", "--source", "trivy", str(path))
    assert published.returncode == 0, published.stderr
    assert "aiwarden.raw.vulns" in published.stdout and "7" in published.stdout

    values = example("trivy-operator-values.yaml", ingest, tokens["scan"])["operator"]
    name, _, value = values["webhookBroadcastCustomHeaders"].partition(":")
    headers = {name: value, "Content-Type": "application/json"}
    fixtures = REPO / "tests" / "fixtures" / "sources"
    report = orjson.loads((fixtures / "trivy_operator" / "trivy-operator_vulnerability-ttl.json").read_bytes())
    report["report"]["updateTimestamp"] = now_iso()
    reply = httpx.post(values["webhookBroadcastURL"], content=orjson.dumps(report), headers=headers, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"published": 1, "dead_lettered": 0}, reply.text
    audit = {"apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "ConfigAuditReport", "report": {}}
    reply = httpx.post(values["webhookBroadcastURL"], content=orjson.dumps(audit), headers=headers, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"published": 0, "dead_lettered": 0}

    grype = orjson.loads((fixtures / "grype" / "grype_json-images-presenter.json").read_bytes())
    grype["descriptor"]["timestamp"] = now_iso()
    scan = {"Authorization": f"Bearer {tokens['scan']}", "Content-Type": "application/json"}
    reply = httpx.post(f"{ingest.url}/scan/grype", content=orjson.dumps(grype), headers=scan, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"published": 2, "dead_lettered": 0}, reply.text

    marker = f"bad-report-{time.time_ns()}"
    bad = {"SchemaVersion": 2, "ArtifactName": marker, "CreatedAt": now_iso(),
           "Results": [{"Target": "requirements.txt", "Packages": [{"Name": 7}]}]}
    reply = httpx.post(f"{ingest.url}/scan/trivy", content=orjson.dumps(bad), headers=scan, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"published": 0, "dead_lettered": 1}
    reply = httpx.post(f"{ingest.url}/scan/trivy", content=b"[]", headers=scan, timeout=30)
    assert reply.status_code == 400 and "JSON object" in reply.text

    expected = package_ids(trivy, "trivy") | package_ids(report, "trivy_operator") | package_ids(grype, "grype")
    land(ch, expected, worker)
    rows = ch.query("SELECT source, class_uid, activity, image, entity_id, extra['package'] FROM aiwarden.events "
                    "FINAL WHERE event_id IN {ids:Array(String)}", parameters={"ids": sorted(expected)}).result_rows
    assert {row[:3] for row in rows} == {("trivy", 2002, "package"), ("trivy_operator", 2002, "package"),
                                         ("grype", 2002, "package")}
    trivy_rows = {row[5]: row for row in rows if row[0] == "trivy"}
    assert set(trivy_rows) == {"Flask", "Jinja2", "Werkzeug", "click", "itsdangerous", "oauth2-client",
                               "python-gitlab"}
    assert trivy_rows["Werkzeug"][3:5] == ("testdata/fixtures/repo/pip", "image:testdata/fixtures/repo/pip")
    query = "SELECT reason FROM aiwarden.dead_letters WHERE raw LIKE concat('%', {m:String}, '%')"
    reasons = wait_until(lambda: ch.query(query, parameters={"m": marker}).result_rows, 120, "dead letter lands",
                         [worker])
    assert reasons[0][0].startswith("trivy: ") and "Packages[0].Name" in reasons[0][0]


def test_refusals_and_dead_letters(stack: Any, ch: Any, tokens: dict[str, str]) -> None:
    ingest, worker = stack
    url = f"{ingest.url}/k8s-audit"
    good = {"Authorization": f"Bearer {tokens['k8s-audit']}", "Content-Type": "application/json"}
    body, _ = audit_event_list()
    for headers in ({}, {"Authorization": f"Bearer {tokens['falco']}"}, {"Authorization": "Basic eDp5"}):
        reply = httpx.post(url, content=body, headers={**headers, "Content-Type": "application/json"}, timeout=30)
        assert reply.status_code == 401 and reply.content == b""
    reply = httpx.post(url, content=body, headers={**good, "Content-Type": "text/plain"}, timeout=30)
    assert reply.status_code == 415
    reply = httpx.post(url, content=b'{"kind": "EventList", "items": [', headers=good, timeout=30)
    assert reply.status_code == 400 and "not valid JSON" in reply.text
    reply = httpx.post(url, content=b'{"kind": "PodList", "items": []}', headers=good, timeout=30)
    assert reply.status_code == 400 and "EventList" in reply.text
    huge = gzip.compress(b'{"kind": "EventList", "items": ["' + b"x" * (MAX_BODY + 10) + b'"]}')
    reply = httpx.post(url, content=huge, headers={**good, "Content-Encoding": "gzip"}, timeout=30)
    assert reply.status_code == 413  # decompressed size counts
    reply = httpx.post(f"{ingest.url}/v1/traces", content=b"\x0a\xff\xff", timeout=30,
                       headers={"Authorization": f"Bearer {tokens['otlp']}", "Content-Type": "application/x-protobuf"})
    assert reply.status_code == 400 and "protobuf" in reply.text
    # In the format, not an event: an audit event with no timestamp at all is dead-lettered with its reason.
    marker = f"dlq-{time.time_ns()}"
    item = {"auditID": marker, "stage": "ResponseComplete", "verb": "get", "requestURI": "/api", "user": {}}
    reply = httpx.post(url, content=orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                                                  "items": [item]}), headers=good, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"published": 0, "dead_lettered": 1}
    query = ("SELECT reason, position['endpoint'] FROM aiwarden.dead_letters "
             "WHERE raw LIKE concat('%', {m:String}, '%')")
    rows = wait_until(lambda: ch.query(query, parameters={"m": marker}).result_rows, 120, "dead letter lands", [worker])
    assert rows[0][0].startswith("k8s_audit: ") and "timestamp" in rows[0][0] and rows[0][1] == "/k8s-audit"
    log = ingest.log_path.read_text()
    assert all(token not in log for token in tokens.values()) and marker not in log


def test_ingest_killed_mid_request_then_retried(stack: Any, ch: Any, tokens: dict[str, str],
                                                 service_settings: Settings) -> None:
    ingest, worker = stack
    items = [recent(orjson.loads(line))
             for line in lines(SHARED_DATA / "k8s-audit" / "falco_k8s-audit-trace-files.jsonl")]
    # One event per auditID and stage, as an apiserver sends them (the trace files repeat two of them).
    unique = {(i["auditID"], i.get("stage")): i for i in items if "auditID" in i and "stageTimestamp" in i}
    items = list(unique.values())
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
    headers = {"Authorization": f"Bearer {tokens['k8s-audit']}", "Content-Type": "application/json"}
    sent = threading.Thread(target=lambda: _swallow(lambda: httpx.post(f"{ingest.url}/k8s-audit", content=body,
                                                                        headers=headers, timeout=30)))
    sent.start()
    ingest.kill()
    sent.join()
    ingest.start()
    reply, _ = post_until_ok(f"{ingest.url}/k8s-audit", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    records = [orjson.dumps({**i, "kind": "Event", "apiVersion": i.get("apiVersion", "audit.k8s.io/v1")})
               for i in items]
    land(ch, ids_of(records, "k8s_audit"), worker)


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    import subprocess

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=aiwarden test CA")
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        (folder / f"{name}.ext").write_text(extension + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {name: folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_mutual_tls_admits_verified_clients_only(service_settings: Settings, tmp_path: Path,
                                                 tokens: dict[str, str]) -> None:
    """With a client CA set, an endpoint without tokens takes senders holding a certificate it signed
    (the apiserver's kubeconfig can carry a client certificate instead of a token); others fail the handshake."""
    import ssl

    certs = _certificates(tmp_path)
    digests = orjson.dumps({"falco": [auth.digest(tokens["falco"])]}).decode()  # k8s-audit: no tokens
    ingest = IngestProcess(
        service_settings, tmp_path / "ingest-tls.log", AIWARDEN_INGEST__TOKENS=digests,
        AIWARDEN_INGEST__TLS_CERTFILE=str(certs["server.pem"]), AIWARDEN_INGEST__TLS_KEYFILE=str(certs["server.key"]),
        AIWARDEN_INGEST__TLS_CLIENT_CAFILE=str(certs["ca.pem"]),
    )
    url = ingest.url
    assert url.startswith("https://")
    client_context = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    client_context.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    anonymous_context = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    try:
        ingest.start(verify=client_context)
        _, records = audit_event_list()
        body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                             "items": [orjson.loads(r) for r in records[:5]]})
        with httpx.Client(verify=client_context, timeout=30) as client:
            reply = client.post(f"{url}/k8s-audit", content=body, headers={"Content-Type": "application/json"})
            assert reply.status_code == 200 and reply.json()["published"] == 5
            # An endpoint with tokens still wants its token, certificate or not.
            reply = client.post(f"{url}/falco", content=b"{}", headers={"Content-Type": "application/json"})
            assert reply.status_code == 401
        with pytest.raises(httpx.TransportError), httpx.Client(verify=anonymous_context, timeout=30) as client:
            client.post(f"{url}/k8s-audit", content=body, headers={"Content-Type": "application/json"})
    finally:
        ingest.stop()


# --- aiwarden collect s3-sqs, against moto's S3, SQS and SNS servers ---------------------------------


@pytest.fixture(scope="module")
def aws(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    port = services.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch_module.setenv(key, value)
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def shared_recent(name: str) -> list[dict[str, Any]]:
    return [recent(orjson.loads(line)) for line in lines(SHARED_DATA / name)]


def collect(service_settings: Settings, aws: dict[str, str], queue: str, source: str, log: Path) -> int:
    """``aiwarden collect s3-sqs --once`` as a user runs it; returns its exit code."""
    import os
    import subprocess
    import sys

    from streams.worker_process import settings_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWARDEN_")}
    env.update(settings_env(service_settings))
    env.update(aws)
    with log.open("ab") as out:
        return subprocess.run([sys.executable, "-m", "streams.cli", "collect", "s3-sqs", "--queue", queue,
                               "--source", source, "--wait", "1", "--once"],
                              stdout=out, stderr=subprocess.STDOUT, env=env, timeout=300, check=False).returncode


def test_collect_cloudtrail_and_bedrock_from_s3_via_sqs(stack: Any, ch: Any, service_settings: Settings,
                                                         aws: dict[str, str], tmp_path: Path) -> None:
    import boto3

    _, worker = stack
    s3, sqs, sns = boto3.client("s3"), boto3.client("sqs"), boto3.client("sns")
    bucket = f"trail-{time.time_ns()}"
    s3.create_bucket(Bucket=bucket)
    dead = sqs.create_queue(QueueName=f"{bucket}-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=bucket, Attributes={
        "VisibilityTimeout": "1",
        "RedrivePolicy": orjson.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "2"}).decode()})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # 1. S3 event notifications straight to SQS, for CloudTrail's gzipped {"Records": [...]} files.
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]})
    trail = shared_recent("cloudtrail/stratus-red-team_detonations.jsonl")
    trail = list({record["eventID"]: record for record in trail}.values())
    halves = [trail[: len(trail) // 2], trail[len(trail) // 2:]]
    for number, half in enumerate(halves):
        key = f"AWSLogs/751353041310/CloudTrail/us-east-1/2026/12/02/751353041310_CloudTrail_{number} file.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(orjson.dumps({"Records": half})))
    # 2. CloudTrail's own SNS notification (s3Bucket / s3ObjectKey), delivered to the queue through SNS.
    topic = sns.create_topic(Name=bucket)["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    extra_key = "AWSLogs/751353041310/CloudTrail/us-east-1/2026/12/02/sns.json.gz"
    extra = shared_recent("cloudtrail/panther-analysis_test-events.jsonl")
    extra = list({r["eventID"]: r for r in extra if r.get("eventID") and r["eventID"] not in
                  {t["eventID"] for t in trail}}.values())[:5]
    s3.put_object(Bucket=bucket, Key=extra_key, Body=gzip.compress(orjson.dumps({"Records": extra})))
    sns.publish(TopicArn=topic, Message=orjson.dumps({"s3Bucket": bucket, "s3ObjectKey": [extra_key]}).decode())

    assert collect(service_settings, aws, queue, "cloudtrail", tmp_path / "collect.log") == 0, (
        (tmp_path / "collect.log").read_text())
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)  # all deleted
    records = [orjson.dumps(r) for r in trail + extra]
    land(ch, ids_of(records, "cloudtrail"), worker)

    # 3. Bedrock invocation logs (gzipped JSON lines), and a notification whose object is gone: that message
    #    is not deleted, comes back after the visibility timeout and ends in the queue's dead-letter queue.
    invocations = shared_recent("bedrock/panther-analysis_test-events.jsonl")
    for number, invocation in enumerate(invocations):
        invocation["requestId"] = f"req-{time.time_ns()}-{number}"
    s3.put_object(Bucket=bucket, Key="bedrock/invocations.json.gz",
                  Body=gzip.compress(b"\n".join(orjson.dumps(i) for i in invocations)))
    for key in ("bedrock/invocations.json.gz", "bedrock/gone.json.gz"):  # an S3 event notification each
        notice = {"Records": [{"eventName": "ObjectCreated:Put",
                               "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}
        sqs.send_message(QueueUrl=queue, MessageBody=orjson.dumps(notice).decode())
    log = tmp_path / "collect-bedrock.log"
    assert collect(service_settings, aws, queue, "bedrock", log) == 1  # one message failed
    assert "bedrock/gone.json.gz: cannot read" in log.read_text()
    land(ch, ids_of([orjson.dumps(i) for i in invocations], "bedrock"), worker)

    def moved() -> bool:
        collect(service_settings, aws, queue, "bedrock", log)
        reply = sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=1, VisibilityTimeout=60)
        return any("gone.json.gz" in m["Body"] for m in reply.get("Messages", []))

    assert wait_until(moved, 60, "the failing message reaches the queue's dead-letter queue", [worker], interval_s=1.5)


def _swallow(call: Any) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass  # the ingest process was killed under the request: the sender retries


# Last: the worker's own recovery from the broker restart must not hold up the tests before it.
def test_broker_outage_during_a_request_is_503_then_lands_once(stack: Any, ch: Any, tokens: dict[str, str],
                                                                service_settings: Settings) -> None:
    ingest, worker = stack
    kafka = local(services.LocalKafka, service_settings, service_settings.kafka.bootstrap_servers)
    payload = recent(orjson.loads(lines(SHARED_DATA / "gateway" / "litellm_standard-logging-payload.jsonl")[0]))
    payloads = [{**payload, "id": f"chatcmpl-outage-{time.time_ns()}-{i}"} for i in range(50)]
    body = orjson.dumps(payloads)
    headers = {"Authorization": f"Bearer {tokens['litellm']}", "Content-Type": "application/json"}
    # The outage must hit a running pipeline, not a worker still starting (run alone, this test comes first).
    warm = [{**payload, "id": f"chatcmpl-before-outage-{time.time_ns()}"}]
    post_until_ok(f"{ingest.url}/litellm", content=orjson.dumps(warm), headers=headers, timeout_s=180)
    land(ch, ids_of([orjson.dumps(p) for p in warm], "gateway"), worker, timeout_s=300)
    kafka.stop()
    try:
        reply = httpx.post(f"{ingest.url}/litellm", content=body, headers=headers, timeout=30)
        assert reply.status_code == 503 and int(reply.headers["Retry-After"]) == 2
        health = httpx.get(f"{ingest.url}/health", timeout=10)
        assert health.status_code == 503
    finally:
        kafka.restart()
    reply, statuses = post_until_ok(f"{ingest.url}/litellm", content=body, headers=headers, timeout_s=180)
    assert reply.status_code == 200 and reply.json()["published"] == 50, (statuses, reply.text)
    land(ch, ids_of([orjson.dumps(p) for p in payloads], "gateway"), worker, timeout_s=300)
