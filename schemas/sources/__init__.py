"""Source parsers: raw vendor records → ``schemas.envelope.Event``, and the registry that routes them.

Each module (``falco``, ``native``, ``cloudtrail``, ``k8s_audit``, ``bedrock``, ``gateway``, ``otel_genai``, and the
scanner reports ``trivy``, ``trivy_operator``, ``grype``, ``cyclonedx``) has a typed
``msgspec`` model of its vendor record, ``normalize(record, *, prompt_chars) -> Event`` and a cheap
``primary_key(record) -> str`` (the Kafka message key). ``SOURCES`` maps each source name to its
``SourceSpec``; ``normalize_bytes`` is the one entry point for raw bytes and raises only ``RecordError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.codec import DEFAULT_LIMITS, Limits, RecordError, decode_record
from schemas.envelope import Event
from schemas.sources import (
    bedrock,
    cloudtrail,
    cyclonedx,
    falco,
    gateway,
    grype,
    k8s_audit,
    native,
    otel_genai,
    trivy,
    trivy_operator,
)
from schemas.vulns import SCANNER_SOURCES

RUNTIME_TOPIC = "aiwarden.raw.runtime"
CLOUD_TOPIC = "aiwarden.raw.cloud"
INFERENCE_TOPIC = "aiwarden.raw.inference"
VULNS_TOPIC = "aiwarden.raw.vulns"  # scanner reports, one record per (artifact, package)


@dataclass(frozen=True)
class SourceSpec:
    name: str  # "falco", "native", "cloudtrail", "k8s_audit", "bedrock", "gateway"
    topic: str  # raw topic the source is published to
    normalize: Callable[..., Event]
    primary_key: Callable[[dict[str, Any]], str]
    split: Callable[[dict[str, Any]], list[dict[str, Any]]]  # one file record -> records


def single(record: dict[str, Any]) -> list[dict[str, Any]]:
    """``split`` for sources whose every record is one event."""
    return [record]


SOURCES: dict[str, SourceSpec] = {
    "falco": SourceSpec("falco", RUNTIME_TOPIC, falco.normalize, falco.primary_key, single),
    "native": SourceSpec("native", RUNTIME_TOPIC, native.normalize, native.primary_key, single),
    "cloudtrail": SourceSpec(
        "cloudtrail", CLOUD_TOPIC, cloudtrail.normalize, cloudtrail.primary_key, cloudtrail.split
    ),
    "k8s_audit": SourceSpec("k8s_audit", CLOUD_TOPIC, k8s_audit.normalize, k8s_audit.primary_key, single),
    "bedrock": SourceSpec("bedrock", INFERENCE_TOPIC, bedrock.normalize, bedrock.primary_key, single),
    "gateway": SourceSpec("gateway", INFERENCE_TOPIC, gateway.normalize, gateway.primary_key, single),
    "otel_genai": SourceSpec("otel_genai", INFERENCE_TOPIC, otel_genai.normalize, otel_genai.primary_key, single),
    "trivy": SourceSpec("trivy", VULNS_TOPIC, trivy.normalize, trivy.primary_key, trivy.split),
    "trivy_operator": SourceSpec("trivy_operator", VULNS_TOPIC, trivy_operator.normalize, trivy_operator.primary_key,
                                 trivy_operator.split),
    "grype": SourceSpec("grype", VULNS_TOPIC, grype.normalize, grype.primary_key, grype.split),
    "cyclonedx": SourceSpec("cyclonedx", VULNS_TOPIC, cyclonedx.normalize, cyclonedx.primary_key, cyclonedx.split),
}

# CLI spelling -> source name.
CLI_NAMES = {
    "falco": "falco",
    "native": "native",
    "cloudtrail": "cloudtrail",
    "k8s-audit": "k8s_audit",
    "bedrock": "bedrock",
    "gateway": "gateway",
    "otel-genai": "otel_genai",
    "trivy": "trivy",
    "trivy-operator": "trivy_operator",
    "grype": "grype",
    "cyclonedx": "cyclonedx",
}
# Sources whose files are whole JSON documents (one report), not JSON lines: split into records on the way in.
DOCUMENT_SOURCES = frozenset(SCANNER_SOURCES)

# Source header (a source or CLI name) -> spec, for the one-lookup path of ``normalize_bytes``.
_BY_HEADER: dict[str, SourceSpec] = {**SOURCES, **{cli: SOURCES[name] for cli, name in CLI_NAMES.items()}}

_GATEWAY_KEYS = ("request_id", "model", "endpoint", "status")


def detect_source(record: dict[str, Any]) -> str | None:
    """The source a record's shape belongs to, for messages without a source header; ``None`` if unknown."""
    get = record.get
    if get("schema") == native.SCHEMA:
        return "native"
    if "rule" in record and ("output_fields" in record or ("priority" in record and "output" in record)):
        return "falco"
    if "eventSource" in record and (
        "eventVersion" in record or ("eventName" in record and "eventTime" in record)
    ):
        return "cloudtrail"
    if "eventVersion" in record and "insightDetails" in record:  # CloudTrail Insights
        return "cloudtrail"
    if type(get("Records")) is list:  # an S3-delivered CloudTrail log file
        return "cloudtrail"
    if get("kind") == "Event":
        api_version = get("apiVersion")
        if type(api_version) is str and api_version.startswith("audit.k8s.io/"):
            return "k8s_audit"
        if api_version is None and "verb" in record and ("auditID" in record or "requestURI" in record):
            return "k8s_audit"  # early audit events carry no apiVersion
    if get("schemaType") == bedrock.SCHEMA_TYPE:
        return "bedrock"
    if all(key in record for key in _GATEWAY_KEYS):
        return "gateway"
    if "call_type" in record and "startTime" in record and ("request_id" in record or "id" in record):
        return "gateway"  # LiteLLM spend-log row / StandardLoggingPayload
    if ("span" in record or "logRecord" in record) and "resource" in record:
        return "otel_genai"  # one OTLP/JSON span or log record with its resource
    return _scanner_source(record)


