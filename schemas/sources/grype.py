"""Grype JSON reports (``grype <target> -o json``), one package per record.

``split`` gives one record per matched package (``matches[].artifact``, grouped by the artifact's ``id``, else
name + version + type + first location): the report with ``matches`` narrowed to that package, each match kept
with the fields read here (``vulnerability``, ``relatedVulnerabilities`` ids and CVSS, ``artifact``). Grype
reports only vulnerable packages. A report without ``descriptor.timestamp`` (Grype before 0.61, or an empty
one) is stamped with the time it is received.

Mapping (Vulnerability Finding, activity ``package``): for an image source ``image`` = the first of
``source.target.tags``, else ``userInput``, without digest; ``image_digest`` = the first ``repoDigests`` digest,
else ``manifestDigest``; for a directory, file, SBOM or purl source ``image`` = ``source.target`` (a string).
Package: ``artifact.name``, ``version``, ``purl``, ``ecosystem`` = its type, else ``artifact.type``,
``package_paths`` = ``locations[].path``. Per vulnerability: ``id``, ``severity`` (``Negligible`` → LOW), the
highest CVSS ``metrics.baseScore`` of the vulnerability and its related records (v3 and later first),
``fix.versions`` (when ``fix.state`` is ``fixed``), ``fix.state`` as the status, ``dataSource`` as the URL.
``scanner`` = ``descriptor.name version``; ``report_id`` = a digest of the target and the time.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import vulns
from schemas.envelope import Event
from schemas.sources import _scanner as scan
from schemas.sources._common import convert, fail, fallback_key

SOURCE = "grype"
_TARGET = ("userInput", "imageID", "manifestDigest", "repoDigests", "tags")
_VULNERABILITY = ("id", "dataSource", "namespace", "severity", "cvss", "fix")
_ARTIFACT = ("id", "name", "version", "type", "purl", "locations", "language")


class Metrics(msgspec.Struct, kw_only=True):
    baseScore: float | None = None  # noqa: N815 - vendor field names


class Cvss(msgspec.Struct, kw_only=True):
    version: str | None = None
    metrics: Metrics | None = None


class Fix(msgspec.Struct, kw_only=True):
    versions: list[str] | None = None
    state: str | None = None


class Related(msgspec.Struct, kw_only=True):
    id: str = ""
    cvss: list[Cvss] | None = None


class Found(msgspec.Struct, kw_only=True):
    id: str
    severity: str | None = None
    dataSource: str | None = None  # noqa: N815
    cvss: list[Cvss] | None = None
    fix: Fix | None = None


class Location(msgspec.Struct, kw_only=True):
    path: str | None = None


class Artifact(msgspec.Struct, kw_only=True):
    name: str
    version: str | None = None
    type: str | None = None
    purl: str | None = None
    id: str | None = None
    locations: list[Location] | None = None


class Match(msgspec.Struct, kw_only=True):
    vulnerability: Found
    artifact: Artifact
    relatedVulnerabilities: list[Related] | None = None  # noqa: N815


class ImageTarget(msgspec.Struct, kw_only=True):
    userInput: str | None = None  # noqa: N815
    manifestDigest: str | None = None  # noqa: N815
    repoDigests: list[str] | None = None  # noqa: N815
    tags: list[str] | None = None


class Source(msgspec.Struct, kw_only=True):
    type: str | None = None
    target: ImageTarget | str | None = None


class Descriptor(msgspec.Struct, kw_only=True):
    name: str | None = None
    version: str | None = None
    timestamp: str | None = None


class Report(msgspec.Struct, kw_only=True):
    matches: list[Match]
    source: Source | None = None
    descriptor: Descriptor | None = None


def is_report(record: dict[str, Any]) -> bool:
    return type(record.get("matches")) is list and ("descriptor" in record or "source" in record)


def _artifact_key(artifact: dict[str, Any]) -> bytes:
    if artifact.get("id"):
        return scan.group_key("id", artifact["id"])
    locations = artifact.get("locations")
    first = locations[0] if type(locations) is list and locations and type(locations[0]) is dict else {}
    return scan.group_key(*(artifact.get(k) for k in ("name", "version", "type")), first.get("path"))


def split(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per matched package; the report itself when its shape is not Grype's."""
    if not is_report(record):
        return [record]
    matches = scan.only_dicts(record.get("matches"))
    if matches is None or any(type(m.get("artifact")) is not dict or type(m.get("vulnerability")) is not dict
                              for m in matches):
        return [record]
    top = scan.pick(record, ("distro",))
    source = record.get("source")
    if type(source) is dict:
        target = source.get("target")
        top["source"] = {**source, "target": scan.pick(target, _TARGET) if type(target) is dict else target}
    descriptor = record.get("descriptor")
    descriptor = scan.pick(descriptor, ("name", "version", "timestamp")) if type(descriptor) is dict else {}
    if not descriptor.get("timestamp"):
        descriptor["timestamp"] = scan.now_iso()
    top["descriptor"] = descriptor
    groups: dict[bytes, list[dict[str, Any]]] = {}
    for match in matches:
        related = scan.only_dicts(match.get("relatedVulnerabilities")) or []
        groups.setdefault(_artifact_key(match["artifact"]), []).append({
            "vulnerability": scan.pick(match["vulnerability"], _VULNERABILITY),
            "relatedVulnerabilities": [scan.pick(r, ("id", "cvss")) for r in related],
            "artifact": scan.pick(match["artifact"], _ARTIFACT),
        })
    return [{**top, "matches": group} for group in groups.values()]


