"""The worker's HTTP endpoints (Faust web, bound to 127.0.0.1): health, metrics, state, the console and the
SOC workflow; every one but /health behind sign-in and roles (``streams.soc.guard``)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.web import Request, Response, View

from infra.settings import Settings
from streams import metrics, topics
from streams.console import views as console
from streams.console.feed import AlertFeed
from streams.console.queries import ConsoleQueries
from streams.soc import guard as soc_guard
from streams.soc import views as soc_views


def register(app: faust.App, settings: Settings) -> None:
    feed = AlertFeed(settings)
    queries = ConsoleQueries(settings)
    app.aiwarden_feed = feed  # type: ignore[attr-defined]
    console.register(app, feed, queries)
    soc_topics = {name: app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw")
                  for name in (*topics.SOC_TOPICS, topics.ACTIONS, topics.ACTION_LOG, topics.OCSF)}

    async def send(topic: str, key: bytes, value: bytes | None) -> None:
        """Write one SOC record and wait until the broker has it (a human's action is never lost silently)."""
        await (await soc_topics[topic].send(key=key, value=value))

    guard = soc_guard.install(app, settings, send)
    soc_views.register(app, settings, guard, queries, AlertFeed(settings, topic=topics.TRIAGE, buffer_size=500))

    @app.page("/health")
    class Health(View):
        """``ok`` when the alert feed reads Kafka and ClickHouse answers, else ``degraded`` (HTTP 200
        either way: the worker itself is alive; the fields say which dependency is not)."""

        async def get(self, request: Request) -> Response:
            clickhouse = await asyncio.to_thread(queries.ping)
            sink = getattr(app, "aiwarden_sink", None)
            engine = getattr(app, "aiwarden_engine", None)
            checks = {"clickhouse": clickhouse, "alert_feed": feed.ready.is_set(),
                      "pipeline": engine is None or engine.alive, "accounts": guard.view.caught_up.is_set()}
            return self.json({
                "status": "ok" if all(checks.values()) else "degraded",
                "app": app.conf.id,
                "checks": checks,
                "sink": sink.state() if sink else {},
            })

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus text exposition (see ``streams/metrics.py`` for what is measured)."""

        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/aiwarden/state")
    class State(View):
        """Sizes of the worker's tables and the observations behind each anomaly model."""

        async def get(self, request: Request) -> Response:
            tables = {name: len(table) for name, table in app.tables.items()}
            engine = getattr(app, "aiwarden_engine", None)
            if engine is not None:
                tables.update(engine.state()["stores"])
            models: dict[str, Any] = {
                detector_id: model.n for detector_id, model in getattr(app, "aiwarden_models", {}).items()
            }
            sink = getattr(app, "aiwarden_sink", None)
            return self.json({
                "tables": tables,
                "pipeline": engine.state() if engine is not None else {},
                "models": models,
                "sink": sink.state() if sink else {},
                "alert_feed": {"buffered": len(feed.buffer), "followers": len(feed.followers),
                               "skipped": feed.skipped},
            })
