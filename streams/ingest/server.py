"""``aiwarden ingest``: the HTTP endpoints senders post to, publishing to the raw topics.

One process, one idempotent producer (``streams.publish.Publisher``, acks=all); no state between
requests, so any number of processes run behind a load balancer. A request is answered 2xx only once
Kafka confirmed every one of its records (records that parse as the format but not as events are
dead-lettered, and those dead letters are confirmed too); 503 with ``Retry-After`` while Kafka is
unavailable, so the sender's own retry keeps the data. A retried request does not duplicate events:
event ids are deterministic (``auditID``, Falco's ``uuid`` or bytes, span ids, LiteLLM's ids).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from infra.settings import Settings
from streams.ingest import auth, formats, otlp
from streams.publish import Publisher

log = logging.getLogger("aiwarden.ingest")

JSON_TYPES = frozenset({"application/json", "application/x-ndjson", "application/jsonl", "text/json"})
PROTOBUF = "application/x-protobuf"

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "aiwarden_ingest_requests_total", "Ingest requests, per endpoint and HTTP status.", ["endpoint", "status"],
    registry=REGISTRY,
)
RECORDS = Counter(
    "aiwarden_ingest_records_total",
    "Records of ingest requests, per endpoint and outcome (published, dead_lettered, skipped).",
    ["endpoint", "outcome"], registry=REGISTRY,
)
LATENCY = Histogram(
    "aiwarden_ingest_request_seconds", "Ingest request duration (Kafka confirmation included), per endpoint.",
    ["endpoint"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=REGISTRY,
)

Splitter = Callable[[bytes], formats.Split]


@dataclass(frozen=True)
class Endpoint:
    name: str  # the AIWARDEN_INGEST__TOKENS key
    source: str  # the source its records are published as
    json: Splitter
    protobuf: Splitter | None = None
    otlp_signal: str = ""  # "traces" / "logs": answer with OTLP's Export…ServiceResponse


ENDPOINTS: dict[str, Endpoint] = {
    "/k8s-audit": Endpoint("k8s-audit", "k8s_audit", formats.k8s_audit),
    "/falco": Endpoint("falco", "falco", formats.json_events),
    "/litellm": Endpoint("litellm", "gateway", formats.json_events),
    "/v1/traces": Endpoint("otlp", "otel_genai", otlp.traces_json, otlp.traces_protobuf, "traces"),
    "/v1/logs": Endpoint("otlp", "otel_genai", otlp.logs_json, otlp.logs_protobuf, "logs"),
    # Scanner reports, one whole report per request (token key "scan").
    "/scan/trivy": Endpoint("scan", "trivy", formats.scanner_report("trivy")),
    "/scan/trivy-operator": Endpoint("scan", "trivy_operator", formats.scanner_report("trivy_operator")),
    "/scan/grype": Endpoint("scan", "grype", formats.scanner_report("grype")),
    "/scan/cyclonedx": Endpoint("scan", "cyclonedx", formats.scanner_report("cyclonedx")),
}


class Unavailable(Exception):  # noqa: N818 - answered as HTTP 503
    """Kafka did not confirm a request's records in time, or is known to be down."""


