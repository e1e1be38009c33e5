"""AWS CloudTrail event records, one per message (``split`` unwraps an S3 log file ``{"Records": […]}``).

Mapping (every record is API Activity except CloudTrail Insights events, which are AWS's own anomaly
findings and become Detection Findings with ``rule`` = the insight type):

- ``principal`` = ``userIdentity.arn``, else ``principalId``, else ``invokedBy`` (AWS services), else the
  identity ``type``; the role behind an assumed-role session (``sessionContext.sessionIssuer.arn``) and
  the access key (``accessKeyId`` → ``api_key_id``) are entities too.
- ``api_service`` = ``eventSource`` without ``.amazonaws.com``; ``api_operation`` = ``eventName``;
  ``api_status`` = ``success``, the ``errorCode``, or ``failure`` for a failed ``ConsoleLogin`` (which
  has no error code).
- ``activity``: ``invoke_model`` (Bedrock / SageMaker inference calls), ``authenticate`` (console
  logins and STS credential calls), else ``read`` / ``create`` / ``update`` / ``delete`` / ``other``
  from ``readOnly`` and the verb the event name starts with.
- ``resource``: a short target: ``bucket/key``, the model id, ``resources[0].ARN`` or the first
  name-like request parameter. ``model_id`` from ``requestParameters.modelId`` (SageMaker:
  ``modelName`` / ``endpointName``); for inference calls ``model_endpoint`` = ``bedrock/<region>/<modelId>``
  as in the Bedrock invocation logs (SageMaker: ``sagemaker/<region>/<endpointName>``).
- ``src_ip`` only when ``sourceIPAddress`` is an IP; an AWS service name there goes to
  ``extra["source"]``. ``dst_host`` = ``tlsDetails.clientProvidedHostHeader``.
- ``extra`` keeps up to 8 scalar request parameters (``param.<name>``, text, cut to 256 chars).

The event id comes from ``eventID`` (from the canonical bytes when a record has none).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

import msgspec

from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, DETECTION_FINDING, Event, unique
from schemas.sources._common import (
    EXTRA_CHARS,
    MESSAGE_CHARS,
    SlowPath,
    convert,
    dig,
    fail,
    fallback_key,
    identity_and_raw,
    ip_entity,
    ip_of,
    key_str,
    primary,
    put,
    text,
    to_time_ms,
    truncate,
)

SOURCE = "cloudtrail"
MAX_PARAMS = 8
INSIGHT = "AwsCloudTrailInsight"

INVOKE_EVENTS = frozenset(
    {
        "InvokeModel",
        "InvokeModelWithResponseStream",
        "Converse",
        "ConverseStream",
        "InvokeEndpoint",
        "InvokeEndpointAsync",
        "InvokeEndpointWithResponseStream",
    }
)
AUTH_EVENTS = frozenset(
    {
        "ConsoleLogin",
        "AssumeRole",
        "AssumeRoleWithSAML",
        "AssumeRoleWithWebIdentity",
        "GetSessionToken",
        "GetFederationToken",
        "CheckMfa",
    }
)
VERBS = {
    **dict.fromkeys("Get List Describe Lookup Head Search Select Batch".split(), "read"),
    **dict.fromkeys("Create Put Run Add Register Import Copy Allocate".split(), "create"),
    **dict.fromkeys("Delete Remove Terminate Deregister Release Leave".split(), "delete"),
    **dict.fromkeys(
        "Update Modify Attach Detach Set Enable Disable Replace Change Authorize Revoke Associate "
        "Disassociate Start Stop Reboot Reset Tag Untag Send Restore".split(),
        "update",
    ),
}
# Request parameters that name the target of a call, most specific first.
TARGET_PARAMS = (
    "roleArn", "policyArn", "userName", "roleName", "groupName", "instanceId", "functionName",
    "secretId", "name", "trailName", "groupId", "guardrailIdentifier", "endpointName", "modelName",
    "keyId", "snapshotId", "imageId", "dBSnapshotIdentifier", "clusterName",
)  # fmt: skip


class SessionIssuer(msgspec.Struct, kw_only=True):
    arn: str | None = None
    type: str | None = None
    userName: str | None = None  # noqa: N815 - vendor field name


class SessionContext(msgspec.Struct, kw_only=True):
    sessionIssuer: SessionIssuer | None = None  # noqa: N815


class UserIdentity(msgspec.Struct, kw_only=True):
    type: str | None = None
    arn: str | None = None
    principalId: str | None = None  # noqa: N815
    accountId: str | None = None  # noqa: N815
    accessKeyId: str | None = None  # noqa: N815
    invokedBy: str | None = None  # noqa: N815
    userName: str | None = None  # noqa: N815
    sessionContext: SessionContext | None = None  # noqa: N815


class Resource(msgspec.Struct, kw_only=True):
    ARN: str | None = None  # noqa: N815
    arn: str | None = None  # some producers write it lower-case
    type: str | None = None


class InsightDetails(msgspec.Struct, kw_only=True):
    state: str | None = None
    eventSource: str | None = None  # noqa: N815
    eventName: str | None = None  # noqa: N815
    insightType: str | None = None  # noqa: N815


class TlsDetails(msgspec.Struct, kw_only=True):
    clientProvidedHostHeader: str | None = None  # noqa: N815


class CloudTrailRecord(msgspec.Struct, kw_only=True):
    eventTime: str  # noqa: N815
    eventSource: str | None = None  # noqa: N815
    eventName: str | None = None  # noqa: N815
    eventType: str | None = None  # noqa: N815
    eventID: str | None = None  # noqa: N815
    requestID: str | None = None  # noqa: N815
    awsRegion: str | None = None  # noqa: N815
    sourceIPAddress: str | None = None  # noqa: N815
    userAgent: str | None = None  # noqa: N815
    userIdentity: UserIdentity | None = None  # noqa: N815
    requestParameters: dict[str, Any] | None = None  # noqa: N815
    responseElements: Any = None  # noqa: N815
    additionalEventData: Any = None  # noqa: N815
    errorCode: str | None = None  # noqa: N815
    errorMessage: str | None = None  # noqa: N815
    recipientAccountId: str | None = None  # noqa: N815
    readOnly: bool | None = None  # noqa: N815
    resources: list[Resource] | None = None
    insightDetails: InsightDetails | None = None  # noqa: N815
    tlsDetails: TlsDetails | None = None  # noqa: N815
    vpcEndpointId: str | None = None  # noqa: N815


def split(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of an S3-delivered log file ``{"Records": [...]}``; any other record as itself.

    Items that are not JSON objects are passed through, so the normalizer dead-letters each with a
    reason instead of the whole file being lost.
    """
    if "Records" not in record:
        return [record]
    items = record["Records"]
    if type(items) is not list:
        raise fail(SOURCE, f"`Records` is a {type(items).__name__}, not a list")
    return cast(list[dict[str, Any]], items)


