"""OTLP/HTTP export requests (protobuf or JSON) → one OTLP/JSON record per GenAI span or log record.

Each record carries the resource and scope it was exported under (the ``otel_genai`` source's raw
format, see ``schemas/sources/otel_genai.py``). Spans and log records that are not GenAI operations are
counted, not published: OTLP's partial success tells the sender how many and why.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from schemas.sources.otel_genai import GENAI_MARKERS
from streams.ingest.formats import BodyError, Split

_MARKERS = frozenset(GENAI_MARKERS)


# --- protobuf ---------------------------------------------------------------------------------------


def _value(value: Any) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}
    if kind == "double_value":
        return {"doubleValue": value.double_value}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "array_value":
        return {"arrayValue": {"values": [_value(v) for v in value.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _attributes(value.kvlist_value.values)}}
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode()}
    return {}


def _attributes(pairs: Any) -> list[dict[str, Any]]:
    return [{"key": kv.key, "value": _value(kv.value)} for kv in pairs]


def _resource(resource: Any) -> dict[str, Any]:
    return {"attributes": _attributes(resource.attributes)}


def _scope(scope: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": scope.name, "version": scope.version}
    if scope.attributes:
        out["attributes"] = _attributes(scope.attributes)
    return out


def _span(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id.hex(),
        "spanId": span.span_id.hex(),
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": str(span.start_time_unix_nano),
        "endTimeUnixNano": str(span.end_time_unix_nano),
        "attributes": _attributes(span.attributes),
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id.hex()
    if span.events:
        out["events"] = [
            {"timeUnixNano": str(e.time_unix_nano), "name": e.name, "attributes": _attributes(e.attributes)}
            for e in span.events
        ]
    if span.status.code or span.status.message:
        out["status"] = {"code": span.status.code, "message": span.status.message}
    return out


def _log(log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timeUnixNano": str(log.time_unix_nano),
        "observedTimeUnixNano": str(log.observed_time_unix_nano),
        "attributes": _attributes(log.attributes),
    }
    if log.event_name:
        out["eventName"] = log.event_name
    if log.severity_number:
        out["severityNumber"] = log.severity_number
    if log.severity_text:
        out["severityText"] = log.severity_text
    if log.HasField("body"):
        out["body"] = _value(log.body)
    if log.trace_id:
        out["traceId"] = log.trace_id.hex()
    if log.span_id:
        out["spanId"] = log.span_id.hex()
    return out


def _genai_pb(attributes: Any) -> bool:
    return any(kv.key in _MARKERS for kv in attributes)


def _protobuf(request: Any, body: bytes, groups: str, scoped: str, items: str, kind: str,
              convert: Callable[[Any], dict[str, Any]]) -> Split:
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        msg = f"not an OTLP {type(request).__name__} (protobuf): {exc}"
        raise BodyError(msg) from None
    split = Split()
    for group in getattr(request, groups):
        resource = _resource(group.resource)
        for scoped_group in getattr(group, scoped):
            scope = _scope(scoped_group.scope)
            for item in getattr(scoped_group, items):
                if not _genai_pb(item.attributes):
                    split.skipped += 1
                    continue
                split.records.append(orjson.dumps({"resource": resource, "scope": scope, kind: convert(item)}))
    return split


def traces_protobuf(body: bytes) -> Split:
    request = trace_service_pb2.ExportTraceServiceRequest()
    return _protobuf(request, body, "resource_spans", "scope_spans", "spans", "span", _span)


def logs_protobuf(body: bytes) -> Split:
    request = logs_service_pb2.ExportLogsServiceRequest()
    return _protobuf(request, body, "resource_logs", "scope_logs", "log_records", "logRecord", _log)


# --- JSON -------------------------------------------------------------------------------------------


def _genai_json(item: Any) -> bool:
    attributes = item.get("attributes") if type(item) is dict else None
    if type(attributes) is not list:
        return False
    return any(type(kv) is dict and kv.get("key") in _MARKERS for kv in attributes)


def _json_groups(body: bytes, outer: str, middle: str, inner: str) -> Iterator[tuple[Any, Any, Any]]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc}"
        raise BodyError(msg) from None
    groups = document.get(outer) if type(document) is dict else None
    if type(groups) is not list:
        msg = f"not an OTLP/JSON export request: no `{outer}` list"
        raise BodyError(msg)
    for group in groups:
        if type(group) is not dict:
            msg = f"`{outer}` holds a {type(group).__name__}, not an object"
            raise BodyError(msg)
        resource = group.get("resource") or {}
        for scoped in group.get(middle) or []:
            if type(scoped) is not dict:
                msg = f"`{middle}` holds a {type(scoped).__name__}, not an object"
                raise BodyError(msg)
            scope = scoped.get("scope") or {}
            items = scoped.get(inner) or []
            if type(items) is not list:
                msg = f"`{inner}` is not a list"
                raise BodyError(msg)
            for item in items:
                yield resource, scope, item


def _json(body: bytes, groups: str, scoped: str, items: str, kind: str) -> Split:
    split = Split()
    for resource, scope, item in _json_groups(body, groups, scoped, items):
        if not _genai_json(item):
            split.skipped += 1
            continue
        split.records.append(orjson.dumps({"resource": resource, "scope": scope, kind: item}))
    return split


def traces_json(body: bytes) -> Split:
    return _json(body, "resourceSpans", "scopeSpans", "spans", "span")


def logs_json(body: bytes) -> Split:
    return _json(body, "resourceLogs", "scopeLogs", "logRecords", "logRecord")


# --- responses --------------------------------------------------------------------------------------


def response(signal: str, rejected: int, message: str, protobuf: bool) -> bytes:
    """An Export…ServiceResponse; ``rejected`` > 0 is a partial success with ``message``."""
    if protobuf:
        reply: Any = (
            trace_service_pb2.ExportTraceServiceResponse()
            if signal == "traces"
            else logs_service_pb2.ExportLogsServiceResponse()
        )
        if rejected:
            if signal == "traces":
                reply.partial_success.rejected_spans = rejected
            else:
                reply.partial_success.rejected_log_records = rejected
            reply.partial_success.error_message = message
        return bytes(reply.SerializeToString())
    if not rejected:
        return b"{}"
    count = "rejectedSpans" if signal == "traces" else "rejectedLogRecords"
    return orjson.dumps({"partialSuccess": {count: str(rejected), "errorMessage": message}})
