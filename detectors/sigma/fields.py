"""Where Sigma log sources and field names land on aiwarden's events: one table for both engines.

A Sigma rule names a log source (``product`` / ``service`` / ``category``) and fields in that log
source's vocabulary (``Image``, ``eventName``, ``objectRef.resource`` …). ``LOGSOURCES`` says which
events each log source is (``(source, class_uid)`` pairs of the envelope) and maps its Sigma field
names onto **aiwarden fields**. ``FIELDS`` defines each aiwarden field twice, once as a Python
expression over an ``Event`` ``e`` (the stream matcher) and once as a ClickHouse expression over the
``events`` table (the SQL backend), so both engines read the same value.

Values are text ('' when absent) or, for ``num`` fields, integers (0 when absent). Sigma's ``null``
and ``exists`` test for '' (0). CloudTrail and Kubernetes audit fields that have no envelope column
are read from the original record: ``raw.<dotted path>`` (text as is, numbers / booleans / objects
as their JSON text, missing or ``null`` as ''); a path through a list is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

RAW_PREFIX = "raw."


@dataclass(frozen=True, slots=True)
class Field:
    """One aiwarden field: a Python expression over ``e`` and a ClickHouse expression, both giving the
    same value for the same event; ``num`` fields are integers, the rest text."""

    py: str
    sql: str
    num: bool = False
    cost: int = 0  # 0: an attribute read; 1: needs the raw record parsed


def _col(name: str, num: bool = False) -> Field:
    return Field(f"e.{name}", name, num)


def _extra(key: str) -> Field:
    return Field(f"e.extra.get({key!r}, '')", f"extra[{sql_string(key)}]")


def sql_string(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


FIELDS: dict[str, Field] = {
    # the envelope's own columns
    **{
        name: _col(name)
        for name in (
            "source", "activity", "message", "principal", "api_key_id", "user_agent", "cluster", "namespace",
            "pod", "container_id", "image", "host", "process_name", "process_cmdline", "parent_process_name",
            "file_path", "cloud_provider", "account_id", "region", "api_service", "api_operation",
            "api_status", "request_id", "resource", "src_ip", "dst_ip", "dst_host", "model_id",
            "model_endpoint", "prompt", "entity_id", "rule", "raw",
        )
    },
    **{name: _col(name, num=True) for name in ("dst_port", "bytes_out", "tokens_in", "tokens_out", "latency_ms")},
    # derived: the executable path when the agent reports it, else the process name
    "process_image": Field(
        "(e.extra.get('exe') or e.process_name)", "if(extra['exe'] != '', extra['exe'], process_name)"
    ),
    "initiated": Field(
        "('false' if e.activity in ('network_accept', 'network_listen') else 'true')",
        "if(activity IN ('network_accept', 'network_listen'), 'false', 'true')",
    ),
    "tokens_total": Field("(e.tokens_in + e.tokens_out)", "toInt64(tokens_in) + toInt64(tokens_out)", num=True),
    **{
        f"extra.{key}": _extra(key)
        for key in (
            "user", "exe", "gpu", "protocol", "guardrail", "stop_reason", "provider", "gateway", "client",
            "service_type", "service_ports", "command", "images", "privileged", "host_paths", "subresource",
            "call_type", "key_alias", "team_id", "end_user", "cost_usd", "identity_type", "session_issuer",
            "user_name", "source", "read_only",
        )
    },
}


def field_of(name: str) -> Field | None:
    """The aiwarden field ``name`` (``raw.<path>`` fields are made on demand)."""
    known = FIELDS.get(name)
    if known is not None or not name.startswith(RAW_PREFIX):
        return known
    path = raw_path(name)
    if not path or any(not part for part in path):
        return None
    keys = ", ".join(sql_string(part) for part in path)
    sql = (
        f"if(JSONType(raw, {keys}) = 'String', JSONExtractString(raw, {keys}), "
        f"if(JSONType(raw, {keys}) = 'Null', '', JSONExtractRaw(raw, {keys})))"
    )
    return Field(f"_raw(doc, {path!r})", sql, cost=1)


def raw_path(name: str) -> tuple[str, ...]:
    return tuple(name[len(RAW_PREFIX) :].split("."))


@dataclass(frozen=True)
class LogSource:
    """A Sigma log source: the events it is, and its field names → aiwarden fields."""

    product: str | None
    service: str | None
    category: str | None
    events: tuple[tuple[str, int], ...]  # (source, class_uid)
    fields: dict[str, str]
    raw_fallback: bool = False  # unknown field names read ``raw.<name>`` (cloud audit logs)
    doc: str = ""
    keyword_field: str = "raw"  # what field-less keyword searches look in

    @property
    def name(self) -> str:
        return "/".join(part for part in (self.product, self.service, self.category) if part)


_WORKLOAD = {
    "ContainerId": "container_id",
    "ContainerImage": "image",
    "Namespace": "namespace",
    "Pod": "pod",
    "Hostname": "host",
    "Cluster": "cluster",
    "Source": "source",
    "Gpu": "extra.gpu",
}
_PROCESS = {
    "Image": "process_image",
    "ProcessName": "process_name",
    "CommandLine": "process_cmdline",
    "ParentImage": "parent_process_name",
    "ParentProcessName": "parent_process_name",
    "User": "extra.user",
    "FalcoRule": "rule",
}
def _runtime(class_uid: int, sources: tuple[str, ...] = ("falco", "native")) -> tuple[tuple[str, int], ...]:
    return tuple((source, class_uid) for source in sources)


LOGSOURCES: dict[str, LogSource] = {
    "linux/process_creation": LogSource(
        "linux", None, "process_creation", _runtime(1007), {**_PROCESS, **_WORKLOAD},
        doc="Process starts seen by Falco (execve rules) and the native agent (process_exec).",
    ),
    "linux/network_connection": LogSource(
        "linux", None, "network_connection", _runtime(4001),
        {**_PROCESS, **_WORKLOAD, "DestinationIp": "dst_ip", "DestinationPort": "dst_port",
         "DestinationHostname": "dst_host", "SourceIp": "src_ip", "Initiated": "initiated",
         "Protocol": "extra.protocol", "BytesSent": "bytes_out"},
        doc="Connections (Falco connect/accept rules, native network_connect/listen); Initiated is "
        "'false' for accepted/listening sockets.",
    ),
    "linux/file_event": LogSource(
        "linux", None, "file_event", _runtime(1001), {**_PROCESS, **_WORKLOAD, "TargetFilename": "file_path"},
        doc="File opens (Falco open rules, native file_open).",
    ),
    "linux/dns_query": LogSource(
        "linux", None, "dns_query", _runtime(4003, ("native",)),
        {**_PROCESS, **_WORKLOAD, "QueryName": "dst_host"},
        doc="DNS queries of the native agent.",
    ),
    "aws/cloudtrail": LogSource(
        "aws", "cloudtrail", None, (("cloudtrail", 6003),),
        {"eventName": "api_operation", "awsRegion": "region"}, raw_fallback=True,
        doc="CloudTrail records; any CloudTrail field by its dotted name (eventSource, userIdentity.arn, "
        "requestParameters.* …).",
    ),
    "kubernetes/audit": LogSource(
        "kubernetes", "audit", None, (("k8s_audit", 6003),),
        {"verb": "api_operation"}, raw_fallback=True,
        doc="Kubernetes API-server audit events; any audit field by its dotted name (objectRef.resource, "
        "user.username, requestObject.spec.type …).",
    ),
    "aiwarden/inference": LogSource(
        "aiwarden", "inference", None, (("bedrock", 6003), ("gateway", 6003)),
        {
            "source": "source", "model": "model_id", "endpoint": "model_endpoint", "operation": "api_operation",
            "caller": "principal", "api_key": "api_key_id", "client_ip": "src_ip", "user_agent": "user_agent",
            "status": "api_status", "tokens_in": "tokens_in", "tokens_out": "tokens_out",
            "tokens_total": "tokens_total", "latency_ms": "latency_ms", "prompt": "prompt",
            "guardrail": "extra.guardrail", "stop_reason": "extra.stop_reason", "provider": "extra.provider",
            "cost_usd": "extra.cost_usd",
        },
        doc="Model invocations: Bedrock invocation logs and LLM gateway request logs (aiwarden's own log "
        "source; no other Sigma backend has one).",
    ),
}


def logsource_key(product: str | None, service: str | None, category: str | None) -> str | None:
    """The ``LOGSOURCES`` key of a rule's log source, or None when aiwarden has no such events."""
    for key, source in LOGSOURCES.items():
        if (source.product, source.service, source.category) == (product, service, category):
            return key
    return None
