"""aiwarden's own runtime-agent format (``aiwarden.runtime/v1``), for agents that are not Falco.

One JSON object per event::

    {
      "schema": "aiwarden.runtime/v1",              # required, exactly this
      "id": "7f1c…",                                 # optional agent-assigned unique id (dedup key)
      "time": "2025-06-01T12:00:00.123Z",            # required: RFC 3339 (naive = UTC) or epoch ms
      "kind": "process_exec",                        # required: process_exec | network_connect |
                                                     #   network_listen | dns_query | file_open
      "host": "gpu-node-7",                          # required: node / VM host name
      "cluster": "prod-us-east", "namespace": "ml-prod", "pod": "vllm-0",   # optional workload
      "container_id": "3f2a9c1b7d4e…", "image": "vllm/vllm-openai:v0.6.3",  # optional workload
      "process": {"name": "bash", "cmdline": "bash -i", "parent_name": "python3",
                  "exe": "/usr/bin/bash", "user": "root", "pid": 4242,
                  "uid": 0, "loginuid": 1000, "ancestors": ["python3", "containerd-shim"], "cwd": "/tmp"},
      "network": {"src_ip": "10.0.3.17", "dst_ip": "203.0.113.9", "dst_port": 443,
                  "protocol": "tcp", "bytes_out": 18233,
                  "dst_host": "api.openai.com", "src_port": 51544},  # dst_host: SNI / the agent's DNS cache
      "dns": {"query": "huggingface.co", "answers": ["18.239.50.16"]},
      "file": {"path": "/models/llama/model.safetensors", "flags": "O_RDONLY", "bytes": 4096},
      "gpu": true,                                   # optional: the workload holds a GPU
      "rule": "Drop and execute new binary", "priority": "critical"   # kind "alert": the agent's own rule hit
    }

What each kind requires (other blocks are optional context, e.g. ``process`` on a connect):

- ``process_exec``  → Process Activity: ``process.name``.
- ``network_connect`` → Network Activity: ``network.dst_ip`` and ``network.dst_port``.
- ``network_listen`` → Network Activity: ``network.dst_port``, the local port being listened on
  (``dst_ip`` is the bind address, if any; the listener is the endpoint that connections go *to*).
- ``dns_query`` → DNS Activity: ``dns.query`` (becomes ``dst_host``); answers that are IPs are entities.
- ``file_open`` → File System Activity: ``file.path``.
- ``alert`` → Detection Finding: ``rule`` (the agent's own rule that fired) and ``priority`` (Falco's
  priority names: emergency … debug); the other blocks say what it fired on.

``network.dst_host`` (the server name from TLS SNI or the agent's DNS cache) fills ``dst_host`` on a
connect; the process's ``uid``, ``loginuid``, ``cwd`` and ``ancestors`` (parent first) go to ``extra``.

The activity is the ``kind``. The primary entity is the container, else the pod, else the host.
The event id comes from ``id`` when the agent sets it, else from the canonical record bytes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from schemas import entities as ent
from schemas.envelope import (
    DETECTION_FINDING,
    DNS_ACTIVITY,
    FILE_ACTIVITY,
    NETWORK_ACTIVITY,
    PROCESS_ACTIVITY,
    Event,
    unique,
)
from schemas.sources._common import (
    PRIORITY_SEVERITY,
    SlowPath,
    convert,
    fail,
    fallback_key,
    identity_and_raw,
    ip_entity,
    ip_of,
    join_texts,
    key_str,
    primary,
    put,
    to_time_ms,
)

SOURCE = "native"
SCHEMA = "aiwarden.runtime/v1"

Kind = Literal["process_exec", "network_connect", "network_listen", "dns_query", "file_open", "alert"]
CLASSES: dict[str, int] = {
    "process_exec": PROCESS_ACTIVITY,
    "network_connect": NETWORK_ACTIVITY,
    "network_listen": NETWORK_ACTIVITY,
    "dns_query": DNS_ACTIVITY,
    "file_open": FILE_ACTIVITY,
    "alert": DETECTION_FINDING,
}
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Process(msgspec.Struct, kw_only=True):
    name: str = ""
    cmdline: str = ""
    parent_name: str = ""
    exe: str = ""
    user: str = ""
    pid: Count | None = None
    uid: int | None = None
    loginuid: int | None = None
    cwd: str = ""
    ancestors: list[str] = []


class Network(msgspec.Struct, kw_only=True):
    src_ip: str = ""
    dst_ip: str = ""
    dst_port: Port = 0
    protocol: str = ""
    bytes_out: Count = 0
    dst_host: str = ""
    src_port: Port = 0


class Dns(msgspec.Struct, kw_only=True):
    query: str = ""
    answers: list[str] = []


class File(msgspec.Struct, kw_only=True):
    path: str = ""
    flags: str = ""
    bytes: Count = 0


class RuntimeEvent(msgspec.Struct, kw_only=True):
    schema: str
    time: str | int | float
    kind: Kind
    host: str
    id: str = ""
    cluster: str = ""
    namespace: str = ""
    pod: str = ""
    container_id: str = ""
    image: str = ""
    process: Process | None = None
    network: Network | None = None
    dns: Dns | None = None
    file: File | None = None
    gpu: bool = False
    rule: str = ""
    priority: str = ""


def _workload(container_id: str, ns: str, pod_name: str, host: str) -> tuple[str, str, str]:
    return (
        ent.container(container_id) if container_id else "",
        ent.pod(ns, pod_name) if ns and pod_name else "",
        ent.host(host) if host else "",
    )


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    ev = convert(record, RuntimeEvent, SOURCE)
    if ev.schema != SCHEMA:
        raise fail(SOURCE, f"unsupported schema {ev.schema[:64]!r}, expected {SCHEMA!r}")
    if not ev.host:
        raise fail(SOURCE, "empty `host`")
    time_ms = to_time_ms(ev.time, SOURCE, "$.time", unit="ms")
    kind = ev.kind
    process, network, dns, file = ev.process, ev.network, ev.dns, ev.file
    if kind == "process_exec" and (process is None or not process.name):
        raise fail(SOURCE, "process_exec needs `process.name`")
    if kind == "network_connect" and (network is None or not network.dst_ip or not network.dst_port):
        raise fail(SOURCE, "network_connect needs `network.dst_ip` and `network.dst_port`")
    if kind == "network_listen" and (network is None or not network.dst_port):
        raise fail(SOURCE, "network_listen needs `network.dst_port`")
    if kind == "dns_query" and (dns is None or not dns.query):
        raise fail(SOURCE, "dns_query needs `dns.query`")
    if kind == "file_open" and (file is None or not file.path):
        raise fail(SOURCE, "file_open needs `file.path`")
    severity = 1
    if kind == "alert":
        if not ev.rule:
            raise fail(SOURCE, "alert needs `rule`")
        found = PRIORITY_SEVERITY.get(ev.priority.lower())
        if found is None:
            known = ", ".join(PRIORITY_SEVERITY)
            raise fail(SOURCE, f"alert needs a `priority` among {known}, got {ev.priority[:32]!r}")
        severity = found

    src_ip = dst_ip = ""
    dst_port = bytes_out = 0
    extra: dict[str, str] = {}
    ips: list[str] = []
    if network is not None:
        src_ip, dst_ip = ip_of(network.src_ip), ip_of(network.dst_ip)
        for given, clean, name in ((network.src_ip, src_ip, "src_ip"), (network.dst_ip, dst_ip, "dst_ip")):
            if given and not clean:
                raise fail(SOURCE, f"`network.{name}` is not an IP address: {given[:64]!r}")
        dst_port, bytes_out = network.dst_port, network.bytes_out
        put(extra, "protocol", network.protocol)
        if network.src_port:
            extra["src_port"] = str(network.src_port)
    dst_host = network.dst_host.rstrip(".").lower() if network is not None else ""
    if dns is not None:
        dst_host = dns.query
        answers = [ip_of(a) for a in dns.answers]
        ips.extend([ip_entity(a) for a in answers])
        put(extra, "dns_answers", join_texts(dns.answers))
    if file is not None:
        put(extra, "file_flags", file.flags)
        if file.bytes:
            extra["file_bytes"] = str(file.bytes)
    if process is not None:
        put(extra, "exe", process.exe)
        put(extra, "user", process.user)
        for key, number in (("pid", process.pid), ("uid", process.uid), ("loginuid", process.loginuid)):
            if number is not None:
                extra[key] = str(number)
        put(extra, "cwd", process.cwd)
        if process.ancestors:
            put(extra, "ancestors", join_texts(process.ancestors))
    if ev.gpu:
        extra["gpu"] = "true"

    container, pod, host_id = _workload(ev.container_id, ev.namespace, ev.pod, ev.host)
    entities = unique(
        [
            container,
            pod,
            ent.namespace(ev.namespace) if ev.namespace else "",
            host_id,
            ent.image(ev.image) if ev.image else "",
            ip_entity(src_ip),
            ip_entity(dst_ip),
            *ips,
        ]
    )
    eid, raw = identity_and_raw(SOURCE, record, ev.id)
    return Event(
        event_id=eid,
        time_ms=time_ms,
        source=SOURCE,
        class_uid=CLASSES[kind],
        activity=kind,
        severity_id=severity,
        principal=process.user if process is not None else "",
        cluster=ev.cluster,
        namespace=ev.namespace,
        pod=ev.pod,
        container_id=ev.container_id,
        image=ev.image,
        host=ev.host,
        process_name=process.name if process is not None else "",
        process_cmdline=process.cmdline if process is not None else "",
        parent_process_name=process.parent_name if process is not None else "",
        file_path=file.path if file is not None else "",
        src_ip=src_ip,
        dst_ip=dst_ip,
        dst_port=dst_port,
        dst_host=dst_host,
        bytes_out=bytes_out,
        entity_id=primary(entities, container, pod, host_id),
        entities=entities,
        rule=ev.rule,
        extra=extra,
        raw=raw,
    )


def primary_key(record: dict[str, Any]) -> str:
    """The container / pod / host id straight from the record; full normalization only as a fallback."""
    try:
        container, pod, host_id = _workload(
            key_str(record.get("container_id")),
            key_str(record.get("namespace")),
            key_str(record.get("pod")),
            key_str(record.get("host")),
        )
        if container or pod or host_id:
            return container or pod or host_id
    except SlowPath:
        pass
    return fallback_key(normalize, record)