class Delivery:
    """Delivery reports of one request's records; ``done`` resolves when the last one arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop, publisher_callback: Callable[..., None]) -> None:
        self.loop = loop
        self.publisher_callback = publisher_callback
        self.done: asyncio.Future[None] = loop.create_future()
        self.lock = threading.Lock()
        self.pending = 0
        self.failed = 0
        self.error = ""
        self.sealed = False

    def expect(self) -> None:
        with self.lock:
            self.pending += 1

    def seal(self) -> None:
        with self.lock:
            self.sealed = True
            finished = self.pending == 0
        if finished:
            self._finish()

    def on_delivery(self, err: KafkaError | None, message: Any) -> None:
        self.publisher_callback(err, message)
        with self.lock:
            self.pending -= 1
            if err is not None:
                self.failed += 1
                self.error = err.str()
            finished = self.sealed and self.pending == 0
        if finished:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Ingest:
    """The producer, its poll thread and Kafka's availability, shared by every request of the process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        timeout_ms = int(settings.ingest.delivery_timeout_s * 1000)
        overrides: dict[str, Any] = {
            "linger.ms": 5,
            "message.timeout.ms": timeout_ms,
            "queue.buffering.max.messages": 200_000,
            "log.connection.close": False,  # brokers close idle connections: not worth a log line
        }
        self.publisher = Publisher(settings, error_cb=self._kafka_error, **overrides)
        self.publisher.dead_letter_undelivered = False  # the sender retries what was not confirmed
        self.available = True
        self.fatal = False
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="ingest-kafka-poll", daemon=True)

    def start(self) -> None:
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        self.publisher.producer.flush(self.settings.ingest.delivery_timeout_s)

    def _kafka_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("Kafka producer error is fatal, stopping: %s", err.str())
            self.fatal = self.available = False
            os.kill(os.getpid(), signal.SIGTERM)  # the supervisor restarts the process with a new producer
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:  # noqa: SLF001 - one lost connection is not an outage
            if self.available:
                log.warning("Kafka unavailable (%s): answering 503 until it is back", err.str())
            self.available = False

    def _poll(self) -> None:
        last_probe = 0.0
        while not self._stop.is_set():
            self.publisher.producer.poll(0.1)
            if not self.available and not self.fatal and time.monotonic() - last_probe > 1.0:
                last_probe = time.monotonic()
                try:
                    self.publisher.producer.list_topics(timeout=1.0)
                except KafkaException:
                    continue
                log.info("Kafka is reachable again")
                self.available = True

    def delivered(self, err: KafkaError | None, message: Any) -> None:
        if err is not None and self.available:
            log.warning("Kafka did not confirm a record: %s", err.str())
            self.available = False

    async def publish(self, endpoint: Endpoint, path: str, records: list[bytes]) -> tuple[int, int]:
        """Publish a request's records; returns (published, dead-lettered) once Kafka confirmed all."""
        if not self.available:
            raise Unavailable
        publisher = self.publisher

        delivery = Delivery(asyncio.get_running_loop(), self.delivered)
        dead = 0
        publisher.delivery_observer = delivery.on_delivery
        try:
            for index, record in enumerate(records):
                delivery.expect()
                if not publisher.publish(record, endpoint.source, {"endpoint": path, "record": index}):
                    dead += 1
        except KafkaException as exc:
            log.warning("Kafka refused a record: %s", exc.args[0].str())
            self.available = False
            raise Unavailable from None
        finally:
            publisher.delivery_observer = None
            delivery.seal()
        try:
            await asyncio.wait_for(asyncio.shield(delivery.done), self.settings.ingest.delivery_timeout_s)
        except TimeoutError:
            raise Unavailable from None
        if delivery.failed:
            raise Unavailable
        return len(records) - dead, dead


def _content_type(request: web.Request) -> str:
    return request.content_type if "Content-Type" in request.headers else ""


def _authorized(settings: Settings, request: web.Request, endpoint: Endpoint) -> bool:
    digests = settings.ingest.tokens.get(endpoint.name, ())  # type: ignore[call-overload]
    if not digests:  # no tokens: only a verified client certificate (mutual TLS) lets a sender in
        return settings.ingest.tls_client_cafile is not None and request.transport is not None and bool(
            request.transport.get_extra_info("peercert")
        )
    return auth.accepted(auth.bearer(request.headers.get("Authorization")), digests)


def _text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


