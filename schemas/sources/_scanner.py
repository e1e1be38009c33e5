"""What every scanner-report parser shares (``trivy``, ``trivy_operator``, ``grype``, ``cyclonedx``).

A report is split (``SourceSpec.split``) into one record per (artifact, package): the vendor's own document
narrowed to that package and its vulnerabilities, with the heavy fields nobody reads left out (descriptions and
reference lists are megabytes per image). Each such record normalizes to one package ``Event`` (see
``schemas.vulns``). ``split`` never raises: a report whose shape it does not know is passed on whole, and the
normalizer dead-letters it with the exact path of what is wrong.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from schemas import entities as ent
from schemas import vulns
from schemas.envelope import VULNERABILITY_FINDING, Event, event_id, unique
from schemas.sources._common import EXTRA_CHARS, MESSAGE_CHARS, fail, identity_and_raw, to_time_ms, truncate

# Vulnerability severity -> OCSF severity_id of the package event (no vulnerability: informational).
_SEVERITY_ID = {"UNKNOWN": 1, "LOW": 2, "MEDIUM": 3, "HIGH": 4, "CRITICAL": 5}
# Message lists at most this many vulnerability ids.
_LISTED = 3


class CvssScores(msgspec.Struct, kw_only=True):
    """One source's CVSS scores in Trivy's ``CVSS`` maps (Trivy JSON and Trivy Operator)."""

    V2Score: float | None = None  # noqa: N815 - vendor field names
    V3Score: float | None = None  # noqa: N815
    V40Score: float | None = None  # noqa: N815


def strip_digest(reference: str) -> tuple[str, str]:
    """``("repo:tag", "sha256:…")`` from ``repo:tag@sha256:…``; ``repo@sha256:…`` gives ``("repo", "sha256:…")``."""
    name, at, digest = reference.partition("@")
    return (name, digest) if at else (reference, "")


def ecosystem_of(purl: str, fallback: str = "") -> str:
    """The purl type (``pkg:pypi/vllm@0.5.0`` → ``pypi``), else ``fallback`` (the scanner's own word)."""
    if purl.startswith("pkg:"):
        kind = purl[4:].split("/", 1)[0]
        if kind:
            return kind.lower()
    return fallback.lower()


def now_iso() -> str:
    """The time a report without one is stamped with when it is received (``split``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scan_time(value: object, source: str, field: str) -> int:
    """The report's scan / creation time in epoch ms; a report without one is a ``RecordError``."""
    if value is None or value == "":
        raise fail(source, f"no scan time at `{field}` (aiwarden publish / ingest stamp it on receipt)")
    return to_time_ms(value, source, field)


def report_digest(*parts: str) -> str:
    """A stable report id for scanners whose reports carry none: the same in every split record of a report."""
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=12).hexdigest()


def highest(scores: list[float | None]) -> float | None:
    real = [float(s) for s in scores if s is not None and s >= 0]
    return round(max(real), 1) if real else None


def only_dicts(value: object) -> list[dict[str, Any]] | None:
    """``value`` when it is a list of JSON objects (``[]`` for null), else ``None`` (split passes the report on)."""
    if value is None:
        return []
    if type(value) is not list or any(type(item) is not dict for item in value):
        return None
    return value


def group_key(*values: object) -> bytes:
    """A hashable key of vendor values of any JSON type (what ``split`` groups packages by)."""
    try:
        return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits
        return repr(values).encode()


def pick(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``keys`` of ``record`` that it has (the fields a split record keeps)."""
    return {key: record[key] for key in keys if key in record}


def package_event(source: str, record: dict[str, Any], *, time_ms: int, image: str, package: str, version: str,
                  purl: str = "", ecosystem: str = "", image_digest: str = "", paths: list[str] | None = None,
                  vulnerabilities: list[vulns.Vulnerability] | None = None, scanner: str = "",
                  report_id: str = "", target: str = "", artifact: str = "", namespace: str = "", pod: str = "",
                  resource: str = "", extra: dict[str, str] | None = None) -> Event:
    """The package event of one split record. Its id is deterministic: report + artifact + target + package
    + version + where the package lives, so re-publishing a report never doubles its events."""
    if not package:
        raise fail(source, "a package without a name")
    if not image:
        raise fail(source, "no artifact: the report names no image, repository or path")
    found = vulnerabilities or []
    paths = paths or []
    identity = "\0".join((report_id, artifact or image, target, package, version, purl, paths[0] if paths else ""))
    _, raw = identity_and_raw(source, record, "-")  # the id is not from the raw bytes
    image_entity = ent.image(image)
    entities = unique([image_entity, ent.pod(namespace, pod) if namespace and pod else "",
                       ent.namespace(namespace) if namespace else ""])
    worst = max(found, key=lambda v: v.severity_rank, default=None)
    if found:
        ranked = sorted(found, key=lambda v: (-v.severity_rank, -(v.cvss or 0), v.id))
        listed = ", ".join(f"{v.id} {v.severity}" for v in ranked[:_LISTED])
        more = f" and {len(found) - _LISTED} more" if len(found) > _LISTED else ""
        message = f"{package} {version} in {image}: {len(found)} vulnerabilities ({listed}{more})"
    else:
        message = f"{package} {version} in {image}: no known vulnerabilities"
    all_extra = vulns.package_extra(package=truncate(package, EXTRA_CHARS), version=truncate(version, EXTRA_CHARS),
                                    purl=purl, ecosystem=ecosystem, image_digest=image_digest, paths=paths,
                                    vulnerabilities=found, scanner=scanner, report_id=report_id, target=target)
    all_extra.update(extra or {})
    return Event(
        event_id=event_id(source, identity),
        time_ms=time_ms,
        source=source,
        class_uid=VULNERABILITY_FINDING,
        activity=vulns.ACTIVITY,
        severity_id=_SEVERITY_ID.get(worst.severity, 1) if worst is not None else 1,
        message=truncate(message, MESSAGE_CHARS),
        namespace=namespace,
        pod=pod,
        image=image,
        resource=resource,
        entity_id=image_entity,
        entities=entities,
        extra={key: value for key, value in all_extra.items() if value},
        raw=raw,
    )
