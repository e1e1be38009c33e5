"""OpenTelemetry GenAI: one span (or one log record) of an OTLP export, with the ``gen_ai.*`` attributes.

The raw record is one span or log record in the OTLP/JSON encoding, with the resource and
instrumentation scope it was exported under (``aiwarden ingest`` splits OTLP ``/v1/traces`` and
``/v1/logs`` requests, protobuf or JSON, into these)::

    {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chatbot"}}, …]},
     "scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
     "span": {"traceId": "<32 hex>", "spanId": "<16 hex>", "name": "chat gpt-4o", "kind": 3,
              "startTimeUnixNano": "…", "endTimeUnixNano": "…", "attributes": [...], "events": [...],
              "status": {"code": 2, "message": "…"}}}

or ``"logRecord": {"timeUnixNano": …, "eventName": "gen_ai.client.inference.operation.details",
"attributes": [...], "traceId": …, "spanId": …}`` in place of ``span``. A span or log record without
``gen_ai.operation.name``, ``gen_ai.provider.name`` or ``gen_ai.system`` is not a GenAI operation.

Mapping (API Activity, semantic conventions 1.37+, with the older names they replaced):

- ``activity``: ``invoke_model`` for inference operations (``chat``, ``text_completion``,
  ``generate_content``, ``embeddings`` and any other with a model), else the operation
  (``invoke_agent``, ``create_agent``, ``execute_tool``), so an agent span does not count its model
  calls twice; ``api_operation`` = ``gen_ai.operation.name``; ``api_service`` =
  ``gen_ai.provider.name`` (``gen_ai.system`` before 1.37).
- ``model_id`` = ``gen_ai.request.model`` (else ``gen_ai.response.model``); ``model_endpoint`` =
  ``server.address[:server.port]``; ``request_id`` = ``gen_ai.response.id``; tokens from
  ``gen_ai.usage.input_tokens`` / ``output_tokens`` (``prompt_tokens`` / ``completion_tokens`` before);
  ``latency_ms`` = span end - start; ``api_status`` = ``error.type`` (else ``error`` for an error
  status, else ``ok``).
- caller: ``principal`` = ``user.id`` (``enduser.id`` before), else the emitting ``service.name``;
  ``src_ip`` = ``client.address``; ``user_agent`` = ``user_agent.original``; ``api_key_id`` =
  ``metadata.user_api_key_hash`` (LiteLLM's OpenTelemetry callback; there is no convention for keys).
- ``prompt``: the user turns of ``gen_ai.input.messages`` (structured or JSON text; recorded only when
  the emitter opted in to content capture), else the older ``gen_ai.prompt`` attribute or
  ``gen_ai.prompt.<n>.content`` attributes, else the span's ``gen_ai.user.message`` /
  ``gen_ai.content.prompt`` events.
- workload from the resource: ``k8s.cluster.name``, ``k8s.namespace.name``, ``k8s.pod.name``,
  ``container.id``, ``container.image.name`` (+ tag), ``host.name`` (else ``k8s.node.name``),
  ``cloud.provider`` / ``cloud.account.id`` / ``cloud.region``.
- ``extra``: response model, conversation / agent / tool / data-source ids, request parameters
  (``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``choice.count``, ``stop_sequences``), finish
  reasons, output type, cached and reasoning token counts, trace and span ids, service, scope.

The event id comes from the trace and span ids (a log record in a span's context gets the span's id:
the same invocation), else the canonical bytes. The primary entity is the API key, else the principal.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import orjson

from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event, unique
from schemas.sources._common import (
    EXTRA_CHARS,
    MESSAGE_CHARS,
    convert,
    fail,
    fallback_key,
    identity_and_raw,
    ip_entity,
    ip_of,
    join_texts,
    primary,
    prompt_text,
    put,
    text,
    to_time_ms,
    truncate,
)

SOURCE = "otel_genai"
Nanos = Annotated[int, msgspec.Meta(ge=0)] | str

# Operations that call a model; the others (agents, tools) wrap model calls that have spans of their own.
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings", "completion"})
OTHER_OPERATIONS = frozenset({"invoke_agent", "create_agent", "execute_tool"})
GENAI_MARKERS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system")
STATUS_ERROR = 2

# gen_ai.* (and other) attributes kept in ``extra`` under a short name.
EXTRA_ATTRIBUTES = (
    ("gen_ai.response.model", "response_model"),
    ("gen_ai.conversation.id", "conversation_id"),
    ("gen_ai.agent.id", "agent_id"),
    ("gen_ai.agent.name", "agent_name"),
    ("gen_ai.tool.name", "tool_name"),
    ("gen_ai.tool.call.id", "tool_call_id"),
    ("gen_ai.tool.type", "tool_type"),
    ("gen_ai.data_source.id", "data_source_id"),
    ("gen_ai.output.type", "output_type"),
    ("gen_ai.request.max_tokens", "max_tokens"),
    ("gen_ai.request.temperature", "temperature"),
    ("gen_ai.request.top_p", "top_p"),
    ("gen_ai.request.top_k", "top_k"),
    ("gen_ai.request.seed", "seed"),
    ("gen_ai.request.choice.count", "choice_count"),
    ("gen_ai.request.frequency_penalty", "frequency_penalty"),
    ("gen_ai.request.presence_penalty", "presence_penalty"),
    ("gen_ai.request.encoding_formats", "encoding_formats"),
    ("gen_ai.request.stop_sequences", "stop_sequences"),
    ("gen_ai.response.finish_reasons", "finish_reasons"),
    ("gen_ai.usage.cache_read.input_tokens", "cache_read_tokens"),
    ("gen_ai.usage.cache_creation.input_tokens", "cache_creation_tokens"),
    ("gen_ai.usage.reasoning.output_tokens", "reasoning_tokens"),
    ("gen_ai.openai.request.service_tier", "service_tier"),
    ("openai.request.service_tier", "service_tier"),
    ("gen_ai.embeddings.dimension.count", "embedding_dimensions"),
    ("error.type", "error_type"),
    ("user.email", "user_email"),
)


class KeyValue(msgspec.Struct):
    key: str
    value: dict[str, Any] | None = None


class Resource(msgspec.Struct, kw_only=True):
    attributes: list[KeyValue] = []


class Scope(msgspec.Struct, kw_only=True):
    name: str = ""
    version: str = ""


class SpanEvent(msgspec.Struct, kw_only=True):
    name: str = ""
    timeUnixNano: Nanos = 0  # noqa: N815 - OTLP/JSON field names
    attributes: list[KeyValue] = []


class Status(msgspec.Struct, kw_only=True):
    code: int | str = 0
    message: str = ""


class Span(msgspec.Struct, kw_only=True):
    traceId: str = ""  # noqa: N815
    spanId: str = ""  # noqa: N815
    name: str = ""
    startTimeUnixNano: Nanos = 0  # noqa: N815
    endTimeUnixNano: Nanos = 0  # noqa: N815
    attributes: list[KeyValue] = []
    events: list[SpanEvent] = []
    status: Status | None = None


class LogRecord(msgspec.Struct, kw_only=True):
    timeUnixNano: Nanos = 0  # noqa: N815
    observedTimeUnixNano: Nanos = 0  # noqa: N815
    eventName: str = ""  # noqa: N815
    attributes: list[KeyValue] = []
    body: dict[str, Any] | None = None
    traceId: str = ""  # noqa: N815
    spanId: str = ""  # noqa: N815


class OtelRecord(msgspec.Struct, kw_only=True):
    resource: Resource | None = None
    scope: Scope | None = None
    span: Span | None = None
    logRecord: LogRecord | None = None  # noqa: N815


def any_value(value: dict[str, Any] | None) -> Any:
    """A Python value from an OTLP/JSON ``AnyValue`` (int64 may be a string in JSON)."""
    if not value:
        return None
    for kind, inner in value.items():
        if kind == "stringValue" or kind == "boolValue" or kind == "doubleValue":
            return inner
        if kind == "intValue":
            try:
                return int(inner)
            except (TypeError, ValueError):
                return None
        if kind == "arrayValue":
            values = inner.get("values") if type(inner) is dict else None
            return [any_value(v) for v in values if type(v) is dict] if type(values) is list else []
        if kind == "kvlistValue":
            values = inner.get("values") if type(inner) is dict else None
            return attributes_of(convert({"attributes": values or []}, Resource, SOURCE).attributes)
        if kind == "bytesValue":
            return None  # opaque bytes name nothing an event field holds
    return None


def attributes_of(pairs: list[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def is_genai(attributes: dict[str, Any]) -> bool:
    """True when a span's or log record's attributes describe a GenAI operation."""
    return any(attributes.get(marker) for marker in GENAI_MARKERS)


def _count(value: Any) -> int:
    if type(value) is int and 0 <= value < 2**63:
        return value
    if type(value) is float and 0 <= value < 2**63:
        return int(value)
    return 0


def _nanos(value: int | str, field: str) -> int:
    if value in (0, "", "0"):
        return 0
    return to_time_ms(value if type(value) is int else text(value), SOURCE, field, unit="ns")


def _messages_prompt(messages: Any, limit: int) -> str:
    """User text of ``gen_ai.input.messages``: ``[{"role", "parts": [{"type": "text", "content"}]}]``."""
    if type(messages) is str:
        try:
            messages = orjson.loads(messages)
        except orjson.JSONDecodeError:
            return truncate(messages, limit)  # not JSON: the emitter recorded the text itself
    if type(messages) is not list:
        return ""
    turns = []
    for message in messages:
        if type(message) is not dict or message.get("role", "user") != "user":
            continue
        parts = message.get("parts")
        if type(parts) is list:
            texts = [text(p.get("content")) for p in parts if type(p) is dict and p.get("type", "text") == "text"]
            turns.append({"role": "user", "content": "\n".join(t for t in texts if t)})
        else:
            turns.append(message)
    return prompt_text({"messages": turns}, limit)


def _prompt(attributes: dict[str, Any], events: list[SpanEvent], limit: int) -> str:
    if limit <= 0:
        return ""
    found = _messages_prompt(attributes.get("gen_ai.input.messages"), limit)
    if found:
        return found
    legacy = attributes.get("gen_ai.prompt")
    if type(legacy) is str and legacy:
        return _messages_prompt(legacy, limit) if legacy[:1] == "[" else truncate(legacy, limit)
    numbered = []
    for index in range(64):  # OpenLLMetry: gen_ai.prompt.<n>.role / .content
        content = attributes.get(f"gen_ai.prompt.{index}.content")
        if content is None:
            break
        if attributes.get(f"gen_ai.prompt.{index}.role", "user") == "user":
            numbered.append({"role": "user", "content": text(content)})
    if numbered:
        return prompt_text({"messages": numbered}, limit)
    for event in events:
        if event.name in ("gen_ai.user.message", "gen_ai.content.prompt"):
            values = attributes_of(event.attributes)
            content = values.get("gen_ai.prompt") or values.get("content")
            if content:
                return _messages_prompt(content, limit) if text(content)[:1] == "[" else text(content, limit)
    return ""


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    otel = convert(record, OtelRecord, SOURCE)
    if (otel.span is None) == (otel.logRecord is None):
        raise fail(SOURCE, "expected exactly one of `span` and `logRecord`")
    resource = attributes_of(otel.resource.attributes) if otel.resource else {}
    events: list[SpanEvent] = []
    if otel.span is not None:
        span = otel.span
        attributes = attributes_of(span.attributes)
        start = _nanos(span.startTimeUnixNano, "$.span.startTimeUnixNano")
        if not start:
            raise fail(SOURCE, "missing timestamp `$.span.startTimeUnixNano`")
        end = _nanos(span.endTimeUnixNano, "$.span.endTimeUnixNano")
        latency = max(0, end - start) if end else 0
        trace_id, span_id, events = span.traceId, span.spanId, span.events
        errored = span.status is not None and span.status.code in (STATUS_ERROR, "STATUS_CODE_ERROR")
        message = f"{span.name}: {span.status.message}" if errored and span.status else span.name
        kind = "span"
    else:
        log = otel.logRecord
        assert log is not None  # noqa: S101 - narrowed by the check above
        attributes = attributes_of(log.attributes)
        start = _nanos(log.timeUnixNano, "$.logRecord.timeUnixNano") or _nanos(
            log.observedTimeUnixNano, "$.logRecord.observedTimeUnixNano"
        )
        if not start:
            raise fail(SOURCE, "missing timestamp `$.logRecord.timeUnixNano`")
        latency, trace_id, span_id = 0, log.traceId, log.spanId
        errored = bool(attributes.get("error.type"))
        message = log.eventName or text(attributes.get("event.name"))
        kind = "log"
    if not is_genai(attributes):
        raise fail(SOURCE, f"the {kind} has none of {', '.join(GENAI_MARKERS)}: not a GenAI operation")

    operation = text(attributes.get("gen_ai.operation.name"), EXTRA_CHARS)
    provider = text(attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system"), EXTRA_CHARS)
    model = text(attributes.get("gen_ai.request.model") or attributes.get("gen_ai.response.model"), EXTRA_CHARS)
    activity = operation if operation in OTHER_OPERATIONS else "invoke_model"
    if activity == "invoke_model" and not model and operation not in MODEL_OPERATIONS:
        activity = operation or "other"

    server = text(attributes.get("server.address"), EXTRA_CHARS)
    port = _count(attributes.get("server.port"))
    endpoint = f"{server}:{port}" if server and port else server
    service = text(resource.get("service.name"), EXTRA_CHARS)
    principal = text(attributes.get("user.id") or attributes.get("enduser.id"), EXTRA_CHARS) or service
    api_key = text(attributes.get("metadata.user_api_key_hash"), EXTRA_CHARS)
    client = text(attributes.get("client.address"), EXTRA_CHARS)
    src_ip = ip_of(client)
    error_type = text(attributes.get("error.type"), EXTRA_CHARS)
    status = error_type or ("error" if errored else "ok")
    tokens_in = _count(attributes.get("gen_ai.usage.input_tokens", attributes.get("gen_ai.usage.prompt_tokens")))
    tokens_out = _count(
        attributes.get("gen_ai.usage.output_tokens", attributes.get("gen_ai.usage.completion_tokens"))
    )

    namespace = text(resource.get("k8s.namespace.name"), EXTRA_CHARS)
    pod_name = text(resource.get("k8s.pod.name"), EXTRA_CHARS)
    container_id = text(resource.get("container.id"), EXTRA_CHARS)
    image = text(resource.get("container.image.name"), EXTRA_CHARS)
    tags = resource.get("container.image.tags") or resource.get("container.image.tag")
    tag = text(tags[0] if type(tags) is list and tags else tags, EXTRA_CHARS)
    if image and tag and "@" not in image:
        image = f"{image}:{tag}"
    host = text(resource.get("host.name") or resource.get("k8s.node.name"), EXTRA_CHARS)

    extra: dict[str, str] = {}
    if client and not src_ip:
        put(extra, "client", client)
    for attribute, name in EXTRA_ATTRIBUTES:
        value = attributes.get(attribute)
        if type(value) is list:
            put(extra, name, join_texts(value))
        else:
            put(extra, name, value)
    put(extra, "provider", provider)
    put(extra, "service", service)
    put(extra, "trace_id", trace_id)
    put(extra, "span_id", span_id)
    if otel.scope is not None:
        put(extra, "scope", f"{otel.scope.name} {otel.scope.version}".strip())

    key_entity = ent.apikey(api_key) if api_key else ""
    principal_entity = ent.principal(principal) if principal else ""
    entities = unique(
        [
            key_entity,
            principal_entity,
            ip_entity(src_ip),
            ent.model(model) if model else "",
            ent.model(endpoint) if endpoint else "",
            ent.pod(namespace, pod_name) if namespace and pod_name else "",
            ent.namespace(namespace) if namespace else "",
            ent.container(container_id) if container_id else "",
            ent.image(image) if image else "",
            ent.host(host) if host else "",
        ]
    )
    vendor_id = f"{trace_id}/{span_id}" if trace_id and span_id else ""
    eid, raw = identity_and_raw(SOURCE, record, vendor_id)
    return Event(
        event_id=eid,
        time_ms=start,
        source=SOURCE,
        class_uid=API_ACTIVITY,
        activity=activity,
        message=truncate(message, MESSAGE_CHARS),
        principal=principal,
        api_key_id=api_key,
        user_agent=text(attributes.get("user_agent.original"), EXTRA_CHARS),
        cluster=text(resource.get("k8s.cluster.name"), EXTRA_CHARS),
        namespace=namespace,
        pod=pod_name,
        container_id=container_id[:12],
        image=image,
        host=host,
        cloud_provider=text(resource.get("cloud.provider"), EXTRA_CHARS),
        account_id=text(resource.get("cloud.account.id"), EXTRA_CHARS),
        region=text(resource.get("cloud.region"), EXTRA_CHARS),
        api_service=provider,
        api_operation=operation,
        api_status=status,
        request_id=text(attributes.get("gen_ai.response.id"), EXTRA_CHARS),
        src_ip=src_ip,
        model_id=model,
        model_endpoint=endpoint,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        latency_ms=latency,
        prompt=_prompt(attributes, events, prompt_chars),
        entity_id=primary(entities, key_entity, principal_entity),
        entities=entities,
        extra=extra,
        raw=raw,
    )


def primary_key(record: dict[str, Any]) -> str:
    """The API key, else the principal: attributes are lists, so this normalizes the record."""
    return fallback_key(normalize, record)
