"""Falco alerts in ``json_output: true`` form.

    {"time": "2023-05-25T13:44:05.478445995Z", "rule": "Terminal shell in container",
     "priority": "Critical", "output": "13:44:05.478445995: Critical A shell was spawned …",
     "output_fields": {"container.id": "ee97d9c4186f", "proc.name": "sh", "evt.type": "execve", …},
     "source": "syscall", "tags": ["container", "shell"], "hostname": "falco-xczjd"}

``source``, ``tags`` and ``hostname`` appear from Falco 0.31 on; older alerts lack them. Output fields
that Falco could not resolve are ``null`` (or ``"<NA>"`` in old versions) and are treated as absent.

Mapping: the class comes from ``evt.type`` (execve/execveat → Process Activity, connect/sendto/accept
→ Network Activity, open/openat/openat2 → File System Activity, anything else or none → Detection
Finding); the severity from ``priority``; ``rule`` is the Falco rule name. ``container.id == "host"``
means a host process, not a container. The primary entity is the container, else the pod, else the host.
Local Unix users (``user.name``) fill ``principal`` but are not entities (every host has a ``root``);
Kubernetes users of k8s_audit-plugin alerts (``ka.user.name``) and GCP users (``gcp.user``) are.
Alerts have no id of their own unless Falcosidekick added a ``uuid``; without one the event id comes
from the canonical record bytes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import entities as ent
from schemas.envelope import (
    DETECTION_FINDING,
    FILE_ACTIVITY,
    NETWORK_ACTIVITY,
    PROCESS_ACTIVITY,
    Event,
    unique,
)
from schemas.sources._common import (
    EXTRA_CHARS,
    MESSAGE_CHARS,
    SlowPath,
    convert,
    fail,
    fallback_key,
    identity_and_raw,
    ip_entity,
    ip_of,
    key_str,
    primary,
    split_host_port,
    text,
    to_time_ms,
    truncate,
)

SOURCE = "falco"

SEVERITY = {
    "emergency": 5,
    "alert": 5,
    "critical": 5,
    "error": 4,
    "warning": 3,
    "notice": 2,
    "informational": 1,
    "info": 1,
    "debug": 1,
}

# evt.type -> (class_uid, activity)
EVENT_TYPES: dict[str, tuple[int, str]] = {
    "execve": (PROCESS_ACTIVITY, "process_exec"),
    "execveat": (PROCESS_ACTIVITY, "process_exec"),
    "connect": (NETWORK_ACTIVITY, "network_connect"),
    "sendto": (NETWORK_ACTIVITY, "network_send"),
    "accept": (NETWORK_ACTIVITY, "network_accept"),
    "accept4": (NETWORK_ACTIVITY, "network_accept"),
    "open": (FILE_ACTIVITY, "file_open"),
    "openat": (FILE_ACTIVITY, "file_open"),
    "openat2": (FILE_ACTIVITY, "file_open"),
}
FINDING = (DETECTION_FINDING, "alert")

Port = int | str | None


def _f(name: str) -> Any:
    return msgspec.field(default=None, name=name)


class OutputFields(msgspec.Struct, kw_only=True):
    """The ``output_fields`` Falco aiwarden reads (Falco field names; the rest are ignored)."""

    evt_type: str | None = _f("evt.type")
    evt_hostname: str | None = _f("evt.hostname")
    proc_name: str | None = _f("proc.name")
    proc_cmdline: str | None = _f("proc.cmdline")
    proc_pname: str | None = _f("proc.pname")
    proc_exepath: str | None = _f("proc.exepath")
    user_name: str | None = _f("user.name")
    container_id: str | None = _f("container.id")
    container_name: str | None = _f("container.name")
    container_image: str | None = _f("container.image")
    image_repository: str | None = _f("container.image.repository")
    image_tag: str | None = _f("container.image.tag")
    k8s_ns_name: str | None = _f("k8s.ns.name")
    k8s_pod_name: str | None = _f("k8s.pod.name")
    fd_name: str | None = _f("fd.name")
    fd_sip: str | None = _f("fd.sip")
    fd_cip: str | None = _f("fd.cip")
    fd_rip: str | None = _f("fd.rip")
    fd_lip: str | None = _f("fd.lip")
    fd_sport: Port = _f("fd.sport")
    fd_rport: Port = _f("fd.rport")
    # k8s_audit plugin
    ka_user_name: str | None = _f("ka.user.name")
    ka_verb: str | None = _f("ka.verb")
    ka_target_resource: str | None = _f("ka.target.resource")
    ka_target_namespace: str | None = _f("ka.target.namespace")
    ka_target_name: str | None = _f("ka.target.name")
    ka_response_code: str | int | None = _f("ka.response.code")
    ka_command: str | None = _f("ka.uri.param[command]")
    # gcpaudit plugin
    gcp_user: str | None = _f("gcp.user")
    gcp_caller_ip: str | None = _f("gcp.callerIP")


class FalcoAlert(msgspec.Struct, kw_only=True):
    time: str
    rule: str
    priority: str
    output: str = ""
    output_fields: OutputFields | None = None
    source: str | None = None
    tags: list[str] | None = None
    hostname: str | None = None
    uuid: str | None = None  # added by Falcosidekick


_NO_FIELDS = OutputFields()


def _port(value: Port) -> int:
    if type(value) is int:
        return value if 0 <= value <= 65535 else 0
    if type(value) is str and value.isdigit() and value.isascii() and len(value) <= 5:
        number = int(value)
        return number if number <= 65535 else 0
    return 0


def _workload(container_id: str, ns: str, pod_name: str, host: str) -> tuple[str, str, str]:
    """Container, pod and host entity ids ('' when absent); ``host`` container ids are host processes."""
    container = ent.container(container_id) if container_id and container_id != "host" else ""
    pod = ent.pod(ns, pod_name) if ns and pod_name else ""
    return container, pod, ent.host(host) if host else ""


def _v(value: str | None) -> str:
    """A typed output field as text: null and Falco's old ``<NA>`` are empty."""
    return value if value and value != "<NA>" else ""


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    alert = convert(record, FalcoAlert, SOURCE)
    severity = SEVERITY.get(alert.priority.lower())
    if severity is None:
        raise fail(SOURCE, f"unknown priority {alert.priority[:32]!r}")
    if not alert.rule:
        raise fail(SOURCE, "empty `rule`")
    time_ms = to_time_ms(alert.time, SOURCE, "$.time")
    of = alert.output_fields or _NO_FIELDS
    evt_type = _v(of.evt_type)
    class_uid, activity = EVENT_TYPES.get(evt_type, FINDING)

    host = _v(alert.hostname) or _v(of.evt_hostname)
    ns, pod_name = _v(of.k8s_ns_name), _v(of.k8s_pod_name)
    if not pod_name and of.ka_target_resource == "pods":
        ns, pod_name = _v(of.ka_target_namespace), _v(of.ka_target_name)
    container_id = _v(of.container_id)
    container, pod, host_id = _workload(container_id, ns, pod_name, host)
    ns = ns or _v(of.ka_target_namespace)
    if container_id == "host":
        container_id = ""
    repository = _v(of.image_repository)
    if repository:
        tag = _v(of.image_tag)
        image = f"{repository}:{tag}" if tag else repository
    else:
        image = _v(of.container_image)

    # Network: server side is the destination, client side the source; fd.name "a:p->b:q" fills gaps.
    src_ip = dst_ip = file_path = ""
    dst_port = 0
    if of.fd_cip or of.fd_lip:
        src_ip = ip_of(of.fd_cip) or ip_of(of.fd_lip)
    if of.fd_sip or of.fd_rip:
        dst_ip = ip_of(of.fd_sip) or ip_of(of.fd_rip)
    if of.fd_sport is not None or of.fd_rport is not None:
        dst_port = _port(of.fd_sport) or _port(of.fd_rport)
    fd_name = _v(of.fd_name)
    if "->" in fd_name:
        left, _, right = fd_name.partition("->")
        if not src_ip:
            src_ip = split_host_port(left)[0]
        if not dst_ip or not dst_port:
            right_ip, right_port = split_host_port(right)
            dst_ip, dst_port = dst_ip or right_ip, dst_port or right_port
    elif fd_name[:1] == "/":
        file_path = fd_name
    if not src_ip and of.gcp_caller_ip:
        src_ip = ip_of(of.gcp_caller_ip)

    user = _v(of.user_name)
    cloud_user = _v(of.ka_user_name) or _v(of.gcp_user)
    extra: dict[str, str] = {}
    if alert.source:
        extra["falco_source"] = alert.source[:EXTRA_CHARS]
    if evt_type:
        extra["evt_type"] = evt_type[:EXTRA_CHARS]
    for key, value in (("exe", of.proc_exepath), ("container_name", of.container_name), ("user", user)):
        if value and value != "<NA>":
            extra[key] = value[:EXTRA_CHARS]
    if of.ka_command:
        extra["command"] = of.ka_command[:EXTRA_CHARS]

    entities = unique(
        [
            container,
            pod,
            ent.namespace(ns) if ns else "",
            host_id,
            ent.image(image) if image else "",
            ent.principal(cloud_user) if cloud_user else "",
            ip_entity(src_ip),
            ip_entity(dst_ip),
        ]
    )
    eid, raw = identity_and_raw(SOURCE, record, _v(alert.uuid))
    return Event(
        event_id=eid,
        time_ms=time_ms,
        source=SOURCE,
        class_uid=class_uid,
        activity=activity,
        severity_id=severity,
        message=truncate(alert.output, MESSAGE_CHARS),
        principal=cloud_user or user,
        namespace=ns,
        pod=pod_name,
        container_id=container_id,
        image=image,
        host=host,
        process_name=_v(of.proc_name),
        process_cmdline=_v(of.proc_cmdline),
        parent_process_name=_v(of.proc_pname),
        file_path=file_path,
        api_operation=_v(of.ka_verb),
        api_status=text(of.ka_response_code),
        src_ip=src_ip,
        dst_ip=dst_ip,
        dst_port=dst_port,
        entity_id=primary(entities, container, pod, host_id),
        entities=entities,
        rule=alert.rule,
        tags=list(alert.tags) if alert.tags else [],
        extra=extra,
        raw=raw,
    )


def _s(value: object) -> str:
    return _v(key_str(value))  # as normalize reads it: "<NA>" is empty


def primary_key(record: dict[str, Any]) -> str:
    """The container / pod / host id straight from the record; full normalization only as a fallback."""
    try:
        of = record.get("output_fields")
        if type(of) is dict:
            container_id = _s(of.get("container.id"))
            ns, pod_name = _s(of.get("k8s.ns.name")), _s(of.get("k8s.pod.name"))
            if not pod_name and _s(of.get("ka.target.resource")) == "pods":
                ns, pod_name = _s(of.get("ka.target.namespace")), _s(of.get("ka.target.name"))
            host = _s(record.get("hostname")) or _s(of.get("evt.hostname"))
        elif of is None:
            container_id = ns = pod_name = ""
            host = _s(record.get("hostname"))
        else:
            raise SlowPath
        container, pod, host_id = _workload(container_id, ns, pod_name, host)
        if container or pod or host_id:
            return container or pod or host_id
    except SlowPath:
        pass
    return fallback_key(normalize, record)