def _scanner_source(record: dict[str, Any]) -> str | None:
    if trivy.is_report(record):
        return "trivy"
    if trivy_operator.is_report(record):
        return "trivy_operator"
    if grype.is_report(record):
        return "grype"
    if cyclonedx.is_report(record):
        return "cyclonedx"
    return None


def resolve(source: str | None, record: dict[str, Any]) -> SourceSpec:
    """The spec for a source header (a source or CLI name), or the detected source when there is none."""
    if source is None or source == "":
        name = detect_source(record)
        if name is None:
            msg = "unknown source: no source header and the record matches no known format"
            raise RecordError(msg)
    else:
        name = CLI_NAMES.get(source, source)
    spec = SOURCES.get(name)
    if spec is None:
        msg = f"unknown source {source[:64]!r}" if source else f"unknown source {name!r}"
        raise RecordError(msg)
    return spec


def split_report(data: bytes, source: str) -> list[bytes]:
    """The raw records of one whole scanner report (a ``DOCUMENT_SOURCES`` source): one per (artifact, package),
    as the raw topic holds them. Bytes that are not a JSON object come back as they are, for the normalizer
    to dead-letter with the reason; a report with no package gives no record."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return [data]
    if type(document) is not dict:
        return [data]
    return [orjson.dumps(part) for part in SOURCES[source].split(document)]


def normalize_bytes(
    data: bytes, source: str | None, *, limits: Limits = DEFAULT_LIMITS, prompt_chars: int = 2048
) -> Event:
    """Decode (within ``limits``), route and normalize one raw record; every failure is a ``RecordError``."""
    record = decode_record(data, limits)
    spec = _BY_HEADER.get(source) if source else None
    if spec is None:  # no header (detect the source) or an unknown one (``resolve`` says so)
        spec = resolve(source, record)
    try:
        return spec.normalize(record, prompt_chars=prompt_chars)
    except RecordError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
        RecursionError,
    ) as exc:
        msg = f"{spec.name}: unexpected {type(exc).__name__}: {str(exc)[:200]}"
        raise RecordError(msg) from exc


__all__ = [
    "CLI_NAMES",
    "DOCUMENT_SOURCES",
    "SOURCES",
    "SourceSpec",
    "detect_source",
    "normalize_bytes",
    "resolve",
    "split_report",
]
