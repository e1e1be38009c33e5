"""Ingest without Kafka: tokens, request bodies → records, OTLP protobuf and JSON alike, SQS notifications,
and the per-request delivery tracking."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.sources import normalize_bytes
from streams.ingest import auth, formats, otlp, s3_sqs
from streams.ingest.server import Delivery
from tests.fixtures import otel

pytestmark = pytest.mark.unit


def test_tokens_are_checked_against_digests() -> None:
    token, digest = auth.new_token()
    other, other_digest = auth.new_token()
    assert token != other and len(digest) == 64 and auth.digest(token) == digest
    assert auth.accepted(token, (other_digest, digest))
    assert not auth.accepted(other, (digest,))
    assert not auth.accepted("", (digest,)) and not auth.accepted(token, ())
    assert auth.bearer(f"Bearer {token}") == token and auth.bearer(f"bearer  {token} ") == token
    assert auth.bearer(f"Basic {token}") == "" and auth.bearer(None) == ""


def test_event_list_items_become_self_describing_records() -> None:
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                         "items": [{"auditID": "a", "stage": "ResponseComplete"}, "not an object"]})
    split = formats.k8s_audit(body)
    first = orjson.loads(split.records[0])
    assert first == {"auditID": "a", "stage": "ResponseComplete", "kind": "Event", "apiVersion": "audit.k8s.io/v1"}
    assert split.records[1] == b'"not an object"'  # kept: the publisher dead-letters it with its reason
    for bad, reason in ((b"[1]", "EventList object"), (b'{"kind": "PodList"}', "EventList"),
                        (b'{"kind": "EventList", "items": [], "apiVersion": "v1"}', "audit.k8s.io"),
                        (b"{", "not valid JSON")):
        with pytest.raises(formats.BodyError, match=reason):
            formats.k8s_audit(bad)


def test_json_events_take_an_object_an_array_or_json_lines() -> None:
    assert formats.json_events(b'{"a": 1}').records == [b'{"a": 1}']
    assert formats.json_events(b'[{"a": 1}, {"b": 2}]').records == [b'{"a":1}', b'{"b":2}']
    assert formats.json_events(b'{"a": 1}\n{"b": 2}\n').records == [b'{"a": 1}', b'{"b": 2}']
    for bad in (b"42", b"{", b'{"a": 1}\n{'):
        with pytest.raises(formats.BodyError):
            formats.json_events(bad)


def _sdk_request() -> bytes:
    seen = InMemorySpanExporter()
    tracer = otel.provider(seen).get_tracer("opentelemetry.instrumentation.openai_v2", "2.1b0")
    otel.chat(tracer, 1)
    otel.failed_chat(tracer)
    otel.http_call(tracer)
    return bytes(encode_spans(seen.get_finished_spans()).SerializeToString())


def _otlp_json(body: bytes) -> bytes:
    """The OTLP/JSON encoding of a protobuf request (hex ids, as the OTLP spec has them)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(body)
    document = MessageToDict(request)
    for group in document["resourceSpans"]:
        for scoped in group["scopeSpans"]:
            for span in scoped["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return orjson.dumps(document)


def test_otlp_protobuf_and_json_give_the_same_events() -> None:
    body = _sdk_request()
    from_pb, from_json = otlp.traces_protobuf(body), otlp.traces_json(_otlp_json(body))
    assert from_pb.skipped == from_json.skipped == 1 and len(from_pb.records) == len(from_json.records) == 2
    events_pb = [normalize_bytes(r, "otel_genai") for r in from_pb.records]
    events_json = [normalize_bytes(r, "otel_genai") for r in from_json.records]
    assert [e.event_id for e in events_pb] == [e.event_id for e in events_json]
    for a, b in zip(events_pb, events_json, strict=True):
        assert (a.model_id, a.tokens_in, a.tokens_out, a.principal, a.prompt, a.api_status) == (
            b.model_id, b.tokens_in, b.tokens_out, b.principal, b.prompt, b.api_status)
    assert events_pb[0].prompt == "Summarise ticket 1" and events_pb[1].api_status == "RateLimitError"
    with pytest.raises(formats.BodyError, match="protobuf"):
        otlp.traces_protobuf(b"\x0a\xff\xff")
    with pytest.raises(formats.BodyError, match="resourceSpans"):
        otlp.traces_json(b'{"resourceLogs": []}')


def test_otlp_partial_success_replies() -> None:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    reply = trace_service_pb2.ExportTraceServiceResponse()
    reply.ParseFromString(otlp.response("traces", 3, "why", protobuf=True))
    assert reply.partial_success.rejected_spans == 3 and reply.partial_success.error_message == "why"
    assert otlp.response("logs", 0, "", protobuf=False) == b"{}"
    assert orjson.loads(otlp.response("logs", 2, "why", protobuf=False)) == {
        "partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "why"}}


S3_KEY = ("trail", "AWSLogs/1/CloudTrail/a b=c.json.gz")
S3_EVENT = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
    "bucket": {"name": "trail"}, "object": {"key": "AWSLogs/1/CloudTrail/a+b%3Dc.json.gz"}}}]}


