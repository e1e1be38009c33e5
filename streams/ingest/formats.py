"""Request bodies of the JSON senders → raw records, one per event, as the raw topics hold them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.sources import split_report, trivy_operator
from schemas.sources.trivy_operator import API_GROUP

AUDIT_API_VERSIONS = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1")


class BodyError(ValueError):
    """A request body that is not the format its endpoint takes (HTTP 400 with this reason)."""


@dataclass
class Split:
    records: list[bytes] = field(default_factory=list)
    skipped: int = 0  # in the format, but outside what the endpoint collects (OTLP: not GenAI)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc}"
        raise BodyError(msg) from None


def k8s_audit(body: bytes) -> Split:
    """The audit webhook's ``EventList`` (batch mode), or one ``Event`` (blocking mode posts lists too).

    Items of an ``EventList`` carry no ``kind`` / ``apiVersion`` of their own: the list's are set on each
    record, so a record read back from Kafka is self-describing.
    """
    document = _json(body)
    if type(document) is not dict:
        msg = f"expected an audit.k8s.io EventList object, got a JSON {type(document).__name__}"
        raise BodyError(msg)
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if kind == "Event":
        return Split([body])
    if kind != "EventList" or type(document.get("items")) is not list:
        msg = f"expected an audit.k8s.io EventList with `items`, got kind {str(kind)[:64]!r}"
        raise BodyError(msg)
    if type(api_version) is not str or not api_version.startswith("audit.k8s.io/"):
        msg = f"expected apiVersion audit.k8s.io/*, got {str(api_version)[:64]!r}"
        raise BodyError(msg)
    records = []
    for item in document["items"]:
        if type(item) is dict:
            item.setdefault("kind", "Event")
            item.setdefault("apiVersion", api_version)
        records.append(orjson.dumps(item))
    return Split(records)


def json_events(body: bytes) -> Split:
    """One JSON object, a JSON array of them (Falco http_output, falcosidekick's webhook, LiteLLM's
    ``json_array``), or JSON lines (LiteLLM's ``ndjson``); each element is a record."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        lines = [line for line in body.splitlines() if line.strip()]
        if len(lines) < 2:
            msg = f"not valid JSON: {exc}"
            raise BodyError(msg) from None
        for number, line in enumerate(lines, 1):
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError as line_exc:
                msg = f"not valid JSON, nor JSON lines (line {number}: {line_exc})"
                raise BodyError(msg) from None
        return Split(lines)
    if type(document) is dict:
        return Split([body])
    if type(document) is list:
        return Split([orjson.dumps(item) for item in document])
    msg = f"expected a JSON object or array, got a JSON {type(document).__name__}"
    raise BodyError(msg)


def scanner_report(source: str) -> Callable[[bytes], Split]:
    """One whole scanner report (Trivy JSON, a Trivy Operator resource or list, Grype JSON, a CycloneDX BOM) →
    one record per package. A JSON object that is not the format is passed on, and dead-lettered with the
    reason. Trivy Operator's webhook broadcasts every report kind to one URL: its other kinds (config audits,
    exposed secrets, …) are skipped, not refused."""

    def split(body: bytes) -> Split:
        document = _json(body)
        if type(document) is not dict:
            msg = f"expected a {source} report (a JSON object), got a JSON {type(document).__name__}"
            raise BodyError(msg)
        if source == "trivy_operator" and _other_operator_report(document):
            return Split(skipped=1)
        return Split(split_report(body, source))

    split.__name__ = f"{source}_report"
    return split


def _other_operator_report(document: dict[str, Any]) -> bool:
    api_version = document.get("apiVersion")
    return type(api_version) is str and api_version.startswith(API_GROUP) and not trivy_operator.is_report(document)
