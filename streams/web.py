"""The worker's HTTP endpoints (Faust web, bound to 127.0.0.1): health and state introspection."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View


def register(app: faust.App) -> None:
    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "app": app.conf.id})

    @app.page("/aiwarden/state")
    class State(View):
        """Sizes of the worker's tables and the observations behind each anomaly model."""

        async def get(self, request: Request) -> Response:
            tables = {name: len(table) for name, table in app.tables.items()}
            models: dict[str, Any] = {
                detector_id: model.n for detector_id, model in getattr(app, "aiwarden_models", {}).items()
            }
            sink = getattr(app, "aiwarden_sink", None)
            return self.json({
                "tables": tables,
                "models": models,
                "sink": {"inserted": sink.inserted, "dead_lettered": sink.dead_lettered} if sink else {},
            })