@pytest.mark.parametrize(("body", "expected"), [
    (S3_EVENT, [S3_KEY]),
    ({"Type": "Notification", "Message": orjson.dumps(S3_EVENT).decode()}, [S3_KEY]),
    ({"Type": "Notification", "Message": '{"s3Bucket": "t", "s3ObjectKey": ["k1", "k2"]}'}, [("t", "k1"), ("t", "k2")]),
    ({"detail-type": "Object Created", "detail": {"bucket": {"name": "b"}, "object": {"key": "k"}}}, [("b", "k")]),
    ({"Event": "s3:TestEvent", "Bucket": "trail"}, []),
    ({"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {}}]}, []),
])
def test_sqs_notifications_name_their_objects(body: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = s3_sqs.objects_of(orjson.dumps(body).decode())
    assert [(o.bucket, o.key) for o in found] == expected


@pytest.mark.parametrize("body", ["not json", "[1]", '{"hello": 1}', '{"Type": "Notification", "Message": "{"}'])
def test_other_sqs_messages_are_errors(body: str) -> None:
    with pytest.raises(s3_sqs.MessageError):
        s3_sqs.objects_of(body)


@pytest.mark.parametrize("compress", [True, False])
def test_objects_stream_gunzipped_or_plain(compress: bool) -> None:
    data = b'{"a": 1}\n{"b": 2}\n' * 5000
    body = io.BytesIO(gzip.compress(data) if compress else data)
    with s3_sqs._stream(body) as stream:  # noqa: SLF001
        assert b"".join(iter(stream)) == data
    assert s3_sqs.region_of("https://sqs.eu-west-1.amazonaws.com/1/q") == "eu-west-1"
    assert s3_sqs.region_of("http://127.0.0.1:5000/1/q") is None


class _Error:
    def str(self) -> str:
        return "broker down"


def test_delivery_resolves_after_the_last_report_and_counts_failures() -> None:
    async def scenario() -> tuple[bool, bool, int, str]:
        reports: list[Any] = []
        delivery = Delivery(asyncio.get_running_loop(), lambda err, msg: reports.append(err))
        for _ in range(3):
            delivery.expect()
        delivery.on_delivery(None, None)
        delivery.seal()
        delivery.on_delivery(None, None)
        early = delivery.done.done()
        delivery.on_delivery(_Error(), None)  # type: ignore[arg-type]
        await asyncio.wait_for(delivery.done, 5)
        return early, delivery.done.done(), delivery.failed, delivery.error

    assert asyncio.run(scenario()) == (False, True, 1, "broker down")


def test_delivery_of_an_empty_request_is_done_at_once() -> None:
    async def scenario() -> bool:
        delivery = Delivery(asyncio.get_running_loop(), lambda err, msg: None)
        delivery.seal()
        return delivery.done.done()

    assert asyncio.run(scenario())


def test_scanner_reports_split_per_package_and_other_operator_reports_are_skipped() -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
    body = (fixtures / "trivy_operator" / "trivy-operator_docs-list.json").read_bytes()
    split = formats.scanner_report("trivy_operator")(body)
    assert [orjson.loads(r)["report"]["vulnerabilities"][0]["resource"] for r in split.records] == [
        "libbsd0", "libwebp6"]
    audit = orjson.dumps({"apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "ConfigAuditReport"})
    assert formats.scanner_report("trivy_operator")(audit) == formats.Split(skipped=1)
    # Not the format: passed on whole, for the normalizer to dead-letter with the reason.
    assert [orjson.loads(r) for r in formats.scanner_report("trivy")(b'{"hello": 1}').records] == [{"hello": 1}]
    with pytest.raises(formats.BodyError, match=r"grype report \(a JSON object\), got a JSON list"):
        formats.scanner_report("grype")(b"[]")
