"""Request logs of an OpenAI-compatible LLM gateway: aiwarden's canonical format, and LiteLLM's.

The canonical aiwarden gateway format, one JSON object per request::

    {
      "time": "2025-06-01T12:00:00.250Z",         # required: RFC 3339 (naive = UTC) or epoch ms
      "request_id": "req_01HZX…",                  # required, unique per request
      "model": "llama-3.1-70b-instruct",           # required: the model the caller asked for
      "endpoint": "/v1/chat/completions",          # required: the API path called
      "status": 200,                               # required: HTTP status returned to the caller
      "api_key_id": "key_7d1e",                    # id (never the secret) of the caller's API key
      "user": "alice@example.com",                 # the authenticated user / tenant
      "client_ip": "10.2.3.4", "user_agent": "openai-python/1.40.0",
      "gateway": "https://llm-gw.internal:4000",   # optional: gateway base URL or host
      "provider": "vllm",                          # optional: the upstream provider
      "prompt_tokens": 812, "completion_tokens": 96, "latency_ms": 1840,
      "prompt": "…"                                # optional: the user's prompt text
    }

LiteLLM proxy logs are accepted as they are emitted: a ``LiteLLM_SpendLogs`` row (``request_id``,
``api_key`` = the hashed key, ``user``, ``end_user``, ``requester_ip_address``, ``call_type``,
``startTime``/``endTime``, token counts, ``metadata`` as a JSON object or JSON text) and a
``StandardLoggingPayload`` (``id``, ``metadata.user_api_key_hash`` / ``user_api_key_user_id`` /
``requester_ip_address``, ``messages``, ``hidden_params.api_base``, ``response_time``; epoch-second
times), as LiteLLM's ``generic_api`` callback posts it to ``aiwarden ingest``'s ``/litellm``.
``call_type`` (``acompletion``, ``aembedding`` …) is mapped to the OpenAI API path.

Mapping (API Activity, activity ``invoke_model``): ``principal`` = the user (LiteLLM: ``user``, else the
key's ``user_api_key_user_id``, else ``end_user``); ``api_key_id`` (an ``sk-`` secret that reaches us is
replaced by its SHA-256, which is LiteLLM's own key hash); ``src_ip`` = the client IP; ``model_id``;
``model_endpoint`` = gateway URL + endpoint when the gateway is known, else the endpoint;
``api_operation`` = the endpoint; ``api_status`` = the HTTP status (LiteLLM: ``200`` for ``success``,
the error code or ``failure`` otherwise); tokens; ``latency_ms``; ``prompt`` cut to ``prompt_chars``.
The primary entity is the API key, else the user. LiteLLM's upstream ``api_base``, provider, key alias,
team and organisation, cost, trace id, request tags, ``max_tokens``, the guardrails applied and their
outcome (``guardrail`` names, ``guardrail_status``: the most severe of ``guardrail_information``) go
to ``extra``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any

import msgspec
import orjson

from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event, unique
from schemas.sources._common import (
    EXTRA_CHARS,
    SlowPath,
    convert,
    dig,
    fail,
    fallback_key,
    identity_and_raw,
    ip_entity,
    ip_of,
    join_texts,
    key_str,
    primary,
    prompt_text,
    put,
    text,
    to_time_ms,
    truncate,
)

SOURCE = "gateway"
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Status = Annotated[int, msgspec.Meta(ge=100, le=999)]

# LiteLLM call_type -> the OpenAI-compatible path it serves.
CALL_TYPES = {
    "completion": "/v1/chat/completions",
    "acompletion": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "atext_completion": "/v1/completions",
    "embedding": "/v1/embeddings",
    "aembedding": "/v1/embeddings",
    "image_generation": "/v1/images/generations",
    "aimage_generation": "/v1/images/generations",
    "moderation": "/v1/moderations",
    "amoderation": "/v1/moderations",
    "transcription": "/v1/audio/transcriptions",
    "atranscription": "/v1/audio/transcriptions",
    "speech": "/v1/audio/speech",
    "aspeech": "/v1/audio/speech",
    "rerank": "/v1/rerank",
    "arerank": "/v1/rerank",
    "responses": "/v1/responses",
    "aresponses": "/v1/responses",
    "anthropic_messages": "/v1/messages",
}


class GatewayLog(msgspec.Struct, kw_only=True):
    """The canonical aiwarden gateway record."""

    time: str | int | float
    request_id: str
    model: str
    endpoint: str
    status: Status
    api_key_id: str = ""
    user: str = ""
    client_ip: str = ""
    user_agent: str = ""
    gateway: str = ""
    provider: str = ""
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    latency_ms: Count = 0
    prompt: str = ""


class LiteLLMMetadata(msgspec.Struct, kw_only=True):
    user_api_key_hash: str | None = None
    user_api_key: str | None = None  # the hash, in spend-log metadata
    user_api_key_alias: str | None = None
    user_api_key_user_id: str | None = None
    user_api_key_user_email: str | None = None
    user_api_key_team_id: str | None = None
    user_api_key_end_user_id: str | None = None
    requester_ip_address: str | None = None
    user_agent: str | None = None
    user_api_key_org_id: str | None = None
    user_api_key_team_alias: str | None = None
    applied_guardrails: Any = None
    guardrail_information: Any = None


class LiteLLMHidden(msgspec.Struct, kw_only=True):
    api_base: str | None = None


class LiteLLMError(msgspec.Struct, kw_only=True):
    error_code: str | int | None = None
    error_class: str | None = None


Time = str | float | None


class LiteLLMLog(msgspec.Struct, kw_only=True):
    """A LiteLLM spend-log row or StandardLoggingPayload (the fields both have, and each one's own)."""

    call_type: str
    model: str
    startTime: Time  # noqa: N815 - vendor field name
    endTime: Time = None  # noqa: N815
    request_id: str | None = None  # spend-log row
    id: str | None = None  # StandardLoggingPayload
    api_key: str | None = None
    user: str | None = None
    end_user: str | None = None
    requester_ip_address: str | None = None
    status: str | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    response_time: float | None = None
    custom_llm_provider: str | None = None
    api_base: str | None = None
    model_group: str | None = None
    model_id: str | None = None
    cache_hit: str | bool | None = None
    stream: bool | None = None
    spend: float | None = None
    response_cost: float | None = None
    metadata: LiteLLMMetadata | str | None = None
    messages: Any = None
    proxy_server_request: Any = None
    hidden_params: LiteLLMHidden | None = None
    error_information: LiteLLMError | None = None
    trace_id: str | None = None
    guardrail_information: Any = None  # StandardLoggingGuardrailInformation, or a list of them
    model_parameters: Any = None
    request_tags: Any = None


def key_id(value: str) -> str:
    """An API key id; a raw ``sk-…`` secret becomes its SHA-256 hex (LiteLLM's hash of the key)."""
    if value.startswith("sk-"):
        return hashlib.sha256(value.encode()).hexdigest()
    return value


def _join_url(base: str, path: str) -> str:
    if not base:
        return path
    return f"{base.rstrip('/')}{path}" if path.startswith("/") else f"{base.rstrip('/')}/{path}"


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    if "call_type" in record:
        return _litellm(record, prompt_chars)
    log = convert(record, GatewayLog, SOURCE)
    for name in ("request_id", "model", "endpoint"):
        if not getattr(log, name):
            raise fail(SOURCE, f"empty `{name}`")
    time_ms = to_time_ms(log.time, SOURCE, "$.time", unit="ms")
    api_key = key_id(log.api_key_id)
    src_ip = ip_of(log.client_ip)
    extra: dict[str, str] = {}
    if log.client_ip and not src_ip:
        put(extra, "client", log.client_ip)
    put(extra, "provider", log.provider)
    put(extra, "gateway", log.gateway)
    endpoint = _join_url(log.gateway, log.endpoint)
    return _event(
        record,
        vendor_id=log.request_id,
        time_ms=time_ms,
        principal=log.user,
        api_key=api_key,
        user_agent=log.user_agent,
        src_ip=src_ip,
        api_service="gateway",
        operation=log.endpoint,
        status=str(log.status),
        model=log.model,
        endpoint=endpoint,
        tokens=(log.prompt_tokens, log.completion_tokens),
        latency_ms=log.latency_ms,
        prompt=truncate(log.prompt, prompt_chars) if prompt_chars > 0 else "",
        extra=extra,
    )


def _json_text(value: Any, field: str) -> Any:
    """LiteLLM stores some objects as JSON text; decode those ('' and "{}" are empty)."""
    if type(value) is not str:
        return value
    if len(value) < 3 or value[0] not in "[{":
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise fail(SOURCE, f"`{field}` is not valid JSON text: {exc}") from None


def _litellm(record: dict[str, Any], prompt_chars: int) -> Event:
    log = convert(record, LiteLLMLog, SOURCE, strict=False)
    if not log.model:
        raise fail(SOURCE, "empty `model`")
    time_ms = to_time_ms(log.startTime, SOURCE, "$.startTime", unit="s")
    latency = 0
    if log.endTime is not None and log.endTime != "":
        latency = max(0, to_time_ms(log.endTime, SOURCE, "$.endTime", unit="s") - time_ms)
    elif log.response_time is not None and 0 <= log.response_time < 1e9:
        latency = int(log.response_time * 1000)

    meta = log.metadata if type(log.metadata) is LiteLLMMetadata else None
    if meta is None:
        decoded = _json_text(log.metadata, "$.metadata")
        if type(decoded) is dict:  # the spend-log row keeps metadata as JSON text
            meta = convert(decoded, LiteLLMMetadata, f"{SOURCE}: in `$.metadata` text", strict=False)
        else:
            meta = LiteLLMMetadata()
    api_key = key_id(log.api_key or meta.user_api_key_hash or meta.user_api_key or "")
    principal = log.user or meta.user_api_key_user_id or log.end_user or meta.user_api_key_end_user_id or ""
    client = log.requester_ip_address or meta.requester_ip_address or ""
    src_ip = ip_of(client)

    path = CALL_TYPES.get(log.call_type) or truncate(log.call_type, EXTRA_CHARS)
    request = _json_text(log.proxy_server_request, "$.proxy_server_request")
    gateway_url = text(dig(request, "url")).partition("?")[0]
    endpoint = truncate(gateway_url, EXTRA_CHARS) if gateway_url else path

    status = log.status or ""
    if status == "success":
        api_status = "200"
    else:
        error_code = text(log.error_information.error_code) if log.error_information else ""
        api_status = error_code or status or "failure"

    prompt = ""
    if prompt_chars > 0:
        messages = _json_text(log.messages, "$.messages")
        if type(messages) is list:
            prompt = prompt_text({"messages": messages}, prompt_chars)
        elif type(messages) is dict:
            prompt = prompt_text(messages, prompt_chars)

    extra: dict[str, str] = {}
    if client and not src_ip:
        put(extra, "client", client)
    put(extra, "call_type", log.call_type)
    put(extra, "provider", log.custom_llm_provider)
    put(extra, "api_base", (log.hidden_params.api_base or "") if log.hidden_params else "")
    if "api_base" not in extra:
        put(extra, "api_base", log.api_base)
    put(extra, "key_alias", meta.user_api_key_alias)
    put(extra, "team_id", meta.user_api_key_team_id)
    put(extra, "user_email", meta.user_api_key_user_email)
    put(extra, "end_user", log.end_user)
    put(extra, "model_group", log.model_group)
    put(extra, "deployment_id", log.model_id)
    put(extra, "org_id", meta.user_api_key_org_id)
    put(extra, "team_alias", meta.user_api_key_team_alias)
    put(extra, "trace_id", log.trace_id)
    put(extra, "request_tags", join_texts(log.request_tags))
    put(extra, "applied_guardrails", join_texts(meta.applied_guardrails))
    _guardrails(extra, log.guardrail_information or meta.guardrail_information)
    max_tokens = dig(log.model_parameters, "max_tokens") or dig(log.model_parameters, "max_completion_tokens")
    put(extra, "max_tokens", max_tokens)
    cost = log.response_cost if log.response_cost is not None else log.spend
    if cost is not None and math.isfinite(cost):
        extra["cost_usd"] = f"{cost:.6g}"
    if log.stream is not None:
        extra["stream"] = "true" if log.stream else "false"
    return _event(
        record,
        vendor_id=log.request_id or log.id or "",
        time_ms=time_ms,
        principal=principal,
        api_key=api_key,
        user_agent=(meta.user_agent or ""),
        src_ip=src_ip,
        api_service="litellm",
        operation=path,
        status=api_status,
        model=log.model,
        endpoint=endpoint,
        tokens=(log.prompt_tokens or 0, log.completion_tokens or 0),
        latency_ms=latency,
        prompt=prompt,
        extra=extra,
    )


# Guardrail outcomes, mildest first: an event keeps the most severe of its guardrails'.
_GUARDRAIL_STATUSES = ("success", "not_run", "guardrail_failed_to_respond", "failure", "guardrail_intervened",
                       "blocked")


def _guardrails(extra: dict[str, str], information: Any) -> None:
    """``guardrail`` (names) and ``guardrail_status`` (the most severe) from LiteLLM's guardrail information."""
    entries = information if type(information) is list else [information]
    names, statuses = [], []
    for entry in entries:
        if type(entry) is not dict:
            continue
        names.append(text(entry.get("guardrail_name")))
        statuses.append(text(entry.get("guardrail_status")))
    put(extra, "guardrail", join_texts(names))
    known = [s for s in statuses if s]
    if known:
        rank = {status: index for index, status in enumerate(_GUARDRAIL_STATUSES)}
        put(extra, "guardrail_status", max(known, key=lambda s: rank.get(s, len(rank))))


def _event(
    record: dict[str, Any],
    *,
    vendor_id: str,
    time_ms: int,
    principal: str,
    api_key: str,
    user_agent: str,
    src_ip: str,
    api_service: str,
    operation: str,
    status: str,
    model: str,
    endpoint: str,
    tokens: tuple[int, int],
    latency_ms: int,
    prompt: str,
    extra: dict[str, str],
) -> Event:
    key_entity = ent.apikey(api_key) if api_key else ""
    principal_entity = ent.principal(principal) if principal else ""
    entities = unique(
        [
            key_entity,
            principal_entity,
            ip_entity(src_ip),
            ent.model(model),
            ent.model(endpoint)
            if endpoint and not endpoint.startswith("/")
            else "",  # a bare path names nothing
        ]
    )
    eid, raw = identity_and_raw(SOURCE, record, vendor_id)
    return Event(
        event_id=eid,
        time_ms=time_ms,
        source=SOURCE,
        class_uid=API_ACTIVITY,
        activity="invoke_model",
        principal=principal,
        api_key_id=api_key,
        user_agent=user_agent,
        api_service=api_service,
        api_operation=operation,
        api_status=status,
        request_id=vendor_id,
        src_ip=src_ip,
        model_id=model,
        model_endpoint=endpoint,
        tokens_in=tokens[0],
        tokens_out=tokens[1],
        latency_ms=latency_ms,
        prompt=prompt,
        entity_id=primary(entities, key_entity, principal_entity),
        entities=entities,
        extra=extra,
        raw=raw,
    )


def primary_key(record: dict[str, Any]) -> str:
    """The API key (else the user) straight from the record; full normalization only as a fallback."""
    try:
        if "call_type" in record:
            key = key_str(record.get("api_key"))
            meta = record.get("metadata")
            if not key and type(meta) is dict:
                key = key_str(meta.get("user_api_key_hash")) or key_str(meta.get("user_api_key"))
            if key:
                return ent.apikey(key_id(key))
        else:
            key, user = key_str(record.get("api_key_id")), key_str(record.get("user"))
            if key or user:
                return ent.apikey(key_id(key)) if key else ent.principal(user)
    except SlowPath:
        pass
    return fallback_key(normalize, record)
