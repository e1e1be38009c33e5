"""Falco alerts in ``json_output: true`` form.

    {"time": "2023-05-25T13:44:05.478445995Z", "rule": "Terminal shell in container",
     "priority": "Critical", "output": "13:44:05.478445995: Critical A shell was spawned …",
     "output_fields": {"container.id": "ee97d9c4186f", "proc.name": "sh", "evt.type": "execve", …},
     "source": "syscall", "tags": ["container", "shell"], "hostname": "falco-xczjd"}

``source``, ``tags`` and ``hostname`` appear from Falco 0.31 on; older alerts lack them. Output fields
that Falco could not resolve are ``null`` (or ``"<NA>"`` in old versions) and are treated as absent.

Mapping: the class comes from ``evt.type`` (execve/execveat → Process Activity, connect/sendto/accept
→ Network Activity, open/openat/openat2/creat/rename*/unlink* → File System Activity, anything else or
none → Detection Finding); the severity from ``priority``; ``rule`` is the Falco rule name.

Fields that name a destination, file or identity (Falco's field reference):

- destination: ``fd.sip`` / ``fd.rip`` → ``dst_ip``, ``fd.sport`` / ``fd.rport`` → ``dst_port``, the name
  Falco resolved for the server ``fd.sip.name`` (else ``fd.rip.name``) → ``dst_host``; ``fd.cip`` /
  ``fd.lip`` → ``src_ip``; ``fd.cip.name`` / ``fd.lip.name``, ``fd.cport`` / ``fd.lport``, ``fd.l4proto``,
  ``fd.type`` → ``extra`` (``src_host``, ``src_port``, ``protocol``, ``fd_type``).
- file: ``fd.name`` (a path), else ``fd.directory`` + ``fd.filename``, else the call argument naming it
  (``evt.arg.name`` / ``path`` / ``pathname`` / ``filename`` / ``newpath``) → ``file_path``; every
  ``evt.arg.*`` (first 8) → ``extra["arg.<name>"]``.
- identity: ``user.name`` → ``principal``; ``user.uid``, ``user.loginuid``, ``user.loginname``,
  ``group.name``, ``proc.pid``, ``proc.ppid``, ``proc.pcmdline``, ``proc.cwd``, ``proc.exepath`` /
  ``proc.exe`` → ``extra``; the lineage ``proc.pname``, ``proc.aname[n]`` → ``extra["ancestors"]``
  (parent first); ``k8s.pod.uid``, ``k8s.deployment.name``, ``container.image.digest``,
  ``container.privileged`` → ``extra``. ``container.id == "host"``
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
    PRIORITY_SEVERITY,
    SlowPath,
    convert,
    fail,
    fallback_key,
    identity_and_raw,
    ip_entity,
    ip_of,
    key_str,
    primary,
    put,
    split_host_port,
    text,
    to_time_ms,
    truncate,
)

SOURCE = "falco"

SEVERITY = PRIORITY_SEVERITY

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
    "creat": (FILE_ACTIVITY, "file_create"),
    "rename": (FILE_ACTIVITY, "file_rename"),
    "renameat": (FILE_ACTIVITY, "file_rename"),
    "renameat2": (FILE_ACTIVITY, "file_rename"),
    "unlink": (FILE_ACTIVITY, "file_delete"),
    "unlinkat": (FILE_ACTIVITY, "file_delete"),
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
    proc_exe: str | None = _f("proc.exe")
    proc_pid: int | str | None = _f("proc.pid")
    proc_ppid: int | str | None = _f("proc.ppid")
    proc_pcmdline: str | None = _f("proc.pcmdline")
    proc_cwd: str | None = _f("proc.cwd")
    user_name: str | None = _f("user.name")
    user_uid: int | str | None = _f("user.uid")
    user_loginuid: int | str | None = _f("user.loginuid")
    user_loginname: str | None = _f("user.loginname")
    group_name: str | None = _f("group.name")
    container_id: str | None = _f("container.id")
    container_name: str | None = _f("container.name")
    container_image: str | None = _f("container.image")
    image_repository: str | None = _f("container.image.repository")
    image_tag: str | None = _f("container.image.tag")
    k8s_ns_name: str | None = _f("k8s.ns.name")
    k8s_pod_name: str | None = _f("k8s.pod.name")
    k8s_pod_uid: str | None = _f("k8s.pod.uid")
    k8s_deployment: str | None = _f("k8s.deployment.name")
    container_image_digest: str | None = _f("container.image.digest")
    container_privileged: bool | str | None = _f("container.privileged")
    fd_name: str | None = _f("fd.name")
    fd_directory: str | None = _f("fd.directory")
    fd_filename: str | None = _f("fd.filename")
    fd_sip: str | None = _f("fd.sip")
    fd_cip: str | None = _f("fd.cip")
    fd_rip: str | None = _f("fd.rip")
    fd_lip: str | None = _f("fd.lip")
    fd_sip_name: str | None = _f("fd.sip.name")
    fd_rip_name: str | None = _f("fd.rip.name")
    fd_cip_name: str | None = _f("fd.cip.name")
    fd_lip_name: str | None = _f("fd.lip.name")
    fd_sport: Port = _f("fd.sport")
    fd_rport: Port = _f("fd.rport")
    fd_cport: Port = _f("fd.cport")
    fd_lport: Port = _f("fd.lport")
    fd_l4proto: str | None = _f("fd.l4proto")
    fd_type: str | None = _f("fd.type")
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


def _host_name(value: str | None) -> str:
    """A Falco ``fd.*ip.name`` as a lower-case host name ('' when Falco had no name for the address)."""
    name = _v(value)
    return name.rstrip(".").lower()[:EXTRA_CHARS] if name else ""


# Call arguments that name a file (open/openat/creat: name; mkdir/chmod: path; unlink(at): name/path; rename:
# newpath) when fd.name does not (the fd is not open yet, or the call failed).
_PATH_ARGS = ("evt.arg.name", "evt.arg.path", "evt.arg.pathname", "evt.arg.filename", "evt.arg.newpath")
MAX_ARGS = 8


def _dynamic_fields(fields: dict[str, Any], extra: dict[str, str], parent: str) -> str:
    """Fields whose names vary: ``evt.arg.*`` (into ``extra["arg.<name>"]``, at most ``MAX_ARGS``) and
    the ``proc.aname[n]`` lineage (``extra["ancestors"]``: parent first, oldest last); the file path
    an argument names ('' if none)."""
    path = ""
    ancestors: dict[int, str] = {}
    args = 0
    for key, value in fields.items():
        if type(key) is not str:
            continue
        if key.startswith("evt.arg."):
            text_value = _v(text(value))
            if not text_value:
                continue
            if not path and key in _PATH_ARGS and text_value[:1] == "/":
                path = text_value
            if args < MAX_ARGS:
                put(extra, "arg." + key[8:40], text_value)
                args += 1
        elif key.startswith("proc.aname[") and key.endswith("]"):
            depth = key[11:-1]
            name = _v(text(value))
            if depth.isdigit() and name and int(depth) <= 32:
                ancestors[int(depth)] = name
    if ancestors:
        if parent:
            ancestors.setdefault(1, parent)
        put(extra, "ancestors", ",".join(ancestors[d] for d in sorted(ancestors) if d >= 1))
    return path


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
    if not file_path and of.fd_directory and of.fd_filename:
        file_path = f"{of.fd_directory.rstrip('/')}/{of.fd_filename}"
    if not src_ip and of.gcp_caller_ip:
        src_ip = ip_of(of.gcp_caller_ip)
    # Falco names the server of a connection (fd.sip.name) from its own DNS cache: no DNS event needed.
    dst_host = _host_name(of.fd_sip_name) or _host_name(of.fd_rip_name)

    user = _v(of.user_name)
    cloud_user = _v(of.ka_user_name) or _v(of.gcp_user)
    extra: dict[str, str] = {}
    if alert.source:
        extra["falco_source"] = alert.source[:EXTRA_CHARS]
    if evt_type:
        extra["evt_type"] = evt_type[:EXTRA_CHARS]
    for key, value in (
        ("exe", _v(of.proc_exepath) or _v(of.proc_exe)), ("container_name", of.container_name), ("user", user),
        ("uid", of.user_uid), ("loginuid", of.user_loginuid), ("loginname", of.user_loginname),
        ("group", of.group_name), ("pid", of.proc_pid), ("ppid", of.proc_ppid), ("parent_cmdline", of.proc_pcmdline),
        ("cwd", of.proc_cwd), ("protocol", of.fd_l4proto), ("fd_type", of.fd_type),
        ("src_host", _host_name(of.fd_cip_name) or _host_name(of.fd_lip_name)),
        ("src_port", _port(of.fd_cport) or _port(of.fd_lport) or None), ("pod_uid", of.k8s_pod_uid),
        ("deployment", of.k8s_deployment), ("image_digest", of.container_image_digest),
        ("privileged", of.container_privileged),
    ):
        if value is not None and value != "<NA>":
            put(extra, key, str(value).lower() if type(value) is bool else value)
    if of.ka_command:
        extra["command"] = of.ka_command[:EXTRA_CHARS]
    raw_fields = record.get("output_fields")
    if type(raw_fields) is dict:
        arg_path = _dynamic_fields(raw_fields, extra, _v(of.proc_pname))
        file_path = file_path or arg_path

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
        dst_host=dst_host,
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
