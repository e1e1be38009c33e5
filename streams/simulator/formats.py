"""Builders of raw records in each vendor's real format: the one place record shapes live.

Every builder takes plain values and returns a fresh ``dict`` built directly (no templates copied,
no deepcopy), so the simulator's hot loop stays cheap. Timestamps use each vendor's own precision:

============  =====================================================  ==========================
source        format                                                 time field and precision
============  =====================================================  ==========================
falco         Falco JSON output (``json_output: true``)              ``time``, ns, plus
                                                                     ``output_fields.evt.time``
                                                                     (epoch ns, int)
native        aiwarden runtime agent ``aiwarden.runtime/v1``         ``time``, microseconds
cloudtrail    CloudTrail record (one element of ``Records``)         ``eventTime``, seconds
k8s_audit     ``audit.k8s.io/v1`` ``Event``                          ``requestReceivedTimestamp``
                                                                     / ``stageTimestamp``, us
bedrock       Bedrock ``ModelInvocationLog`` 1.0                     ``timestamp``, seconds
gateway       OpenAI-compatible gateway request log                  ``time``, milliseconds
============  =====================================================  ==========================
"""

from __future__ import annotations

import hashlib
import random
import time
from functools import lru_cache
from typing import Any

Record = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# time and ids


@lru_cache(maxsize=8192)
def _second(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


def ts_s(ms: int) -> str:
    """``2026-11-25T10:00:00Z``"""
    return _second(ms // 1000) + "Z"


def ts_ms(ms: int) -> str:
    """``2026-11-25T10:00:00.123Z``"""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


def ts_us(ms: int, extra_us: int = 0) -> str:
    """``2026-11-25T10:00:00.123456Z``; ``extra_us`` (0-999) refines ``ms``."""
    return f"{_second(ms // 1000)}.{(ms % 1000) * 1000 + extra_us:06d}Z"


def ts_ns(ms: int, extra_ns: int = 0) -> str:
    """``2026-11-25T10:00:00.123456789Z``; ``extra_ns`` (0-999999) refines ``ms``."""
    return f"{_second(ms // 1000)}.{(ms % 1000) * 1_000_000 + extra_ns:09d}Z"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class RunRandom(random.Random):
    """A seeded ``random.Random`` whose UUIDs also depend on the run's start time (``id_salt``): two runs of
    one seed at different times draw the same records but never share an event id. The draws themselves
    are those of ``random.Random(seed)``."""

    def __init__(self, seed: int, id_salt: int) -> None:
        super().__init__(seed)
        self.id_salt = id_salt


def id_salt(start_ms: int) -> int:
    return int.from_bytes(hashlib.blake2b(str(start_ms).encode(), digest_size=16).digest(), "big")


def uuid4(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (never from the OS)."""
    h = f"{rng.getrandbits(128) ^ getattr(rng, 'id_salt', 0):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def hexid(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def upper_id(rng: random.Random, n: int) -> str:
    """AWS-style upper-case alphanumeric id (access key ids, principal ids)."""
    return "".join(_UPPER[int(rng.random() * 36)] for _ in range(n))


# ---------------------------------------------------------------------------------------------
# Falco (syscall source)
#
# Rule names, priorities, tags and output texts follow falcosecurity/rules (falco_rules.yaml and
# the incubating/sandbox files); ``output`` is "<time>: <Priority> <text> | <fields> <container>".

FALCO_RULES: dict[str, tuple[str, tuple[str, ...], str]] = {
    # rule: (priority, tags, output text)
    "Terminal shell in container": (
        "Notice",
        ("T1059", "container", "maturity_stable", "mitre_execution", "shell"),
        "A shell was spawned in a container with an attached terminal",
    ),
    "Redirect STDOUT/STDIN to Network Connection in Container": (
        "Notice",
        ("T1059", "container", "maturity_stable", "mitre_execution", "network", "process"),
        "Redirect stdout/stdin to network connection",
    ),
    "Launch Package Management Process in Container": (
        "Error",
        ("T1505", "container", "maturity_incubating", "mitre_persistence", "process", "software_mgmt"),
        "Package management process launched by user in container",
    ),
    "Detect outbound connections to common miner pool ports": (
        "Critical",
        ("T1496", "container", "host", "maturity_sandbox", "mitre_impact", "network"),
        "Outbound connection to IP/Port flagged by https://cryptoioc.ch",
    ),
    "Detect crypto miners using the Stratum protocol": (
        "Critical",
        ("T1496", "container", "maturity_stable", "mitre_impact", "process"),
        "Possible miner running",
    ),
    "Contact K8S API Server From Container": (
        "Notice",
        ("T1565", "container", "k8s", "maturity_stable", "mitre_discovery", "network"),
        "Unexpected connection to K8s API Server from container",
    ),
    "Packet socket created in container": (
        "Notice",
        ("T1557.002", "container", "maturity_stable", "mitre_credential_access", "network"),
        "Packet socket was created in a container",
    ),
    "Unexpected outbound connection destination": (
        "Notice",
        ("TA0011", "container", "host", "maturity_sandbox", "mitre_command_and_control", "network"),
        "Disallowed outbound connection destination",
    ),
    "Drop and execute new binary in container": (
        "Critical",
        ("PCI_DSS_11.5.1", "TA0003", "container", "maturity_stable", "mitre_persistence", "process"),
        "Executing binary not part of base image",
    ),
    "Read sensitive file untrusted": (
        "Warning",
        ("T1555", "container", "filesystem", "host", "maturity_stable", "mitre_credential_access"),
        "Sensitive file opened for reading by non-trusted program",
    ),
}


def falco(
    ms: int,
    extra_ns: int,
    rule: str,
    hostname: str,
    *,
    proc_name: str,
    proc_cmdline: str,
    proc_pname: str,
    proc_exepath: str,
    user: str,
    container_id: str,
    image_repo: str,
    image_tag: str,
    k8s_ns: str,
    k8s_pod: str,
    evt_type: str,
    fd_name: str | None = None,
    sip: str | None = None,
    sport: int | None = None,
    rip: str | None = None,
    rport: int | None = None,
    sip_name: str | None = None,
    file_path: str | None = None,
) -> Record:
    """One Falco alert. Network fields are included only for network rules, like Falco does; the
    server's name (``fd.sip.name``) when Falco resolved it; ``fd.name`` is the path for file rules."""
    priority, tags, text = FALCO_RULES[rule]
    cid = container_id[:12]
    stamp = ts_ns(ms, extra_ns)
    fields: Record = {
        "container.id": cid,
        "container.image.repository": image_repo,
        "container.image.tag": image_tag,
        "evt.time": ms * 1_000_000 + extra_ns,
        "evt.type": evt_type,
        "k8s.ns.name": k8s_ns,
        "k8s.pod.name": k8s_pod,
        "proc.cmdline": proc_cmdline,
        "proc.exepath": proc_exepath,
        "proc.name": proc_name,
        "proc.pname": proc_pname,
        "user.name": user,
    }
    if fd_name is not None:
        fields["fd.name"] = fd_name
        fields["fd.sip"] = sip
        fields["fd.sport"] = sport
        fields["fd.rip"] = rip
        fields["fd.rport"] = rport
        net = f"connection={fd_name} fd.sip={sip} rport={rport} "
        if sip_name:
            fields["fd.sip.name"] = sip_name
            net += f"fd.sip.name={sip_name} "
    elif file_path is not None:
        fields["fd.name"] = file_path
        net = f"file={file_path} "
    else:
        net = ""
    output = (
        f"{stamp[11:-1]}: {priority} {text} | {net}evt_type={evt_type} user={user} process={proc_name} "
        f"proc_exepath={proc_exepath} parent={proc_pname} command={proc_cmdline} container_id={cid} "
        f"container_image={image_repo} container_image_tag={image_tag} k8s_ns={k8s_ns} k8s_pod_name={k8s_pod}"
    )
    return {
        "hostname": hostname,
        "output": output,
        "output_fields": fields,
        "priority": priority,
        "rule": rule,
        "source": "syscall",
        "tags": list(tags),
        "time": stamp,
    }


# ---------------------------------------------------------------------------------------------
# native runtime agent (aiwarden.runtime/v1)

NATIVE_SCHEMA = "aiwarden.runtime/v1"


def native(
    ms: int,
    extra_us: int,
    kind: str,
    *,
    host: str,
    cluster: str,
    namespace: str,
    pod: str,
    container_id: str,
    image: str,
    process: Record,
    gpu: bool,
    network: Record | None = None,
    dns: Record | None = None,
    file: Record | None = None,
) -> Record:
    """``kind`` is process_exec | network_connect | network_listen | dns_query | file_open; only the
    sub-object that kind needs (``network``, ``dns`` or ``file``) is present, ``process`` always."""
    rec: Record = {
        "schema": NATIVE_SCHEMA,
        "time": ts_us(ms, extra_us),
        "kind": kind,
        "host": host,
        "cluster": cluster,
        "namespace": namespace,
        "pod": pod,
        "container_id": container_id,
        "image": image,
        "process": process,
        "gpu": gpu,
    }
    if network is not None:
        rec["network"] = network
    if dns is not None:
        rec["dns"] = dns
    if file is not None:
        rec["file"] = file
    return rec


def proc(name: str, cmdline: str, parent: str, exe: str, user: str) -> Record:
    return {"name": name, "cmdline": cmdline, "parent_name": parent, "exe": exe, "user": user}


def net(src_ip: str, dst_ip: str, dst_port: int, bytes_out: int, protocol: str = "tcp") -> Record:
    return {
        "src_ip": src_ip,
        "dst_ip": dst_ip,
        "dst_port": dst_port,
        "protocol": protocol,
        "bytes_out": bytes_out,
    }


# ---------------------------------------------------------------------------------------------
# CloudTrail


def aws_identity_role(
    account: str, role: str, session: str, role_principal_id: str, access_key: str, created: str
) -> Record:
    """``userIdentity`` of an assumed-role session (what IRSA, SSO and AssumeRole produce)."""
    return {
        "type": "AssumedRole",
        "principalId": f"{role_principal_id}:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role.rsplit('/', 1)[-1]}/{session}",
        "accountId": account,
        "accessKeyId": access_key,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": role_principal_id,
                "arn": f"arn:aws:iam::{account}:role/{role}",
                "accountId": account,
                "userName": role.rsplit("/", 1)[-1],
            },
            "attributes": {"creationDate": created, "mfaAuthenticated": "false"},
        },
    }


def aws_identity_user(account: str, user: str, principal_id: str, access_key: str) -> Record:
    return {
        "type": "IAMUser",
        "principalId": principal_id,
        "arn": f"arn:aws:iam::{account}:user/{user}",
        "accountId": account,
        "accessKeyId": access_key,
        "userName": user,
    }


def copy_identity(identity: Record) -> Record:
    """A fresh copy of a ``userIdentity`` (two levels of nesting, built directly, no deepcopy)."""
    out = dict(identity)
    ctx = identity.get("sessionContext")
    if ctx is not None:
        out["sessionContext"] = {
            "sessionIssuer": dict(ctx["sessionIssuer"]),
            "attributes": dict(ctx["attributes"]),
        }
    return out


def cloudtrail(
    ms: int,
    *,
    event_source: str,
    event_name: str,
    region: str,
    source_ip: str,
    user_agent: str,
    identity: Record,
    request_parameters: Record | None,
    response_elements: Record | None,
    request_id: str,
    event_id: str,
    read_only: bool,
    management: bool,
    account: str,
    tls_host: str | None = None,
    resources: list[Record] | None = None,
    additional: Record | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Record:
    rec: Record = {
        "eventVersion": "1.09",
        "userIdentity": copy_identity(identity),
        "eventTime": ts_s(ms),
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
    }
    if error_code is not None:
        rec["errorCode"] = error_code
        rec["errorMessage"] = error_message or ""
    rec["requestParameters"] = request_parameters
    rec["responseElements"] = response_elements
    if additional is not None:
        rec["additionalEventData"] = additional
    rec["requestID"] = request_id
    rec["eventID"] = event_id
    rec["readOnly"] = read_only
    if resources is not None:
        rec["resources"] = resources
    rec["eventType"] = "AwsApiCall"
    rec["managementEvent"] = management
    rec["recipientAccountId"] = account
    rec["eventCategory"] = "Management" if management else "Data"
    if tls_host is not None:
        rec["tlsDetails"] = {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": tls_host,
        }
    return rec


def s3_object_params(bucket: str, key: str, region: str) -> Record:
    return {"bucketName": bucket, "Host": f"{bucket}.s3.{region}.amazonaws.com", "key": key}


def s3_resources(account: str, bucket: str, key: str) -> list[Record]:
    return [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
        {"accountId": account, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
    ]


def s3_additional(bytes_in: int, bytes_out: int) -> Record:
    return {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": bytes_in,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": "",
        "bytesTransferredOut": bytes_out,
    }


# ---------------------------------------------------------------------------------------------
# Kubernetes audit


def k8s_uri(
    group_version: str, namespace: str | None, resource: str, name: str | None = None, sub: str | None = None
) -> str:
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    path = f"{base}/namespaces/{namespace}/{resource}" if namespace else f"{base}/{resource}"
    if name:
        path = f"{path}/{name}"
    if sub:
        path = f"{path}/{sub}"
    return path


def k8s_audit(
    ms: int,
    extra_us: int,
    latency_us: int,
    *,
    audit_id: str,
    verb: str,
    request_uri: str,
    username: str,
    groups: list[str],
    source_ip: str,
    user_agent: str,
    object_ref: Record,
    code: int,
    reason: str,
    level: str = "Metadata",
    request_object: Record | None = None,
    response_object: Record | None = None,
) -> Record:
    received_us = (ms % 1000) * 1000 + extra_us
    done_us = received_us + latency_us
    done_ms = ms - ms % 1000 + done_us // 1000
    rec: Record = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": request_uri,
        "verb": verb,
        "user": {"username": username, "groups": groups},
        "sourceIPs": [source_ip],
        "userAgent": user_agent,
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": code},
    }
    if request_object is not None:
        rec["requestObject"] = request_object
    if response_object is not None:
        rec["responseObject"] = response_object
    rec["requestReceivedTimestamp"] = ts_us(ms, extra_us)
    rec["stageTimestamp"] = ts_us(done_ms, done_us % 1000)
    rec["annotations"] = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": reason}
    return rec


def k8s_service(
    name: str,
    namespace: str,
    selector: dict[str, str],
    svc_type: str,
    port: int,
    node_port: int | None = None,
) -> Record:
    """The ``requestObject`` of a Service create/patch."""
    port_spec: Record = {"name": "http", "protocol": "TCP", "port": port, "targetPort": port}
    if node_port is not None:
        port_spec["nodePort"] = node_port
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": None,
            "labels": dict(selector),
        },
        "spec": {"type": svc_type, "selector": dict(selector), "ports": [port_spec]},
        "status": {"loadBalancer": {}},
    }