def _target(source: Source) -> tuple[str, str]:
    """(image or path, digest) of the scanned source."""
    target = source.target
    if isinstance(target, str):
        return scan.strip_digest(target)
    if target is None:
        return "", ""
    tags, digests = target.tags or [], target.repoDigests or []
    image, digest = scan.strip_digest(tags[0] if tags else target.userInput or "")
    if digests:
        digest = scan.strip_digest(digests[0])[1] or digest
    return image, digest or target.manifestDigest or ""


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    report = convert(record, Report, SOURCE)
    artifacts = {_artifact_key(msgspec.to_builtins(m.artifact)) for m in report.matches}
    if len(artifacts) != 1:
        raise fail(SOURCE, f"a report with {len(artifacts)} packages; split it into one record per package first"
                   " (aiwarden publish and ingest do)")
    descriptor = report.descriptor or Descriptor()
    time_ms = scan.scan_time(descriptor.timestamp, SOURCE, "$.descriptor.timestamp")
    image, digest = _target(report.source or Source())
    artifact = report.matches[0].artifact
    purl = artifact.purl or ""
    paths = [loc.path for loc in artifact.locations or [] if loc.path]
    scanner = " ".join(p for p in (descriptor.name or "", descriptor.version or "") if p)
    return scan.package_event(
        SOURCE, record, time_ms=time_ms, image=image, image_digest=digest, package=artifact.name,
        version=artifact.version or "", purl=purl, ecosystem=scan.ecosystem_of(purl, artifact.type or ""), paths=paths,
        vulnerabilities=[_vulnerability(m) for m in report.matches], scanner=scanner,
        report_id=scan.report_digest(image, digest, descriptor.timestamp or ""),
        target=(report.source or Source()).type or "", artifact=image,
    )


def _vulnerability(match: Match) -> vulns.Vulnerability:
    found, fix = match.vulnerability, match.vulnerability.fix or Fix()
    records = [*(found.cvss or []), *[c for r in match.relatedVulnerabilities or [] for c in r.cvss or []]]
    scores = [(c.version or "", c.metrics.baseScore if c.metrics else None) for c in records]
    modern = scan.highest([s for version, s in scores if not version.startswith("2")])
    fixed = ", ".join(fix.versions or []) if (fix.state or "fixed") == "fixed" else ""
    return vulns.Vulnerability(
        id=found.id, severity=vulns.severity_of(found.severity or ""),
        cvss=modern if modern is not None else scan.highest([s for _, s in scores]),
        fixed_version=fixed, status=fix.state or "", url=found.dataSource or "",
    )


def primary_key(record: dict[str, Any]) -> str:
    """The image entity, as the normalized event has it."""
    return fallback_key(normalize, record)
