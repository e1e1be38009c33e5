"""Kubernetes API-server audit events (``audit.k8s.io/v1`` ``Event``, one JSON object per line).

The legacy ``audit.k8s.io/v1beta1`` / ``v1alpha1`` events are accepted too, including old ones with no
``apiVersion`` at all, whose only times may be ``timestamp`` / ``metadata.creationTimestamp``.

Mapping (API Activity):

- ``principal`` = ``user.username`` (an impersonated user is an entity and ``extra["impersonated_user"]``);
  ``src_ip`` = the first IP of ``sourceIPs`` (all of them are entities).
- ``api_service`` = ``kubernetes``, ``api_operation`` = the verb, ``api_status`` = the response code.
- ``activity``: ``exec`` / ``attach`` / ``portforward`` for those pod subresources, else ``read``
  (get/list/watch), ``create``, ``update`` (update/patch), ``delete`` (delete/deletecollection),
  ``other``.
- ``resource`` = ``resource/namespace/name[/subresource]`` without the empty parts (cluster-scoped
  objects have no namespace); a non-resource request (``/healthz``, ``/api``) gives its URL path.
- ``namespace`` = ``objectRef.namespace`` (or the name, for a ``namespaces`` object); ``pod`` when the
  resource is ``pods`` (the name may come from the request/response object for creates).
- From ``requestObject``: for Services ``spec.type`` and the ports (``extra["service_type"]``,
  ``extra["service_ports"]`` as ``port[:nodePort]/protocol``); for workloads (Pods and pod templates)
  the images (``image`` = the first, all are entities), ``hostNetwork`` / ``hostPID`` / privileged
  containers / ``hostPath`` mounts; for ``pods/exec`` the command (``extra["command"]``, also read
  from the ``command=`` parameters of ``requestURI`` when the request object is not logged).

Stages of one request share its ``auditID``, so the event id comes from ``auditID`` + ``stage``
(from the canonical bytes when there is no ``auditID``). The primary entity is the principal.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import msgspec

from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event, unique
from schemas.sources._common import (
    EXTRA_CHARS,
    MESSAGE_CHARS,
    convert,
    dig,
    fail,
    identity_and_raw,
    ip_entity,
    ip_of,
    join_texts,
    primary,
    principal_key,
    put,
    text,
    to_time_ms,
    truncate,
)

SOURCE = "k8s_audit"
API_VERSIONS = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"})
VERBS = {
    "get": "read",
    "list": "read",
    "watch": "read",
    "create": "create",
    "update": "update",
    "patch": "update",
    "delete": "delete",
    "deletecollection": "delete",
}
SESSION_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
TEMPLATED = frozenset(
    {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "ReplicationController", "Job"}
)
MAX_IMAGES = 16


class UserInfo(msgspec.Struct, kw_only=True):
    username: str = ""
    groups: list[str] | None = None


class ObjectRef(msgspec.Struct, kw_only=True):
    resource: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    apiGroup: str = ""  # noqa: N815 - vendor field name


class ResponseStatus(msgspec.Struct, kw_only=True):
    code: int | None = None
    message: str | None = None


class ObjectMeta(msgspec.Struct, kw_only=True):
    creationTimestamp: str | None = None  # noqa: N815


class AuditEvent(msgspec.Struct, kw_only=True):
    kind: str
    verb: str
    user: UserInfo
    apiVersion: str | None = None  # noqa: N815
    auditID: str | None = None  # noqa: N815
    stage: str | None = None
    level: str | None = None
    requestURI: str = ""  # noqa: N815
    impersonatedUser: UserInfo | None = None  # noqa: N815
    sourceIPs: list[str] | None = None  # noqa: N815
    userAgent: str | None = None  # noqa: N815
    objectRef: ObjectRef | None = None  # noqa: N815
    responseStatus: ResponseStatus | None = None  # noqa: N815
    requestObject: Any = None  # noqa: N815
    responseObject: Any = None  # noqa: N815
    requestReceivedTimestamp: str | None = None  # noqa: N815
    stageTimestamp: str | None = None  # noqa: N815
    timestamp: str | None = None  # v1alpha1 / v1beta1
    metadata: ObjectMeta | None = None
    annotations: dict[str, Any] | None = None


def _time(ev: AuditEvent) -> int:
    for value, path in (
        (ev.requestReceivedTimestamp, "$.requestReceivedTimestamp"),
        (ev.stageTimestamp, "$.stageTimestamp"),
        (ev.timestamp, "$.timestamp"),
        (ev.metadata.creationTimestamp if ev.metadata else None, "$.metadata.creationTimestamp"),
    ):
        if value:
            return to_time_ms(value, SOURCE, path)
    raise fail(SOURCE, "no timestamp (requestReceivedTimestamp, stageTimestamp or timestamp)")


def _pod_spec(obj: Any) -> Any:
    kind = dig(obj, "kind")
    if kind == "Pod":
        return obj.get("spec")
    if kind in TEMPLATED:
        return dig(obj, "spec", "template", "spec")
    if kind == "CronJob":
        return dig(obj, "spec", "jobTemplate", "spec", "template", "spec")
    return None


def _workload(spec: dict[str, Any], extra: dict[str, str]) -> list[str]:
    """Images of a pod spec (all container kinds), with the risky settings noted in ``extra``."""
    images: list[str] = []
    privileged = False
    for group in ("initContainers", "containers", "ephemeralContainers"):
        containers = spec.get(group)
        if type(containers) is not list:
            continue
        for container in containers:
            image = text(dig(container, "image"), EXTRA_CHARS)
            if image and len(images) < MAX_IMAGES:
                images.append(image)
            privileged = privileged or dig(container, "securityContext", "privileged") is True
    for flag, key in (("hostNetwork", "host_network"), ("hostPID", "host_pid"), ("hostIPC", "host_ipc")):
        if spec.get(flag) is True:
            extra[key] = "true"
    if privileged:
        extra["privileged"] = "true"
    volumes = spec.get("volumes")
    if type(volumes) is list:
        put(extra, "host_paths", join_texts([dig(v, "hostPath", "path") for v in volumes]))
    if images:
        extra["images"] = truncate(",".join(images), EXTRA_CHARS)
    return images


def _service(spec: Any, extra: dict[str, str]) -> None:
    put(extra, "service_type", dig(spec, "type"))
    ports = dig(spec, "ports")
    if type(ports) is list:
        shown = []
        for port in ports:
            number, node_port = text(dig(port, "port")), text(dig(port, "nodePort"))
            protocol = text(dig(port, "protocol")) or "TCP"
            if number:
                shown.append(f"{number}:{node_port}/{protocol}" if node_port else f"{number}/{protocol}")
        put(extra, "service_ports", ",".join(shown))


def _exec_command(request_object: Any, uri: str) -> str:
    command = dig(request_object, "command")
    if type(command) is list:
        return join_texts(command, " ")
    _, _, query = uri.partition("?")
    words = [unquote_plus(part[8:]) for part in query.split("&") if part.startswith("command=")]
    return truncate(" ".join(words), EXTRA_CHARS)


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    ev = convert(record, AuditEvent, SOURCE)
    if ev.kind != "Event" or (ev.apiVersion is not None and ev.apiVersion not in API_VERSIONS):
        raise fail(
            SOURCE, f"not an audit event: kind {ev.kind[:32]!r}, apiVersion {str(ev.apiVersion)[:32]!r}"
        )
    if not ev.verb:
        raise fail(SOURCE, "empty `verb`")
    time_ms = _time(ev)

    ref = ev.objectRef or ObjectRef()
    resource_name = ref.name or text(dig(ev.requestObject, "metadata", "name"))
    resource_name = resource_name or text(dig(ev.responseObject, "metadata", "name"))
    namespace = ref.namespace or (resource_name if ref.resource == "namespaces" else "")
    pod_name = resource_name if ref.resource == "pods" else ""
    if ref.resource:
        parts = (ref.resource, ref.namespace, resource_name, ref.subresource)
        resource = truncate("/".join([p for p in parts if p]), EXTRA_CHARS)
    else:
        resource = truncate(ev.requestURI.partition("?")[0], EXTRA_CHARS)
    if ref.subresource in SESSION_SUBRESOURCES and ref.resource == "pods":
        activity = ref.subresource
    else:
        activity = VERBS.get(ev.verb, "other")

    extra: dict[str, str] = {}
    put(extra, "subresource", ref.subresource)
    put(extra, "api_group", ref.apiGroup)
    put(extra, "stage", ev.stage)
    put(extra, "groups", join_texts(ev.user.groups))
    impersonated = ev.impersonatedUser.username if ev.impersonatedUser else ""
    put(extra, "impersonated_user", impersonated)
    if ev.annotations:
        put(extra, "authz_decision", ev.annotations.get("authorization.k8s.io/decision"))
        put(extra, "authz_reason", ev.annotations.get("authorization.k8s.io/reason"))

    images: list[str] = []
    request_object = ev.requestObject
    if type(request_object) is dict:
        kind = request_object.get("kind")
        if kind == "Service":
            _service(request_object.get("spec"), extra)
        else:
            spec = _pod_spec(request_object)
            if type(spec) is dict:
                images = _workload(spec, extra)
    if ref.subresource == "exec":
        put(extra, "command", _exec_command(request_object, ev.requestURI))

    source_ips = [ip for ip in [ip_of(a) for a in ev.sourceIPs] if ip] if ev.sourceIPs else []
    principal = ev.user.username
    principal_id = ent.principal(principal) if principal else ""
    entities = unique(
        [
            principal_id,
            ent.principal(impersonated) if impersonated else "",
            ent.namespace(namespace) if namespace else "",
            ent.pod(namespace, pod_name) if namespace and pod_name else "",
            *[ip_entity(ip) for ip in source_ips],
            *[ent.image(image) for image in images],
        ]
    )
    code = ev.responseStatus.code if ev.responseStatus else None
    vendor_id = f"{ev.auditID}/{ev.stage or ''}" if ev.auditID else ""
    eid, raw = identity_and_raw(SOURCE, record, vendor_id)
    return Event(
        event_id=eid,
        time_ms=time_ms,
        source=SOURCE,
        class_uid=API_ACTIVITY,
        activity=activity,
        message=truncate((ev.responseStatus.message or ""), MESSAGE_CHARS) if ev.responseStatus else "",
        principal=principal,
        user_agent=(ev.userAgent or ""),
        namespace=namespace,
        pod=pod_name,
        image=images[0] if images else "",
        api_service="kubernetes",
        api_operation=ev.verb,
        api_status=str(code) if code is not None else "",
        request_id=(ev.auditID or ""),
        resource=resource,
        src_ip=source_ips[0] if source_ips else "",
        entity_id=primary(entities, principal_id),
        entities=entities,
        extra=extra,
        raw=raw,
    )


def primary_key(record: dict[str, Any]) -> str:
    """The principal straight from ``user.username``; full normalization only as a fallback."""
    return principal_key(record, "user", "username", normalize)