# ---------------------------------------------------------------------------------------------
# Bedrock model invocation log


def bedrock_invoke_body(prompt: str, max_tokens: int, system: str | None = None) -> Record:
    """Anthropic Messages body of an ``InvokeModel`` request."""
    body: Record = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
    }
    if system is not None:
        body["system"] = system
    return body


def bedrock_invoke_output(
    msg_id: str, model_id: str, text: str, tokens_in: int, tokens_out: int, stop: str
) -> Record:
    return {
        "id": f"msg_bdrk_{msg_id}",
        "type": "message",
        "role": "assistant",
        "model": model_id.split(".", 1)[-1].rsplit("-v", 1)[0],
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
    }


def bedrock_converse_body(prompt: str, max_tokens: int) -> Record:
    return {
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.2},
    }


def bedrock_converse_output(text: str, tokens_in: int, tokens_out: int, latency_ms: int, stop: str) -> Record:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop,
        "metrics": {"latencyMs": latency_ms},
        "usage": {
            "inputTokens": tokens_in,
            "outputTokens": tokens_out,
            "totalTokens": tokens_in + tokens_out,
        },
    }


def bedrock(
    ms: int,
    *,
    account: str,
    arn: str,
    region: str,
    request_id: str,
    operation: str,
    model_id: str,
    input_body: Record,
    tokens_in: int,
    output_body: Record,
    tokens_out: int,
) -> Record:
    return {
        "schemaType": "ModelInvocationLog",
        "schemaVersion": "1.0",
        "timestamp": ts_s(ms),
        "accountId": account,
        "identity": {"arn": arn},
        "region": region,
        "requestId": request_id,
        "operation": operation,
        "modelId": model_id,
        "input": {
            "inputContentType": "application/json",
            "inputBodyJson": input_body,
            "inputTokenCount": tokens_in,
        },
        "output": {
            "outputContentType": "application/json",
            "outputBodyJson": output_body,
            "outputTokenCount": tokens_out,
        },
    }