def _principal(identity: UserIdentity | None) -> str:
    if identity is None:
        return ""
    return identity.arn or identity.principalId or identity.invokedBy or identity.type or ""


def _activity(event_name: str, read_only: bool | None) -> str:
    # Event names are a few hundred known strings; do not let junk names fill the cache.
    return _cached_activity(event_name, read_only) if len(event_name) <= 96 else "other"


@lru_cache(maxsize=4096)
def _cached_activity(event_name: str, read_only: bool | None) -> str:
    if event_name in INVOKE_EVENTS:
        return "invoke_model"
    if event_name in AUTH_EVENTS:
        return "authenticate"
    if read_only:
        return "read"
    end = 1
    while end < len(event_name) and event_name[end].islower():
        end += 1
    return VERBS.get(event_name[:end], "other")


def _resource(params: dict[str, Any] | None, resources: list[Resource] | None, model_id: str) -> str:
    if params is not None:
        bucket = text(params.get("bucketName"))
        if bucket:
            key = text(params.get("key"))
            return truncate(f"{bucket}/{key}" if key else bucket, EXTRA_CHARS)
    if model_id:
        return model_id
    if resources:
        first = resources[0]
        arn = first.ARN or first.arn or ""
        if arn:
            return truncate(arn, EXTRA_CHARS)
    if params is not None:
        get = params.get
        for name in TARGET_PARAMS:
            value = get(name)
            if value is not None:  # most are absent: skip text() for those
                value = text(value, EXTRA_CHARS)
                if value:
                    return value
    return ""


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    if "Records" in record and "eventTime" not in record:
        items = record["Records"]
        count = len(items) if type(items) is list else "?"
        raise fail(SOURCE, f"an S3 log file with {count} records; split it into records first")
    ct = convert(record, CloudTrailRecord, SOURCE)
    time_ms = to_time_ms(ct.eventTime, SOURCE, "$.eventTime")
    if ct.eventType == INSIGHT:
        return _insight(record, ct, time_ms)
    if not ct.eventSource or not ct.eventName:
        raise fail(SOURCE, "missing `eventSource` or `eventName`")

    identity = ct.userIdentity
    principal = _principal(identity)
    issuer = identity.sessionContext.sessionIssuer if identity and identity.sessionContext else None
    issuer_arn = (issuer.arn or "") if issuer is not None else ""
    access_key = (identity.accessKeyId or "") if identity is not None else ""
    service = ct.eventSource.removesuffix(".amazonaws.com")
    region = ct.awsRegion or ""
    params = ct.requestParameters

    activity = _activity(ct.eventName, ct.readOnly)
    model_id = model_endpoint = ""
    if params is not None:
        if service == "sagemaker":
            endpoint_name = text(params.get("endpointName"))
            model_id = text(params.get("modelName")) or endpoint_name
            if endpoint_name and activity == "invoke_model":
                model_endpoint = f"sagemaker/{region}/{endpoint_name}"
        else:
            model_id = text(params.get("modelId"))
            if model_id and activity == "invoke_model" and service.startswith("bedrock"):
                model_endpoint = f"bedrock/{region}/{model_id}"

    status = ct.errorCode or "success"
    response = ct.responseElements
    if ct.eventName == "ConsoleLogin" and dig(response, "ConsoleLogin") == "Failure" and not ct.errorCode:
        status = "failure"

    source_address = ct.sourceIPAddress or ""
    src_ip = ip_of(source_address)
    extra: dict[str, str] = {}
    if source_address and not src_ip:
        put(extra, "source", source_address)
    if identity is not None:
        put(extra, "identity_type", identity.type)
        put(extra, "user_name", identity.userName)
        put(extra, "actor_account_id", identity.accountId)
    put(extra, "session_issuer", issuer_arn)
    put(extra, "event_type", ct.eventType)
    put(extra, "vpc_endpoint", ct.vpcEndpointId)
    put(extra, "mfa_used", dig(ct.additionalEventData, "MFAUsed"))
    if ct.readOnly is not None:
        extra["read_only"] = "true" if ct.readOnly else "false"
    if params:
        kept = 0
        for name, value in params.items():
            if kept == MAX_PARAMS:
                break
            if type(value) in (str, int, float, bool):
                put(extra, f"param.{name[:64]}", value)
                kept += 1

    principal_id = ent.principal(principal) if principal else ""
    entities = unique(
        [
            principal_id,
            ent.principal(issuer_arn) if issuer_arn else "",
            ent.apikey(access_key) if access_key else "",
            ip_entity(src_ip),
            ent.model(model_id) if model_id else "",
            ent.model(model_endpoint) if model_endpoint else "",
        ]
    )
    eid, raw = identity_and_raw(SOURCE, record, (ct.eventID or ""))
    return Event(
        event_id=eid,
        time_ms=time_ms,
        source=SOURCE,
        class_uid=API_ACTIVITY,
        activity=activity,
        message=truncate((ct.errorMessage or ""), MESSAGE_CHARS),
        principal=principal,
        api_key_id=access_key,
        user_agent=(ct.userAgent or ""),
        cloud_provider="aws",
        account_id=ct.recipientAccountId or (identity.accountId if identity else None) or "",
        region=region,
        api_service=service,
        api_operation=ct.eventName,
        api_status=status,
        request_id=(ct.requestID or ""),
        resource=_resource(params, ct.resources, model_id),
        src_ip=src_ip,
        dst_host=(ct.tlsDetails.clientProvidedHostHeader or "") if ct.tlsDetails else "",
        model_id=model_id,
        model_endpoint=model_endpoint,
        entity_id=primary(entities, principal_id),
        entities=entities,
        extra=extra,
        raw=raw,
    )


