"""Records sent the way real senders send them: to ``aiwarden ingest`` over HTTP (the demo's ``--via-ingest``).

Kubernetes audit events go as the apiserver's webhook batches them (``EventList``), Falco alerts as a
JSON array (falcosidekick), gateway logs as LiteLLM's ``json_array``. Sources that do not arrive over
HTTP in a real estate go to Kafka with the publisher: CloudTrail and Bedrock logs come from S3
(``aiwarden collect s3-sqs``), the native agent writes to Kafka itself. A 503 is retried after its
``Retry-After``, as the senders do.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from schemas.sources import SOURCES
from streams.publish import Publisher, PublishSummary

ROUTES = {"k8s_audit": "/k8s-audit", "falco": "/falco", "gateway": "/litellm"}


class IngestError(RuntimeError):
    """aiwarden ingest refused a batch, or kept answering 503."""


class IngestSender:
    """``publish_record`` / ``flush`` like ``Publisher``'s, over HTTP for the sources ingest takes."""

    def __init__(self, url: str, token: str, publisher: Publisher, batch: int = 400, give_up_s: float = 120) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.publisher = publisher
        self.batch = batch
        self.give_up_s = give_up_s
        self.pending: dict[str, list[dict[str, Any]]] = {path: [] for path in ROUTES.values()}
        self.client = httpx.Client(timeout=60)

    @property
    def summary(self) -> PublishSummary:
        return self.publisher.summary

    def publish_record(self, source: str, record: dict[str, Any], key: str) -> None:
        path = ROUTES.get(source)
        if path is None:
            self.publisher.publish_record(source, record, key)
            return
        self.pending[path].append(record)
        if len(self.pending[path]) >= self.batch:
            self._post(path)

    def flush(self, timeout_s: float = 120.0) -> PublishSummary:
        for path in self.pending:
            if self.pending[path]:
                self._post(path)
        self.client.close()
        return self.publisher.flush(timeout_s)

    def _post(self, path: str) -> None:
        records, self.pending[path] = self.pending[path], []
        if path == "/k8s-audit":
            body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": records})
        else:
            body = orjson.dumps(records)
        deadline = time.monotonic() + self.give_up_s
        while True:
            reply = self.client.post(f"{self.url}{path}", content=body, headers=self.headers)
            if reply.status_code == 200:
                break
            if reply.status_code != 503 or time.monotonic() > deadline:
                msg = f"aiwarden ingest {path}: HTTP {reply.status_code}: {reply.text[:300]}"
                raise IngestError(msg)
            time.sleep(float(reply.headers.get("Retry-After", "1")))
        counts = reply.json()
        source = next(name for name, route in ROUTES.items() if route == path)
        self.summary.published[SOURCES[source].topic] += counts["published"]
        if counts["dead_lettered"]:
            self.summary.dead_lettered[source] += counts["dead_lettered"]
