"""The Faust application: ``create_app(settings)`` hosts the pipeline engine, the sink, containment and the web server.

What runs where: the high-rate stages (normalize, detect, correlate) run in the pipeline engine
(``streams.pipeline``: batches on Kafka transactions, one thread); Faust hosts it as a task, and
keeps what is low-rate or I/O-bound on its event loop: the containment agents (policy, signed
webhooks, retries), the console's alert feed, the web server and its timers. The ClickHouse sink runs
in a thread of its own on a confluent-kafka consumer, hosted like the engine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

import faust

from infra.kafka.clients import faust_broker
from infra.services import free_port
from infra.settings import Settings
from streams import faust_read_committed, web
from streams.agents import containment
from streams.pipeline.build import build_pipeline
from streams.pipeline.sink import ClickHouseSink
from streams.pipeline.threads import ConsumerThread
from streams.soc.compacted import TopicView

log = logging.getLogger(__name__)


def web_host(bind: str) -> str:
    """The host name links to the worker's web server use: the bind address, or the machine's name
    for a wildcard bind."""
    return socket.gethostname() if bind in ("0.0.0.0", "::") else bind  # noqa: S104


def is_loopback(bind: str) -> bool:
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"


def host_thread(app: faust.App, service: ConsumerThread, before: TopicView | None = None) -> None:
    """Run ``service`` (the pipeline engine, the sink: each a thread of its own) for as long as the Faust
    worker runs: started by a Faust task, stopped when the task is cancelled. ``before``, a compacted
    topic the service depends on, is read whole (up to 30 s) before the service starts, stopped after it."""

    async def hosted() -> None:
        if before is not None:
            before.start()
            await asyncio.to_thread(before.caught_up.wait, 30)
        service.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(service.stop)
            if before is not None:
                await asyncio.to_thread(before.stop)

    hosted.__qualname__ = hosted.__name__ = f"host_{type(service).__name__}"
    app.task(hosted)


def create_app(settings: Settings) -> faust.App:
    """A Faust app for resolved ``settings`` (service addresses filled in)."""
    faust_read_committed.install()
    urls, credentials = faust_broker(settings)
    worker = settings.worker
    if not is_loopback(worker.web_bind) and not settings.auth.cookie_secure:
        log.warning("the worker web server listens on %s with non-Secure session cookies: serve it over HTTPS "
                    "and leave AIWARDEN_AUTH__COOKIE_SECURE on", worker.web_bind)
    datadir = settings.state_dir.resolve() / "worker"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        worker.app_id,
        broker=urls,
        broker_credentials=credentials,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_bind=worker.web_bind,
        web_port=worker.web_port or free_port(),
        web_host=web_host(worker.web_bind),
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=max(0.5, worker.session_timeout_s / 4),
        broker_rebalance_timeout=max(30.0, worker.session_timeout_s * 3),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.02,  # 5 ms → 20 ms: fewer, fuller produce requests; worker CPU/event −25%
        producer_compression_type="lz4",
        datadir=str(datadir / worker.app_id),
    )
    engine, stages = build_pipeline(settings)
    # exceptions in force, read whole before findings are correlated
    host_thread(app, engine, before=stages["exceptions"])
    app.aiwarden_engine = engine  # type: ignore[attr-defined]
    app.aiwarden_exceptions = stages["correlate"].exceptions  # type: ignore[attr-defined]
    app.aiwarden_models = stages["detect"].checkpoints.models  # type: ignore[attr-defined]
    containment.register(app, settings)
    sink = ClickHouseSink(settings)
    host_thread(app, sink)
    app.aiwarden_sink = sink  # type: ignore[attr-defined]
    web.register(app, settings)
    return app