def _insight(record: dict[str, Any], ct: CloudTrailRecord, time_ms: int) -> Event:
    details = ct.insightDetails or InsightDetails()
    insight_type = details.insightType or "Insight"
    service = (details.eventSource or "").removesuffix(".amazonaws.com")
    operation, state = (details.eventName or ""), (details.state or "")
    extra: dict[str, str] = {}
    put(extra, "insight_state", state)
    eid, raw = identity_and_raw(SOURCE, record, (ct.eventID or ""))
    return Event(
        event_id=eid,
        time_ms=time_ms,
        source=SOURCE,
        class_uid=DETECTION_FINDING,
        activity="insight",
        severity_id=3,
        message=f"CloudTrail {insight_type} {state} on {service}:{operation}",
        cloud_provider="aws",
        account_id=(ct.recipientAccountId or ""),
        region=(ct.awsRegion or ""),
        api_service=service,
        api_operation=operation,
        rule=insight_type,
        extra=extra,
        raw=raw,
    )


def primary_key(record: dict[str, Any]) -> str:
    """The principal straight from ``userIdentity``; full normalization only as a fallback."""
    try:
        identity = record.get("userIdentity")
        if type(identity) is dict and record.get("eventType") != INSIGHT:
            name = (
                key_str(identity.get("arn"))
                or key_str(identity.get("principalId"))
                or key_str(identity.get("invokedBy"))
                or key_str(identity.get("type"))
            )
            if name:
                return ent.principal(name)
    except SlowPath:
        pass
    return fallback_key(normalize, record)
