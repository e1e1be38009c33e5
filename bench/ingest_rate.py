"""How many records/s does one ``aiwarden ingest`` process take? Batched k8s audit webhook posts (EventLists of
``--batch`` events) and OTLP/HTTP protobuf posts (``--batch`` GenAI spans each), ``--concurrency`` requests
in flight, each answered only after Kafka (acks=all) confirmed its records. Reports records/s (wall), the
ingest process's CPU seconds per 1,000 records (what one process can do when it has a core to itself),
and request latency percentiles. The client runs on the same machine and takes CPU from it.

    python -m bench.ingest_rate --requests 200 --batch 400    # starts the bench services, stops them after
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.common import cpu_seconds, spread
from infra import services
from infra.settings import Settings
from streams.ingest import auth
from streams.ingest.process import IngestProcess

ROOT = Path(__file__).resolve().parents[1]
AUDIT_FIXTURES = ROOT / "tests" / "fixtures" / "sources" / "k8s_audit"


def audit_bodies(requests: int, batch: int) -> list[bytes]:
    """EventLists of real audit events (the fixtures), each event given its own auditID and a current time."""
    pool = [orjson.loads(line) for path in sorted(AUDIT_FIXTURES.glob("*.jsonl"))
            for line in path.read_bytes().splitlines() if line.strip()]
    pool = [e for e in pool if "stageTimestamp" in e]
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    bodies = []
    for r in range(requests):
        items = []
        for i in range(batch):
            item = {**pool[(r * batch + i) % len(pool)], "auditID": str(uuid.uuid4()), "stageTimestamp": now,
                    "requestReceivedTimestamp": now}
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
        bodies.append(orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}))
    return bodies


def _kv(key: str, value: Any) -> common_pb2.KeyValue:
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=str(value)))


def otlp_bodies(requests: int, batch: int) -> list[bytes]:
    """ExportTraceServiceRequests of chat spans with the GenAI attributes an instrumented app sets."""
    start = time.time_ns()
    resource = [_kv("service.name", "support-chatbot"), _kv("k8s.namespace.name", "ml-prod"),
                _kv("k8s.pod.name", "chatbot-0")]
    bodies = []
    for r in range(requests):
        spans = []
        for i in range(batch):
            attributes = [
                _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                _kv("gen_ai.request.model", "gpt-4o-mini"), _kv("gen_ai.usage.input_tokens", 100 + i),
                _kv("gen_ai.usage.output_tokens", 40), _kv("gen_ai.response.id", f"chatcmpl-{r}-{i}"),
                _kv("server.address", "api.openai.com"), _kv("server.port", 443),
                _kv("user.id", f"user-{i % 50}@acme.example"), _kv("client.address", f"10.1.{i % 250}.7"),
                _kv("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                    {"type": "text", "content": f"Summarise support ticket {r * batch + i}"}]}])),
            ]
            spans.append(trace_pb2.Span(
                trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8], name="chat gpt-4o-mini", kind=3,
                start_time_unix_nano=start, end_time_unix_nano=start + 850_000_000, attributes=attributes))
        request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
            resource={"attributes": resource},
            scope_spans=[trace_pb2.ScopeSpans(scope={"name": "bench", "version": "1"}, spans=spans)])])
        bodies.append(request.SerializeToString())
    return bodies


async def _send(url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def lane() -> None:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                reply = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if reply.status_code != 200:
                    msg = f"{url}: HTTP {reply.status_code}: {reply.text[:200]}"
                    raise RuntimeError(msg)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    return latencies


def measure(ingest: IngestProcess, path: str, bodies: list[bytes], batch: int, headers: dict[str, str],
            concurrency: int) -> dict[str, Any]:
    asyncio.run(_send(f"{ingest.url}{path}", bodies[:2], headers, 1))  # warm-up: connections, producer
    cpu_before = cpu_seconds(ingest.proc.pid if ingest.proc else None) or 0.0
    started = time.perf_counter()
    latencies = asyncio.run(_send(f"{ingest.url}{path}", bodies[2:], headers, concurrency))
    wall = time.perf_counter() - started
    cpu = (cpu_seconds(ingest.proc.pid if ingest.proc else None) or 0.0) - cpu_before
    records = (len(bodies) - 2) * batch
    return {
        "records": records, "requests": len(bodies) - 2, "batch": batch, "concurrency": concurrency,
        "wall_s": round(wall, 2), "records_per_s": round(records / wall),
        "ingest_cpu_s": round(cpu, 2), "ingest_cpu_ms_per_1k_records": round(cpu / records * 1e6, 1),
        "records_per_ingest_cpu_s": round(records / cpu) if cpu else None,
        "latency_s": spread(latencies),
    }


def run(settings: Settings, requests: int = 200, batch: int = 400, concurrency: int = 4) -> dict[str, Any]:
    token, digest = auth.new_token()
    tokens = orjson.dumps({"k8s-audit": [digest], "otlp": [digest]}).decode()
    log = settings.state_dir / "bench-ingest.log"
    ingest = IngestProcess(settings, log, AIWARDEN_INGEST__TOKENS=tokens, AIWARDEN_LOG_LEVEL="WARNING").start()
    auth_header = {"Authorization": f"Bearer {token}"}
    try:
        audit = measure(ingest, "/k8s-audit", audit_bodies(requests + 2, batch),
                        batch, {**auth_header, "Content-Type": "application/json"}, concurrency)
        spans = measure(ingest, "/v1/traces", otlp_bodies(requests + 2, batch),
                        batch, {**auth_header, "Content-Type": "application/x-protobuf"}, concurrency)
    finally:
        ingest.stop()
    return {"k8s_audit": audit, "otlp": spans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--state-dir", default=str(ROOT / ".aiwarden-bench"))
    args = parser.parse_args()
    base = Settings(state_dir=Path(args.state_dir))
    settings = services.up(base)
    try:
        from streams.setup import migrate

        migrate(settings)
        print(json.dumps(run(settings, args.requests, args.batch, args.concurrency), indent=2))
    finally:
        services.down(base)


if __name__ == "__main__":
    main()