def create_app(settings: Settings, ingest: Ingest) -> web.Application:
    retry_after = str(settings.ingest.retry_after_s)
    max_body = settings.ingest.max_body_bytes

    async def handle(request: web.Request) -> web.StreamResponse:
        endpoint = ENDPOINTS[request.path]
        started = time.perf_counter()
        response = await _handle(request, endpoint)
        REQUESTS.labels(endpoint.name, str(response.status)).inc()
        LATENCY.labels(endpoint.name).observe(time.perf_counter() - started)
        return response

    async def _handle(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        if not _authorized(settings, request, endpoint):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        content_type = _content_type(request)
        protobuf = content_type == PROTOBUF
        if (protobuf and endpoint.protobuf is None) or (not protobuf and content_type not in JSON_TYPES | {""}):
            wanted = "application/json or application/x-protobuf" if endpoint.protobuf else "application/json"
            return _text(415, f"unsupported content type {content_type[:64]!r}: send {wanted}")
        if request.content_length is not None and request.content_length > max_body:
            return _text(413, f"body over the {max_body}-byte limit")
        if not ingest.available:
            return _text(503, "Kafka is unavailable; retry later", **{"Retry-After": retry_after})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _text(413, f"body over the {max_body}-byte limit (decompressed)")
        splitter = endpoint.protobuf if protobuf and endpoint.protobuf else endpoint.json
        try:
            split = splitter(body)
        except formats.BodyError as exc:
            return _text(400, f"{request.path}: {exc}")
        try:
            published, dead = await ingest.publish(endpoint, request.path, split.records)
        except Unavailable:
            return _text(503, "Kafka did not confirm the records; retry later", **{"Retry-After": retry_after})
        RECORDS.labels(endpoint.name, "published").inc(published)
        if dead:
            RECORDS.labels(endpoint.name, "dead_lettered").inc(dead)
        if split.skipped:
            RECORDS.labels(endpoint.name, "skipped").inc(split.skipped)
        if endpoint.otlp_signal:
            rejected = split.skipped + dead
            message = ""
            if rejected:
                message = (
                    f"{split.skipped} not GenAI operations (no gen_ai.operation.name / provider / system), "
                    f"{dead} dead-lettered as unreadable GenAI records"
                )
            reply = otlp.response(endpoint.otlp_signal, rejected, message, protobuf)
            return web.Response(body=reply, content_type=PROTOBUF if protobuf else "application/json")
        summary = {"published": published, "dead_lettered": dead}
        return web.Response(body=orjson.dumps(summary), content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        if ingest.available:
            return _text(200, "ok")
        return _text(503, "degraded: Kafka unavailable", **{"Retry-After": retry_after})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), content_type="text/plain")

    app = web.Application(client_max_size=max_body)
    for path in ENDPOINTS:
        app.router.add_post(path, handle)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS when a server certificate is set; mutual TLS when a client CA bundle is set too."""
    ingest = settings.ingest
    if ingest.tls_certfile is None:
        if ingest.tls_client_cafile is not None:
            msg = "AIWARDEN_INGEST__TLS_CLIENT_CAFILE needs AIWARDEN_INGEST__TLS_CERTFILE (mutual TLS is TLS)"
            raise ValueError(msg)
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(ingest.tls_certfile), str(ingest.tls_keyfile) if ingest.tls_keyfile else None)
    if ingest.tls_client_cafile is not None:
        context.load_verify_locations(cafile=str(ingest.tls_client_cafile))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def run(settings: Settings, ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT / SIGTERM; ``ready`` gets the URL once listening."""
    context = tls_context(settings)
    closed = [name for name in ("k8s-audit", "falco", "otlp", "litellm", "scan") if name not in settings.ingest.tokens]
    if closed and settings.ingest.tls_client_cafile is None:
        log.warning(
            "no tokens for %s: those endpoints refuse every request (set AIWARDEN_INGEST__TOKENS)", ", ".join(closed)
        )
    ingest = Ingest(settings)
    ingest.start()
    app = create_app(settings, ingest)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.ingest.bind, settings.ingest.port, ssl_context=context)
        await site.start()
        sockets = runner.addresses
        port = sockets[0][1] if sockets else settings.ingest.port
        url = f"{'https' if context else 'http'}://{settings.ingest.bind}:{port}"
        log.info("aiwarden ingest listening on %s", url)
        if ready is not None:
            ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    finally:
        ingest.close()