# ---------------------------------------------------------------------------------------------
# gateway (canonical OpenAI-compatible gateway request log)


def gateway(
    ms: int,
    *,
    request_id: str,
    api_key_id: str,
    user: str,
    client_ip: str,
    user_agent: str,
    model: str,
    endpoint: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: int,
    status: int,
    prompt: str | None = None,
) -> Record:
    rec: Record = {
        "time": ts_ms(ms),
        "request_id": request_id,
        "api_key_id": api_key_id,
        "user": user,
        "client_ip": client_ip,
        "user_agent": user_agent,
        "model": model,
        "endpoint": endpoint,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_ms": latency_ms,
        "status": status,
    }
    if prompt is not None:
        rec["prompt"] = prompt
    return rec


# ---------------------------------------------------------------------------------------------
# Trivy (``trivy image --format json``, SchemaVersion 2)


def trivy_image(created_ms: int, report_id: str, image: str, digest: str, site: str,
                packages: list[tuple[str, str]], vulnerabilities: list[Record]) -> Record:
    """A Trivy image report with Python packages (``(name, version)``) installed under ``site``."""
    repo = image.rsplit(":", 1)[0]
    return {
        "SchemaVersion": 2,
        "Trivy": {"Version": "0.58.1"},
        "ReportID": report_id,
        "CreatedAt": ts_ns(created_ms),
        "ArtifactName": image,
        "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "ubuntu", "Name": "22.04"}, "RepoTags": [image],
                     "RepoDigests": [f"{repo}@{digest}"]},
        "Results": [{
            "Target": "Python",
            "Class": "lang-pkgs",
            "Type": "python-pkg",
            "Packages": [{"Name": name, "Identifier": {"PURL": f"pkg:pypi/{name}@{version}"}, "Version": version,
                          "FilePath": f"{site}/{name}-{version}.dist-info/METADATA"} for name, version in packages],
            "Vulnerabilities": vulnerabilities,
        }],
    }


def trivy_vulnerability(vuln_id: str, package: str, version: str, fixed: str, severity: str, score: float,
                        title: str, site: str) -> Record:
    """One entry of a Trivy result's ``Vulnerabilities``."""
    return {
        "VulnerabilityID": vuln_id, "PkgName": package, "PkgIdentifier": {"PURL": f"pkg:pypi/{package}@{version}"},
        "PkgPath": f"{site}/{package}-{version}.dist-info/METADATA", "InstalledVersion": version,
        "FixedVersion": fixed, "Status": "fixed" if fixed else "affected", "SeveritySource": "ghsa",
        "PrimaryURL": f"https://avd.aquasec.com/nvd/{vuln_id.lower()}", "Title": title, "Severity": severity,
        "CVSS": {"ghsa": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "V3Score": score}},
    }
