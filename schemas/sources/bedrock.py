"""Amazon Bedrock model invocation logs (``schemaType: "ModelInvocationLog"``), CloudWatch Logs / S3 form.

    {"schemaType": "ModelInvocationLog", "schemaVersion": "1.0", "timestamp": "2024-05-01T12:00:00Z",
     "accountId": "123456789012", "identity": {"arn": "arn:aws:sts::…:assumed-role/app/i-0ab"},
     "region": "us-east-1", "requestId": "…", "operation": "InvokeModel" | "Converse" | …,
     "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
     "input": {"inputContentType": "application/json", "inputBodyJson": {…}, "inputTokenCount": 12},
     "output": {"outputContentType": "application/json", "outputBodyJson": {…}, "outputTokenCount": 80},
     "errorCode": "ThrottlingException"?}

Bodies over 100 KB are delivered by reference (``inputBodyS3Path``) and carry no prompt here.

Mapping (API Activity, activity ``invoke_model``): ``principal`` = ``identity.arn`` (the primary entity);
``model_id`` = ``modelId``; ``model_endpoint`` = ``bedrock/<region>/<modelId>`` (the same endpoint id
the CloudTrail parser gives an ``InvokeModel`` call); tokens from the token counts (Converse
``usage`` when the counts are absent); ``latency_ms`` from Converse ``metrics.latencyMs``;
``api_status`` = ``success`` or ``errorCode``; ``prompt`` = the user text of ``inputBodyJson``
(Anthropic Messages / text completions, Converse, Titan ``inputText``, generic ``prompt``), cut to
``prompt_chars``. A guardrail intervention is kept in ``extra["guardrail"]``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event, unique
from schemas.sources._common import (
    convert,
    dig,
    fail,
    identity_and_raw,
    primary,
    principal_key,
    prompt_text,
    put,
    to_time_ms,
)

SOURCE = "bedrock"
SCHEMA_TYPE = "ModelInvocationLog"
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Identity(msgspec.Struct, kw_only=True):
    arn: str = ""


class InvocationInput(msgspec.Struct, kw_only=True):
    inputContentType: str | None = None  # noqa: N815 - vendor field name
    inputBodyJson: Any = None  # noqa: N815
    inputBodyS3Path: str | None = None  # noqa: N815
    inputTokenCount: Count | None = None  # noqa: N815


class InvocationOutput(msgspec.Struct, kw_only=True):
    outputContentType: str | None = None  # noqa: N815
    outputBodyJson: Any = None  # noqa: N815
    outputTokenCount: Count | None = None  # noqa: N815


class InvocationLog(msgspec.Struct, kw_only=True):
    schemaType: str  # noqa: N815
    timestamp: str
    modelId: str  # noqa: N815
    requestId: str = ""  # noqa: N815
    schemaVersion: str | None = None  # noqa: N815
    accountId: str = ""  # noqa: N815
    identity: Identity | None = None
    region: str = ""
    operation: str = ""
    input: InvocationInput | None = None
    output: InvocationOutput | None = None
    errorCode: str | None = None  # noqa: N815


def _count(value: Any) -> int:
    return value if type(value) is int and 0 <= value < 2**63 else 0


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    log = convert(record, InvocationLog, SOURCE)
    if log.schemaType != SCHEMA_TYPE:
        raise fail(SOURCE, f"schemaType is {log.schemaType[:64]!r}, not {SCHEMA_TYPE!r}")
    if not log.modelId:
        raise fail(SOURCE, "empty `modelId`")
    time_ms = to_time_ms(log.timestamp, SOURCE, "$.timestamp")
    principal = log.identity.arn if log.identity else ""
    endpoint = f"bedrock/{log.region}/{log.modelId}" if log.region else f"bedrock/{log.modelId}"

    inp, out = log.input, log.output
    body = inp.inputBodyJson if inp else None
    result = out.outputBodyJson if out else None
    tokens_in = inp.inputTokenCount if inp and inp.inputTokenCount is not None else None
    tokens_out = out.outputTokenCount if out and out.outputTokenCount is not None else None
    usage = dig(result, "usage")  # Converse: inputTokens; Anthropic Messages: input_tokens
    if tokens_in is None:
        tokens_in = _count(dig(usage, "inputTokens")) or _count(dig(usage, "input_tokens"))
    if tokens_out is None:
        tokens_out = _count(dig(usage, "outputTokens")) or _count(dig(usage, "output_tokens"))

    extra: dict[str, str] = {}
    guardrail = dig(result, "amazon-bedrock-guardrailAction")
    stop_reason = dig(result, "stopReason") or dig(result, "stop_reason")
    if guardrail == "INTERVENED" or stop_reason == "guardrail_intervened":
        extra["guardrail"] = "intervened"
    put(extra, "stop_reason", stop_reason)
    put(extra, "input_s3_path", inp.inputBodyS3Path if inp else None)
    put(extra, "schema_version", log.schemaVersion)

    principal_id = ent.principal(principal) if principal else ""
    entities = unique([principal_id, ent.model(log.modelId), ent.model(endpoint)])
    eid, raw = identity_and_raw(SOURCE, record, log.requestId)
    return Event(
        event_id=eid,
        time_ms=time_ms,
        source=SOURCE,
        class_uid=API_ACTIVITY,
        activity="invoke_model",
        principal=principal,
        cloud_provider="aws",
        account_id=log.accountId,
        region=log.region,
        api_service="bedrock",
        api_operation=log.operation,
        api_status=log.errorCode or "success",
        request_id=log.requestId,
        resource=log.modelId,
        model_id=log.modelId,
        model_endpoint=endpoint,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        latency_ms=_count(dig(result, "metrics", "latencyMs")),
        prompt=prompt_text(body, prompt_chars),
        entity_id=primary(entities, principal_id),
        entities=entities,
        extra=extra,
        raw=raw,
    )


def primary_key(record: dict[str, Any]) -> str:
    """The principal straight from ``identity.arn``; full normalization only as a fallback."""
    return principal_key(record, "identity", "arn", normalize)
