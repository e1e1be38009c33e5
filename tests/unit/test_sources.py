"""Source parsers: every fixture record, field mappings, routing, and fuzzing of ``normalize_bytes``."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import entities as ent
from schemas.codec import Limits, RecordError, encode
from schemas.envelope import (
    API_ACTIVITY,
    DETECTION_FINDING,
    DNS_ACTIVITY,
    EVENT_FIELDS,
    FILE_ACTIVITY,
    NETWORK_ACTIVITY,
    OCSF_CLASSES,
    PROCESS_ACTIVITY,
    Event,
    event_id,
)
from schemas.sources import CLI_NAMES, DOCUMENT_SOURCES, SOURCES, detect_source, normalize_bytes
from schemas.sources import cloudtrail as cloudtrail_source
from schemas.sources._common import clean_ip, prompt_text, to_time_ms

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "sources"
# The CC-BY-SA samples are not copied into the repo: they are read in place from the shared folder
# that sits beside the repository root (/work/shared here, a read-only copy beside the clone in CI).
SHARED = REPO / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data is not beside the repository")

# Records the fixtures' SOURCES.md documents as rejected, with the reason they must be rejected for.
EXPECTED_REJECTS = {
    ("k8s_audit", "panther-analysis_test-events.jsonl", 2): "no timestamp",
    ("k8s_audit", "panther-analysis_test-events.jsonl", 3): "no timestamp",
    ("k8s_audit", "panther-analysis_test-events.jsonl", 4): "no timestamp",
    ("k8s_audit", "panther-analysis_test-events.jsonl", 5): "no timestamp",
    ("cyclonedx", "cyclonedx-spec_valid-vulnerability-1.6.json", 1): "no `metadata.component`",
}


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _fixture_records() -> list[tuple[str, str, int, bytes]]:
    """Every record of the fixtures: the lines of JSON-lines files, and the split records (numbered from 1) of
    the whole-document reports of the scanner sources."""
    found = []
    for path in sorted(FIXTURES.glob("*/*.jsonl")):
        for number, line in enumerate(_lines(path), 1):
            found.append((path.parent.name, path.name, number, line))
    for path in sorted(FIXTURES.glob("*/*.json")):
        source = path.parent.name
        if source in DOCUMENT_SOURCES:
            for number, part in enumerate(SOURCES[source].split(orjson.loads(path.read_bytes())), 1):
                found.append((source, path.name, number, orjson.dumps(part)))
    return found


FIXTURE_RECORDS = _fixture_records()
FIXTURE_IDS = [f"{source}/{name}:{number}" for source, name, number, _ in FIXTURE_RECORDS]
ACCEPTED = [r for r in FIXTURE_RECORDS if r[:3] not in EXPECTED_REJECTS]
ACCEPTED_IDS = [f"{source}/{name}:{number}" for source, name, number, _ in ACCEPTED]


def record(source: str, name: str, number: int) -> dict[str, Any]:
    """Line ``number`` (1-based) of a fixture file, decoded."""
    value: dict[str, Any] = orjson.loads(_lines(FIXTURES / source / name)[number - 1])
    return value


def norm(source: str, rec: dict[str, Any], **kwargs: Any) -> Event:
    return SOURCES[source].normalize(rec, **kwargs)


def check_event(ev: Event) -> None:
    """Invariants every normalized event keeps, whatever the input."""
    for name in EVENT_FIELDS:
        value = getattr(ev, name)
        if name in ("entities", "tags"):
            assert type(value) is list and all(type(v) is str for v in value), name
        elif name == "extra":
            assert type(value) is dict, name
            assert all(type(k) is str and type(v) is str and v for k, v in value.items()), value
        elif name in ("time_ms", "class_uid", "severity_id", "dst_port", "bytes_out", "tokens_in",
                      "tokens_out", "latency_ms"):  # fmt: skip
            assert type(value) is int and 0 <= value < 2**63, (name, value)
        else:
            assert type(value) is str, (name, value)
    assert ev.source in SOURCES
    assert ev.class_uid in OCSF_CLASSES
    assert 1 <= ev.severity_id <= 5
    assert 0 <= ev.dst_port <= 65535
    assert ev.time_ms <= 253_402_300_799_999
    assert len(ev.event_id) == 32
    assert len(set(ev.entities)) == len(ev.entities)
    for entity in ev.entities:
        kind, _, value = entity.partition(":")
        assert kind in ent.KINDS and value, entity
    assert ev.entity_id == "" or ev.entity_id in ev.entities
    assert orjson.loads(ev.raw) is not None


# --- every fixture record -------------------------------------------------------------------------


def test_fixtures_cover_every_source() -> None:
    assert {source for source, *_ in FIXTURE_RECORDS} == set(SOURCES)


@pytest.mark.parametrize(("source", "name", "number", "line"), ACCEPTED, ids=ACCEPTED_IDS)
def test_every_fixture_record_parses(source: str, name: str, number: int, line: bytes) -> None:
    ev = normalize_bytes(line, source, limits=Limits(), prompt_chars=2048)
    assert ev.source == source
    check_event(ev)
    # Detected the same way without a source header, and keyed as normalization keys it.
    assert normalize_bytes(line, None, limits=Limits(), prompt_chars=2048) == ev
    assert SOURCES[source].primary_key(orjson.loads(line)) == ev.entity_id
    # Deterministic, and the JSON round trip of the envelope is lossless.
    assert normalize_bytes(line, source, limits=Limits(), prompt_chars=2048).event_id == ev.event_id
    assert Event.from_dict(orjson.loads(encode(ev))) == ev


@pytest.mark.parametrize(("key", "reason"), EXPECTED_REJECTS.items(), ids=[str(k) for k in EXPECTED_REJECTS])
def test_documented_rejects_raise_record_error(key: tuple[str, str, int], reason: str) -> None:
    source, name, number = key
    line = next(r[3] for r in FIXTURE_RECORDS if r[:3] == key)
    with pytest.raises(RecordError, match=reason) as info:
        normalize_bytes(line, source, limits=Limits(), prompt_chars=2048)
    assert info.value.reason.startswith(f"{source}: ")
    assert type(SOURCES[source].primary_key(orjson.loads(line))) is str  # never raises


@pytest.mark.parametrize(("source", "name", "number", "line"), FIXTURE_RECORDS, ids=FIXTURE_IDS)
def test_detect_source_on_every_fixture(source: str, name: str, number: int, line: bytes) -> None:
    assert detect_source(orjson.loads(line)) == source


def test_event_ids_are_unique_across_fixtures_except_shared_vendor_ids() -> None:
    ids: dict[str, tuple[str, str, int]] = {}
    duplicates = []
    for source, name, number, line in ACCEPTED:
        eid = normalize_bytes(line, source, limits=Limits(), prompt_chars=2048).event_id
        if eid in ids:
            duplicates.append((ids[eid], (source, name, number)))
        ids[eid] = (source, name, number)
    # Only upstream records that reuse one vendor id: hand-edited or copied test data (see the fixtures'
    # SOURCES.md). Dedup on the vendor id is what the pipeline wants for real redeliveries.
    assert sorted(duplicates) == [
        (("bedrock", BEDROCK_PANTHER, 1), ("bedrock", BEDROCK_PANTHER, 2)),  # same requestId
        (("cloudtrail", CT_PANTHER, 5), ("cloudtrail", CT_PANTHER, 6)),  # EXAMPLE-1234-5678-9012-EXAMPLE
        (("cloudtrail", CT_STRATUS_BEDROCK, 1), ("cloudtrail", CT_STRATUS_BEDROCK, 2)),  # same eventID
        (("cloudtrail", CT_STRATUS_BEDROCK, 2), ("cloudtrail", CT_STRATUS, 21)),  # …copied from DeleteTrail
        (("k8s_audit", K8S_FALCO, 1), ("k8s_audit", K8S_FALCO, 51)),  # one auditID, edited user name
        (("k8s_audit", K8S_FALCO, 21), ("k8s_audit", K8S_FALCO, 24)),  # the same event in two trace files
    ]


BEDROCK_PANTHER = "panther-analysis_test-events.jsonl"
CT_PANTHER = "panther-analysis_test-events.jsonl"
CT_STRATUS = "stratus-red-team_detonations.jsonl"
CT_STRATUS_BEDROCK = "stratus-red-team_bedrock-defense-evasion.jsonl"
K8S_FALCO = "falco_k8s-audit-trace-files.jsonl"


# --- falco ----------------------------------------------------------------------------------------


def test_falco_shell_in_vllm_container() -> None:
    ev = norm("falco", record("falco", "aiwarden_handwritten.jsonl", 1))
    assert (ev.class_uid, ev.activity, ev.severity_id) == (PROCESS_ACTIVITY, "process_exec", 2)
    assert ev.time_ms == 1748960527123
    assert ev.rule == "Terminal shell in container"
    assert ev.entity_id == "container:3f2a9c1b7d4e"
    assert ev.entities == [
        "container:3f2a9c1b7d4e",
        "pod:ml-serving/vllm-llama3-8b-6d9f7c5b8-x2k4q",
        "namespace:ml-serving",
        "host:gpu-node-7",
        "image:docker.io/vllm/vllm-openai:v0.6.3",
    ]
    assert (ev.process_name, ev.process_cmdline, ev.parent_process_name) == ("bash", "bash -i", "python3")
    assert ev.image == "docker.io/vllm/vllm-openai:v0.6.3"
    assert ev.tags == ["T1059", "container", "maturity_stable", "mitre_execution", "shell"]
    assert ev.extra["exe"] == "/usr/bin/bash"


def test_falco_outbound_connect() -> None:
    ev = norm("falco", record("falco", "aiwarden_handwritten.jsonl", 2))
    assert (ev.class_uid, ev.activity, ev.severity_id) == (NETWORK_ACTIVITY, "network_connect", 3)
    assert (ev.src_ip, ev.dst_ip, ev.dst_port) == ("10.42.1.17", "203.0.113.50", 4444)
    assert {"ip:10.42.1.17", "ip:203.0.113.50"} <= set(ev.entities)


def test_falco_safetensors_open() -> None:
    ev = norm("falco", record("falco", "aiwarden_handwritten.jsonl", 3))
    assert (ev.class_uid, ev.activity) == (FILE_ACTIVITY, "file_open")
    assert ev.file_path == "/models/llama-3-8b/model-00001-of-00004.safetensors"
    assert ev.process_name == "tar"


def test_falco_old_alert_connection_tuple_and_null_fields() -> None:
    ev = norm("falco", record("falco", "falcosecurity_events.jsonl", 9))  # 2021, no evt.type / hostname
    assert (ev.class_uid, ev.activity) == (DETECTION_FINDING, "alert")
    assert (ev.src_ip, ev.dst_ip, ev.dst_port) == ("172.17.0.9", "10.96.0.1", 443)
    assert ev.host == "" and ev.entity_id == "container:12fc4de5ccc3"
    assert ev.image == "devopps/falco-pod-delete:latest"
    shell = norm("falco", record("falco", "falcosecurity_events.jsonl", 7))  # image/pname are null
    assert shell.image == "" and shell.parent_process_name == ""
    assert shell.time_ms == 1610667584834


def test_falco_host_process_and_severities() -> None:
    ev = norm("falco", record("falco", "falcosecurity_events.jsonl", 17))  # container.id == "host"
    assert ev.container_id == "" and ev.entity_id == "host:x86"
    assert (ev.class_uid, ev.file_path, ev.severity_id) == (FILE_ACTIVITY, "/etc/shadow", 3)
    severities = {
        n: norm("falco", record("falco", "falcosecurity_events.jsonl", n)).severity_id for n in (5, 16, 22)
    }
    assert severities == {5: 1, 16: 5, 22: 4}  # Informational, Critical, Error


def test_falco_k8s_audit_plugin_alert() -> None:
    ev = norm("falco", record("falco", "falcosecurity_events.jsonl", 4))
    assert ev.entity_id == "pod:hello-app/nginx-676b6c5bbc-4xc6t"
    assert ev.principal == "kubernetes-admin" and "principal:kubernetes-admin" in ev.entities
    assert ev.extra["command"] == "cat"


def test_falco_event_id_is_the_canonical_bytes() -> None:
    rec = record("falco", "aiwarden_handwritten.jsonl", 1)
    reordered = dict(reversed(list(rec.items())))
    ev = norm("falco", rec)
    assert norm("falco", reordered).event_id == ev.event_id
    assert ev.event_id == event_id("falco", orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
    with_uuid = {**rec, "uuid": "2b5c9a64-1111-4d2e-9f00-123456789abc"}  # added by Falcosidekick
    assert norm("falco", with_uuid).event_id == event_id("falco", "2b5c9a64-1111-4d2e-9f00-123456789abc")


def test_falco_bad_records() -> None:
    rec = record("falco", "aiwarden_handwritten.jsonl", 1)
    with pytest.raises(RecordError, match=r"^falco: Expected `str`, got `int` - at `\$.rule`$"):
        norm("falco", {**rec, "rule": 5})
    with pytest.raises(RecordError, match="falco: Object missing required field `time`"):
        norm("falco", {k: v for k, v in rec.items() if k != "time"})
    with pytest.raises(RecordError, match="falco: unknown priority"):
        norm("falco", {**rec, "priority": "Urgent"})
    with pytest.raises(RecordError, match="falco: bad timestamp"):
        norm("falco", {**rec, "time": "yesterday"})
    bad_type = copy.deepcopy(rec)
    bad_type["output_fields"]["proc.name"] = ["bash"]
    with pytest.raises(RecordError, match=r"at `\$.output_fields\[.proc.name.\]`|proc.name"):
        norm("falco", bad_type)


def test_falco_destination_named_by_falco() -> None:
    """fd.sip.name (the server's name from Falco's DNS cache) is the destination host: no DNS event needed."""
    ev = norm("falco", record("falco", "aiwarden_field_reference.jsonl", 1))
    assert (ev.class_uid, ev.activity) == (NETWORK_ACTIVITY, "network_connect")
    assert (ev.src_ip, ev.dst_ip, ev.dst_port, ev.dst_host) == ("10.8.3.40", "162.159.140.245", 443, "api.openai.com")
    assert ev.principal == "app"
    assert {k: ev.extra[k] for k in ("uid", "loginuid", "group", "pid", "ppid", "parent_cmdline", "cwd")} == {
        "uid": "1000", "loginuid": "-1", "group": "app", "pid": "48211", "ppid": "48190",
        "parent_cmdline": "sh -c python3 summarize.py", "cwd": "/app/",
    }
    assert (ev.extra["protocol"], ev.extra["fd_type"], ev.extra["src_port"]) == ("tcp", "ipv4", "40212")
    assert "src_host" not in ev.extra  # fd.cip.name null: Falco had no name
    assert ev.extra["pod_uid"] == "0a6f5c4e-3d2b-4a19-8e7f-6c5d4b3a2f10"
    assert ev.extra["image_digest"].startswith("sha256:4b1e9d0c")
    assert ev.image == "registry.example.net/analytics/summarizer:2.4.1"
    # only the remote side named (fd.rip.name), and an unresolved name, as Falco writes them
    fields = record("falco", "aiwarden_field_reference.jsonl", 1)
    only_rip = copy.deepcopy(fields)
    del only_rip["output_fields"]["fd.sip.name"]
    assert norm("falco", only_rip).dst_host == "api.openai.com"
    only_rip["output_fields"]["fd.rip.name"] = "<NA>"
    assert norm("falco", only_rip).dst_host == ""
    trailing_dot = copy.deepcopy(fields)
    trailing_dot["output_fields"]["fd.sip.name"] = "API.OpenAI.com."
    assert norm("falco", trailing_dot).dst_host == "api.openai.com"


def test_falco_file_fields_and_lineage() -> None:
    opened = norm("falco", record("falco", "aiwarden_field_reference.jsonl", 2))
    assert opened.class_uid == FILE_ACTIVITY  # fd.name absent: fd.directory + fd.filename
    assert opened.file_path == "/mnt/models/llama-3.1-8b/model-00002-of-00004.safetensors"
    assert opened.extra["arg.flags"] == "O_RDONLY|O_CLOEXEC"
    assert opened.extra["ancestors"] == "bash,python3,containerd-shim"  # parent first, from proc.aname[n]
    deleted = norm("falco", record("falco", "aiwarden_field_reference.jsonl", 3))
    assert (deleted.class_uid, deleted.activity) == (FILE_ACTIVITY, "file_delete")
    assert deleted.file_path == "/etc/ld.so.preload"  # only evt.arg.name names it
    host = norm("falco", record("falco", "falcosecurity_events.jsonl", 17))  # real sample, proc.aname[2..4]
    assert host.extra["ancestors"] == "sudo,sudo,zsh,kitty"
    assert (host.extra["uid"], host.extra["loginuid"]) == ("0", "1000")


def test_falco_rule_hit_keeps_process_identity() -> None:
    ev = norm("falco", record("falco", "aiwarden_field_reference.jsonl", 4))
    assert (ev.class_uid, ev.severity_id, ev.rule) == (PROCESS_ACTIVITY, 5, "Drop and execute new binary in container")
    assert ev.process_cmdline.startswith("kworkerd -o 198.51.100.23:443")
    assert (ev.extra["exe"], ev.extra["cwd"]) == ("/tmp/.cache/kworkerd", "/tmp/.cache/")
    assert ev.extra["arg.flags"] == "EXE_WRITABLE|EXE_UPPER_LAYER"


# --- native ---------------------------------------------------------------------------------------


def test_native_kinds() -> None:
    events = [norm("native", record("native", "aiwarden_handwritten.jsonl", n)) for n in range(1, 6)]
    assert [(e.class_uid, e.activity) for e in events] == [
        (PROCESS_ACTIVITY, "process_exec"),
        (NETWORK_ACTIVITY, "network_connect"),
        (NETWORK_ACTIVITY, "network_listen"),
        (DNS_ACTIVITY, "dns_query"),
        (FILE_ACTIVITY, "file_open"),
    ]
    exec_, connect, listen, dns, file = events
    assert exec_.entity_id == "container:3f2a9c1b7d4e"  # the 64-hex id, short form
    assert exec_.container_id.startswith("3f2a9c1b7d4e8a0b") and exec_.extra["gpu"] == "true"
    assert exec_.cluster == "prod-us-east-1"
    assert connect.time_ms == 1748960741902  # epoch ms
    assert (connect.dst_ip, connect.dst_port, connect.bytes_out) == ("203.0.113.50", 4444, 48213311)
    canonical = orjson.dumps(record("native", "aiwarden_handwritten.jsonl", 2), option=orjson.OPT_SORT_KEYS)
    assert connect.event_id == event_id("native", canonical)
    assert listen.dst_port == 8888 and "ip:0.0.0.0" not in listen.entities  # a bind address names nothing
    assert dns.dst_host == "huggingface.co"
    assert {"ip:18.239.50.16", "ip:2600:9000:2156:ae00:17:d6a:b980:93a1"} <= set(dns.entities)
    assert dns.time_ms == 1748961670500
    assert file.file_path == "/models/llama-3-8b/model.safetensors"
    assert file.entity_id == "host:gpu-node-7" and file.time_ms == 1748961900000  # naive time is UTC
    assert exec_.event_id == event_id("native", "0c5e7b9a-6f51-4c11-9a43-5a1d2f0e7c01")


def test_native_destination_identity_and_own_rule_hits() -> None:
    rec = record("native", "aiwarden_handwritten.jsonl", 2)
    named = {**rec, "network": {**rec["network"], "dst_host": "API.Anthropic.com.", "src_port": 40100},
             "process": {"name": "curl", "uid": 1000, "loginuid": -1, "cwd": "/tmp", "ancestors": ["sh", "python3"]}}
    ev = norm("native", named)
    assert ev.dst_host == "api.anthropic.com"
    assert {k: ev.extra[k] for k in ("src_port", "uid", "loginuid", "cwd", "ancestors")} == {
        "src_port": "40100", "uid": "1000", "loginuid": "-1", "cwd": "/tmp", "ancestors": "sh,python3"}
    hit = norm("native", {**rec, "kind": "alert", "rule": "Drop and execute new binary", "priority": "Critical"})
    assert (hit.class_uid, hit.activity, hit.severity_id, hit.rule) == (
        DETECTION_FINDING, "alert", 5, "Drop and execute new binary")
    assert hit.dst_ip == "203.0.113.50"  # what it fired on is kept
    with pytest.raises(RecordError, match="native: alert needs `rule`"):
        norm("native", {**rec, "kind": "alert", "priority": "critical"})
    with pytest.raises(RecordError, match="native: alert needs a `priority`"):
        norm("native", {**rec, "kind": "alert", "rule": "x", "priority": "urgent"})


def test_native_requirements() -> None:
    rec = record("native", "aiwarden_handwritten.jsonl", 2)
    with pytest.raises(RecordError, match="network_connect needs"):
        norm("native", {**rec, "network": {"src_ip": "10.0.0.1"}})
    with pytest.raises(RecordError, match="not an IP address"):
        norm("native", {**rec, "network": {**rec["network"], "dst_ip": "evil.example"}})
    with pytest.raises(RecordError, match="unsupported schema"):
        norm("native", {**rec, "schema": "aiwarden.runtime/v2"})
    with pytest.raises(RecordError, match=r"native: Invalid enum value 'process_kill' - at `\$.kind`"):
        norm("native", {**rec, "kind": "process_kill"})
    with pytest.raises(RecordError, match="dst_port"):
        norm("native", {**rec, "network": {**rec["network"], "dst_port": 70000}})


# --- cloudtrail -----------------------------------------------------------------------------------


def test_cloudtrail_bedrock_invoke_model() -> None:
    ev = norm("cloudtrail", record("cloudtrail", "stratus-red-team_detonations.jsonl", 45))
    arn = "arn:aws:sts::494659789341:assumed-role/test-role/cli"
    assert (ev.class_uid, ev.activity) == (API_ACTIVITY, "invoke_model")
    assert ev.time_ms == 1729195884000
    assert ev.principal == arn and ev.entity_id == ent.principal(arn)
    assert (ev.api_service, ev.api_operation, ev.api_status) == ("bedrock", "InvokeModel", "success")
    assert ev.model_id == "anthropic.claude-3-sonnet-20240229-v1:0"
    assert ev.model_endpoint == "bedrock/megov-northeast-1r/anthropic.claude-3-sonnet-20240229-v1:0"
    assert ev.resource == ev.model_id
    assert ev.api_key_id == "ASIA6FTSFH98XNF7DFZB"
    assert ev.src_ip == "35.249.253.232"  # LogLicker's "035.249.253.232", read as decimal
    assert ev.account_id == "494659789341" and ev.cloud_provider == "aws"
    assert ev.dst_host == "bedrock-runtime.megov-northeast-1r.amazonaws.com"
    assert ev.entities == [
        ent.principal(arn),
        ent.principal("arn:aws:iam::494659789341:role/test-role"),
        ent.apikey("ASIA6FTSFH98XNF7DFZB"),
        ent.ip("35.249.253.232"),
        ent.model("anthropic.claude-3-sonnet-20240229-v1:0"),
        ent.model("bedrock/megov-northeast-1r/anthropic.claude-3-sonnet-20240229-v1:0"),
    ]
    assert ev.event_id == event_id("cloudtrail", "51d580ea-04f5-421c-b733-b5e4ec485a6e")
    assert ev.extra["param.modelId"] == ev.model_id


def test_cloudtrail_error_service_identity_and_s3() -> None:
    denied = norm("cloudtrail", record("cloudtrail", "stratus-red-team_detonations.jsonl", 1))
    assert denied.api_status == "Client.UnauthorizedOperation" and denied.activity == "read"
    assert denied.message.startswith("You are not authorized")
    service = norm("cloudtrail", record("cloudtrail", "panther-analysis_test-events.jsonl", 16))
    assert service.principal == "lambda.amazonaws.com" and service.src_ip == ""
    assert service.extra["source"] == "lambda.amazonaws.com"
    assert service.time_ms == 1717360032000  # "2024-06-02 20:27:12", naive = UTC
    assert service.resource == "arn:aws:iam::123456789123:role/my_role_arn"  # resources[0].arn
    s3 = norm("cloudtrail", record("cloudtrail", "panther-analysis_test-events.jsonl", 5))
    assert (s3.activity, s3.resource) == ("delete", "example-bucket/example-object")
    late = norm("cloudtrail", record("cloudtrail", "panther-analysis_test-events.jsonl", 19))
    assert late.time_ms == 1672710727000  # "2023-01-03 01:52:07.000000000"
    no_arn = norm("cloudtrail", record("cloudtrail", "panther-analysis_test-events.jsonl", 14))
    assert no_arn.entity_id == "principal:AIDACKCEVSQ6C2EXAMPLE" and no_arn.api_status == "failure"
    ingress = norm("cloudtrail", record("cloudtrail", "stratus-red-team_detonations.jsonl", 39))
    assert ingress.extra["param.cidrIp"] == "208.236.235.254/0" and ingress.extra["param.fromPort"] == "22"


def test_cloudtrail_s3_log_file_split() -> None:
    envelope = orjson.loads((FIXTURES / "cloudtrail" / "stratus-red-team_s3-log-file.json").read_bytes())
    assert detect_source(envelope) == "cloudtrail"
    records = SOURCES["cloudtrail"].split(envelope)
    assert [r["eventName"] for r in records] == ["InvokeModel", "CreateAccessKey", "ConsoleLogin"]
    events = [norm("cloudtrail", r) for r in records]
    assert [e.event_id for e in events] == [event_id("cloudtrail", r["eventID"]) for r in records]
    with pytest.raises(RecordError, match="split it into records first"):
        normalize_bytes(orjson.dumps(envelope), None, limits=Limits(), prompt_chars=0)
    with pytest.raises(RecordError, match="`Records` is a dict"):
        cloudtrail_source.split({"Records": {}})
    single = records[0]
    assert SOURCES["cloudtrail"].split(single) == [single]
    assert all(SOURCES[name].split(single) == [single] for name in SOURCES if name != "cloudtrail")


SHARED_DIRS = {"falco": "falco", "cloudtrail": "cloudtrail", "k8s-audit": "k8s_audit", "bedrock": "bedrock",
               "gateway": "gateway"}  # fmt: skip


@needs_shared
def test_every_shared_sample_parses_or_is_rejected_in_place() -> None:
    """All of shared/data, old and hand-edited records included: an Event or a RecordError, nothing else."""
    outcomes: dict[str, list[str]] = {"ok": [], "rejected": []}
    for folder, source in SHARED_DIRS.items():
        for path in sorted((SHARED / folder).glob("*.json*")):
            for number, line in enumerate(_lines(path), 1):
                rec = orjson.loads(line)
                assert detect_source(rec) == source, (path.name, number)
                for item in SOURCES[source].split(rec):
                    where = f"{path.name}:{number}"
                    try:
                        ev = normalize_bytes(orjson.dumps(item), None, limits=Limits(), prompt_chars=2048)
                    except RecordError as exc:
                        assert exc.reason.startswith(f"{source}: "), exc.reason
                        outcomes["rejected"].append(where)
                        continue
                    check_event(ev)
                    assert SOURCES[source].primary_key(item) == ev.entity_id, where
                    outcomes["ok"].append(where)
    assert outcomes["rejected"] == [f"panther-analysis_test-events.jsonl:{n}" for n in (2, 3, 4, 5)]
    assert len(outcomes["ok"]) >= 238  # every other record, the CC-BY-SA ones included


@needs_shared
def test_cloudtrail_aws_docs_samples_in_place() -> None:
    lines = _lines(SHARED / "cloudtrail" / "aws-docs_examples.jsonl")
    events = [normalize_bytes(line, None, limits=Limits(), prompt_chars=0) for line in lines]
    for ev in events:
        check_event(ev)
    insight = events[6]
    assert (insight.class_uid, insight.rule, insight.api_service) == (
        DETECTION_FINDING,
        "ApiCallRateInsight",
        "ssm",
    )
    assert insight.entity_id == ""
    assert events[10].api_status == "failure"  # ConsoleLogin failure has no errorCode
    assert events[15].principal == "arn:aws:iam::111122223333:root"
    assert (events[20].api_service, events[20].model_id) == ("sagemaker", "ExampleModel")
    envelope = orjson.loads((SHARED / "cloudtrail" / "aws-docs_s3-records-envelope.json").read_bytes())
    records = SOURCES["cloudtrail"].split(envelope)
    assert len(records) == 3
    put_acl = norm("cloudtrail", records[1])
    assert put_acl.src_ip == "" and "source" not in put_acl.extra  # "sourceIPAddress": ""
    assert norm("cloudtrail", records[2]).resource == "DOC-EXAMPLE-BUCKET1"


# --- kubernetes audit -----------------------------------------------------------------------------


def test_k8s_exec_and_attach() -> None:
    ev = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 48))
    assert (ev.class_uid, ev.activity, ev.api_operation, ev.api_status) == (
        API_ACTIVITY,
        "exec",
        "create",
        "101",
    )
    assert (ev.namespace, ev.pod) == ("default", "nginx-deployment-7998647bdf-phvq7")
    assert ev.resource == "pods/default/nginx-deployment-7998647bdf-phvq7/exec"
    assert ev.extra["command"] == "bash"
    assert ev.principal == "minikube-user" and ev.entity_id == "principal:minikube-user"
    assert ev.entities == [
        "principal:minikube-user",
        "namespace:default",
        "pod:default/nginx-deployment-7998647bdf-phvq7",
        "ip:192.168.99.1",
    ]
    assert ev.time_ms == 1540561114867 and ev.api_service == "kubernetes"
    assert ev.event_id == event_id("k8s_audit", "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6/ResponseStarted")
    attach = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 3))
    assert attach.activity == "attach" and "command" not in attach.extra


def test_k8s_exec_command_from_request_object() -> None:
    # Panther's synthetic line 5 has no timestamp (rejected); with one it parses.
    rec = {
        **record("k8s_audit", "panther-analysis_test-events.jsonl", 5),
        "stageTimestamp": "2024-01-02T03:04:05Z",
    }
    ev = norm("k8s_audit", rec)
    assert ev.extra["command"] == "cat /var/run/secrets/kubernetes.io/serviceaccount/token"
    assert ev.time_ms == 1704164645000 and ev.src_ip == "203.0.113.42"
    uri_only = {
        **record("k8s_audit", "panther-analysis_test-events.jsonl", 4),
        "stageTimestamp": "2024-01-02T03:04:05Z",
    }
    assert norm("k8s_audit", uri_only).extra["command"] == "tar cf - /app/secrets/credentials.json"


def test_k8s_services_and_workloads() -> None:
    node_port = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 29))
    assert (node_port.extra["service_type"], node_port.extra["service_ports"]) == ("NodePort", "80:30080/TCP")
    assert node_port.resource == "services/default/nginx" and node_port.pod == ""
    pod = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 20))
    assert pod.pod == "nginx-deployment-754c877bcd-zh5qx"  # name from the response object
    assert pod.extra["host_network"] == "true" and pod.image == "nginx" and "image:nginx" in pod.entities
    assert pod.src_ip == "::1"
    privileged = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 23))
    assert privileged.extra.get("privileged") == "true"
    deployment = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 18))
    assert deployment.extra["images"] == "nginx" and deployment.activity == "create"
    cluster_role = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 50))
    assert (cluster_role.activity, cluster_role.resource, cluster_role.namespace) == (
        "update",
        "clusterroles/system:node-problem-detector",
        "",
    )
    load_balancer = copy.deepcopy(record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 29))
    load_balancer["requestObject"]["spec"]["type"] = "LoadBalancer"
    load_balancer["requestObject"]["spec"]["ports"] = [{"port": 8000, "protocol": "TCP"}]
    lb = norm("k8s_audit", load_balancer)
    assert (lb.extra["service_type"], lb.extra["service_ports"]) == ("LoadBalancer", "8000/TCP")


def test_k8s_legacy_and_impersonation() -> None:
    ev = norm("k8s_audit", record("k8s_audit", "audit2rbac_demo.jsonl", 1))  # only `timestamp`
    assert ev.time_ms == 1505159705000
    assert ev.principal == "system:admin" and ev.extra["impersonated_user"] == "bob"
    assert "principal:bob" in ev.entities and ev.api_status == "403"
    discovery = norm("k8s_audit", record("k8s_audit", "audit2rbac_demo.jsonl", 10))  # non-resource URL
    assert discovery.resource == "/api"
    v1beta1 = norm("k8s_audit", record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 1))
    assert v1beta1.namespace == "foo" and v1beta1.principal == "system:anonymous"
    eks = norm("k8s_audit", record("k8s_audit", "panther-analysis_test-events.jsonl", 1))
    assert eks.time_ms == 1669918825054 and eks.src_ip == "35.163.244.48"


def test_k8s_stages_get_distinct_ids_and_bad_versions_fail() -> None:
    rec = record("k8s_audit", "falco_k8s-audit-trace-files.jsonl", 48)
    started = norm("k8s_audit", rec)
    completed = norm("k8s_audit", {**rec, "stage": "ResponseComplete"})
    assert started.event_id != completed.event_id and started.request_id == completed.request_id
    with pytest.raises(RecordError, match="not an audit event"):
        norm("k8s_audit", {**rec, "apiVersion": "audit.k8s.io/v2"})
    core_event = {"kind": "Event", "apiVersion": "v1", "reason": "Pulled", "involvedObject": {"kind": "Pod"}}
    assert detect_source(core_event) is None
    with pytest.raises(RecordError, match="unknown source"):
        normalize_bytes(orjson.dumps(core_event), None, limits=Limits(), prompt_chars=0)


# --- bedrock --------------------------------------------------------------------------------------


def test_bedrock_invocations() -> None:
    claude = norm("bedrock", record("bedrock", "aiwarden_handwritten.jsonl", 1))
    arn = "arn:aws:sts::123456789012:assumed-role/chatbot-backend/i-0a1b2c3d4e5f60718"
    assert (claude.class_uid, claude.activity, claude.api_operation) == (
        API_ACTIVITY,
        "invoke_model",
        "InvokeModel",
    )
    assert claude.entity_id == ent.principal(arn)
    assert claude.model_id == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert claude.model_endpoint == "bedrock/us-east-1/anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert (claude.tokens_in, claude.tokens_out) == (27, 14)
    assert claude.prompt == "How do I rotate my API key?"  # user text only, no system prompt
    assert claude.time_ms == 1748963442000 and claude.api_status == "success"
    assert claude.event_id == event_id("bedrock", "5f1d3a7e-2b9c-4d8e-9a61-0c3e5b7d9f21")
    titan = norm("bedrock", record("bedrock", "aiwarden_handwritten.jsonl", 2))
    assert (
        titan.prompt == "Classify this ticket: my GPU quota was exceeded" and titan.time_ms == 1748963465318
    )
    converse = norm("bedrock", record("bedrock", "aiwarden_handwritten.jsonl", 3))
    assert converse.prompt == "First question\nSecond question"
    assert (converse.tokens_in, converse.tokens_out, converse.latency_ms) == (31, 2, 812)
    throttled = norm("bedrock", record("bedrock", "aiwarden_handwritten.jsonl", 4))
    assert throttled.api_status == "ThrottlingException" and "Human: Write a haiku" in throttled.prompt
    by_reference = norm("bedrock", record("bedrock", "aiwarden_handwritten.jsonl", 5))
    assert by_reference.prompt == "" and by_reference.tokens_in == 120311
    assert by_reference.extra["input_s3_path"].startswith("s3://")


def test_bedrock_panther_guardrail_and_prompt_limit() -> None:
    blocked = norm("bedrock", record("bedrock", "panther-analysis_test-events.jsonl", 3))
    assert (
        blocked.extra["guardrail"] == "intervened" and blocked.prompt == "I have a very suspicious question."
    )
    assert blocked.time_ms == 1747318489000
    converse = norm("bedrock", record("bedrock", "panther-analysis_test-events.jsonl", 2))
    assert converse.extra["guardrail"] == "intervened" and converse.latency_ms == 249
    short = norm("bedrock", record("bedrock", "aiwarden_handwritten.jsonl", 1), prompt_chars=5)
    assert short.prompt == "How d"
    assert norm("bedrock", record("bedrock", "aiwarden_handwritten.jsonl", 1), prompt_chars=0).prompt == ""
    with pytest.raises(RecordError, match="not 'ModelInvocationLog'"):
        norm("bedrock", {**record("bedrock", "aiwarden_handwritten.jsonl", 1), "schemaType": "Other"})


# --- gateway --------------------------------------------------------------------------------------


def test_gateway_canonical() -> None:
    ev = norm("gateway", record("gateway", "aiwarden_canonical.jsonl", 1))
    assert (ev.class_uid, ev.activity) == (API_ACTIVITY, "invoke_model")
    assert (ev.principal, ev.api_key_id, ev.src_ip) == ("alice@example.com", "key_7d1e2f", "10.2.3.4")
    assert ev.entity_id == "apikey:key_7d1e2f"
    assert ev.model_endpoint == "https://llm-gw.internal:4000/v1/chat/completions"
    assert (ev.tokens_in, ev.tokens_out, ev.latency_ms, ev.api_status) == (812, 96, 1840, "200")
    assert ev.time_ms == 1748962800250 and ev.event_id == event_id(
        "gateway", "req_01HZX3T6M0P8W4R5D2A7B9C1QF"
    )
    limited = norm("gateway", record("gateway", "aiwarden_canonical.jsonl", 2))
    assert (limited.api_status, limited.src_ip, limited.model_endpoint) == (
        "429",
        "2001:db8::42",
        "/v1/embeddings",
    )
    assert "model:/v1/embeddings" not in limited.entities  # a bare path names no endpoint
    keyless = norm("gateway", record("gateway", "aiwarden_canonical.jsonl", 3))
    assert keyless.entity_id == "principal:bob@example.com" and keyless.prompt.startswith(
        "Ignore all previous"
    )
    secret = norm(
        "gateway", {**record("gateway", "aiwarden_canonical.jsonl", 1), "api_key_id": "sk-live-123"}
    )
    assert secret.api_key_id == hashlib.sha256(b"sk-live-123").hexdigest()  # never the secret itself
    with_secret = {**record("gateway", "aiwarden_canonical.jsonl", 1), "api_key_id": "sk-live-123"}
    assert SOURCES["gateway"].primary_key(with_secret) == secret.entity_id


def test_gateway_litellm_formats() -> None:
    spend = norm("gateway", record("gateway", "litellm_spend-log-row.jsonl", 1))
    payload = norm("gateway", record("gateway", "litellm_standard-logging-payload.jsonl", 1))
    for ev in (spend, payload):
        assert (ev.model_id, ev.tokens_in, ev.tokens_out, ev.latency_ms) == ("gpt-4o", 10, 20, 4)
        assert ev.time_ms == 1737710446847 and ev.api_status == "200"
        assert ev.api_operation == "/v1/chat/completions" and ev.extra["call_type"] == "acompletion"
        assert ev.entity_id == "model:gpt-4o"  # the fixtures carry no key, user or client IP
    assert spend.request_id == "chatcmpl-2283081b-dc89-41f6-93e6-d4f914774027"
    assert payload.prompt == "Hello, world!" and payload.extra["api_base"] == "https://api.openai.com"


def test_gateway_litellm_identity() -> None:
    rec = record("gateway", "litellm_standard-logging-payload.jsonl", 1)
    rec["metadata"].update(user_api_key_hash="88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
                           user_api_key_user_id="alice", requester_ip_address="198.51.100.7")  # fmt: skip
    rec.update(startTime=1737710446.847371, endTime=1737710447.1)  # LiteLLM's epoch-second floats
    ev = norm("gateway", rec)
    assert ev.entity_id == "apikey:88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
    assert (ev.principal, ev.src_ip, ev.time_ms, ev.latency_ms) == (
        "alice",
        "198.51.100.7",
        1737710446847,
        253,
    )
    assert SOURCES["gateway"].primary_key(rec) == ev.entity_id
    spend = record("gateway", "litellm_spend-log-row.jsonl", 1)
    meta = orjson.loads(spend["metadata"])
    meta.update(user_api_key="abc123", requester_ip_address="203.0.113.9", user_agent="litellm-test")
    spend["metadata"] = orjson.dumps(meta).decode()  # the spend row keeps metadata as JSON text
    spend_ev = norm("gateway", spend)
    assert (spend_ev.api_key_id, spend_ev.src_ip, spend_ev.user_agent) == (
        "abc123",
        "203.0.113.9",
        "litellm-test",
    )
    assert SOURCES["gateway"].primary_key(spend) == "apikey:abc123"
    failed = {**record("gateway", "litellm_standard-logging-payload.jsonl", 1), "status": "failure",
              "error_information": {"error_code": "429", "error_class": "RateLimitError"}}  # fmt: skip
    assert norm("gateway", failed).api_status == "429"


# --- routing and errors ---------------------------------------------------------------------------


def test_registry() -> None:
    assert set(SOURCES) == {"falco", "native", "cloudtrail", "k8s_audit", "bedrock", "gateway", "otel_genai",
                            "trivy", "trivy_operator", "grype", "cyclonedx"}
    assert {name: spec.topic for name, spec in SOURCES.items()} == {
        "falco": "aiwarden.raw.runtime",
        "native": "aiwarden.raw.runtime",
        "cloudtrail": "aiwarden.raw.cloud",
        "k8s_audit": "aiwarden.raw.cloud",
        "bedrock": "aiwarden.raw.inference",
        "gateway": "aiwarden.raw.inference",
        "otel_genai": "aiwarden.raw.inference",
        "trivy": "aiwarden.raw.vulns",
        "trivy_operator": "aiwarden.raw.vulns",
        "grype": "aiwarden.raw.vulns",
        "cyclonedx": "aiwarden.raw.vulns",
    }
    assert all(SOURCES[name].name == name for name in SOURCES)
    assert set(CLI_NAMES.values()) == set(SOURCES)
    line = _lines(FIXTURES / "k8s_audit" / "falco_k8s-audit-trace-files.jsonl")[0]
    assert normalize_bytes(line, "k8s-audit", limits=Limits(), prompt_chars=0).source == "k8s_audit"


@pytest.mark.parametrize(
    ("data", "source", "reason"),
    [
        (b"{}", "syslog", "unknown source 'syslog'"),
        (b'{"hello": "world"}', None, "unknown source"),
        (b"not json", "falco", "not valid JSON"),
        (b"[1, 2]", None, "expected a JSON object"),
        (b"", None, "empty record"),
        (b'{"a": NaN}', None, "not valid JSON"),
        (b'{"a": 1e999}', None, "not valid JSON"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", None, "nesting deeper"),
        (
            b'{"rule": 5, "time": "x", "priority": "Notice", "output_fields": {}}',
            None,
            r"falco: Expected `str`",
        ),
    ],
)
def test_normalize_bytes_errors(data: bytes, source: str | None, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        normalize_bytes(data, source, limits=Limits(), prompt_chars=2048)


def test_limits_are_enforced() -> None:
    line = _lines(FIXTURES / "falco" / "aiwarden_handwritten.jsonl")[0]
    with pytest.raises(RecordError, match="byte limit"):
        normalize_bytes(line, "falco", limits=Limits(max_bytes=100), prompt_chars=0)
    with pytest.raises(RecordError, match="string is longer"):
        normalize_bytes(line, "falco", limits=Limits(max_string_chars=64), prompt_chars=0)


def test_helpers() -> None:
    assert clean_ip("225.01.00.16") == "225.1.0.16"
    assert clean_ip("::ffff:10.0.0.1") == "10.0.0.1"
    assert clean_ip("2001:DB8::0:1") == "2001:db8::1"
    assert clean_ip("lambda.amazonaws.com") == clean_ip("256.1.1.1") == clean_ip("1.2.3") == ""
    assert to_time_ms("2025-02-10T09:15:40.698757000Z", "t", "$") == 1739178940698
    assert to_time_ms("2025-02-10T10:15:40.5+01:00", "t", "$") == 1739178940500
    assert to_time_ms(1739178940698757000, "t", "$") == 1739178940698  # ns, by magnitude
    assert to_time_ms(1739178940.5, "t", "$") == 1739178940500  # s
    assert to_time_ms("1739178940698", "t", "$", unit="ms") == 1739178940698
    for bad in ("1969-12-31T23:59:59Z", True, None, [], "12:00", float("nan"), 1e300):
        with pytest.raises(RecordError):
            to_time_ms(bad, "t", "$")
    chat = {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]}
    assert prompt_text(chat, 10) == "hi"
    assert prompt_text({"inputText": "x" * 50}, 10) == "x" * 10
    assert prompt_text(["not", "a", "body"], 10) == ""


# --- fuzzing --------------------------------------------------------------------------------------

SOURCE_HEADERS = [None, "bogus", *SOURCES, *CLI_NAMES]
FUZZ_LIMITS = Limits(max_bytes=262_144, max_depth=32, max_string_chars=8_192)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "<NA>", "2025-01-01T00:00:00Z", "10.0.0.1", "::1", "host", "pods", "exec", "sk-x",
                     "ModelInvocationLog", "aiwarden.runtime/v1", "Event", "audit.k8s.io/v1", "Notice"]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
# Keys the parsers look at, so that junk reaches past the first field check often enough.
KNOWN_KEYS = sorted(
    {
        "schema", "time", "kind", "host", "process", "network", "dns", "file", "rule", "priority", "output",
        "output_fields", "eventSource", "eventVersion", "eventName", "eventTime", "userIdentity", "Records",
        "apiVersion", "verb", "user", "auditID", "objectRef", "requestObject", "schemaType", "timestamp",
        "modelId", "input", "request_id", "model", "endpoint", "status", "call_type", "startTime",
        "metadata", "messages", "SchemaVersion", "Results", "ArtifactName", "matches", "descriptor", "bomFormat",
        "components", "vulnerabilities", "report",
    }
)  # fmt: skip
junk_records = st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=10), json_values, max_size=12)


def _accepts_or_record_error(data: bytes, source: str | None) -> None:
    try:
        ev = normalize_bytes(data, source, limits=FUZZ_LIMITS, prompt_chars=64)
    except RecordError as exc:
        assert exc.reason
        return
    check_event(ev)
    assert Event.from_dict(orjson.loads(encode(ev))) == ev


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk_records, st.sampled_from(SOURCE_HEADERS))
def test_fuzz_junk_only_record_errors(rec: dict[str, Any], source: str | None) -> None:
    _accepts_or_record_error(json.dumps(rec).encode(), source)  # stdlib: big ints, like any producer
    for spec in SOURCES.values():
        assert type(spec.primary_key(rec)) is str


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if type(value) is dict:
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif type(value) is list:
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _set(rec: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        rec = rec[step]
    rec[path[-1]] = value


def _drop(rec: Any, path: tuple[Any, ...]) -> None:
    for step in path[:-1]:
        rec = rec[step]
    del rec[path[-1]]


mutations = st.sampled_from(["drop", "retype", "huge", "deep", "nan", "big_number", "empty"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURE_RECORDS), st.lists(mutations, min_size=1, max_size=4), st.data())
def test_fuzz_mutated_real_records(
    fixture: tuple[str, str, int, bytes], kinds: list[str], data: st.DataObject
) -> None:
    source, _, _, line = fixture
    rec = orjson.loads(line)
    for kind in kinds:
        paths = _paths(rec)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        if kind == "drop":
            _drop(rec, path)
        elif kind == "retype":
            _set(rec, path, data.draw(json_values))
        elif kind == "huge":
            _set(rec, path, "x" * data.draw(st.sampled_from([8_000, 9_000, 200_000])))
        elif kind == "deep":
            nested: Any = "leaf"
            for _ in range(data.draw(st.integers(min_value=1, max_value=40))):
                nested = [nested]
            _set(rec, path, nested)
        elif kind == "big_number":
            _set(rec, path, data.draw(st.sampled_from([2**63, -(2**63) - 1, 10**30, -1, 1e308, 0.5])))
        elif kind == "empty":
            _set(rec, path, data.draw(st.sampled_from(["", [], {}, None, 0])))
        else:  # NaN is not JSON, but producers write it: the decoder must reject it
            _set(rec, path, float("nan"))
    encoded = json.dumps(rec).encode()
    header = data.draw(st.sampled_from([source, None]))
    _accepts_or_record_error(encoded, header)
    assert type(SOURCES[source].primary_key(rec)) is str
