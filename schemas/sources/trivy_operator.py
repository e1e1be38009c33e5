"""Trivy Operator ``VulnerabilityReport`` resources (``aquasecurity.github.io/v1alpha1``), one package per record.

Takes a ``VulnerabilityReport`` or ``ClusterVulnerabilityReport`` as ``kubectl get … -o json`` prints it, or a
``List`` / ``VulnerabilityReportList`` of them. ``split`` gives one record per (report, package): the resource
with ``report.vulnerabilities`` narrowed to one package (``resource`` + ``installedVersion`` +
``packagePath``). The operator lists only vulnerable packages. A report without ``report.updateTimestamp`` nor
``metadata.creationTimestamp`` is stamped with the time it is received.

Mapping (Vulnerability Finding, activity ``package``): ``image`` = ``registry.server/repository:tag``
(Docker Hub images as Kubernetes pod specs usually name them: no ``index.docker.io/``, no ``library/``),
``image_digest`` = ``report.artifact.digest``; the workload from the labels
``trivy-operator.resource.namespace`` / ``.kind`` / ``.name`` and ``trivy-operator.container.name``:
``namespace`` (and its entity), ``pod`` when the kind is ``Pod``, ``resource`` = ``kind/name``,
``extra["container_name"]``; per vulnerability ``vulnerabilityID``, ``severity``, ``score`` (else the
highest CVSS of ``cvss``), ``fixedVersion``, ``title``, ``primaryLink``; ``purl`` = ``packagePURL``,
``ecosystem`` its type, else ``packageType``. ``report_id`` = ``metadata.uid`` @ the update time (each rescan
is a new report); ``scanner`` = ``report.scanner.name version``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import vulns
from schemas.envelope import Event
from schemas.sources import _scanner as scan
from schemas.sources._common import convert, fail, fallback_key

SOURCE = "trivy_operator"
API_GROUP = "aquasecurity.github.io/"
KINDS = frozenset({"VulnerabilityReport", "ClusterVulnerabilityReport"})
LIST_KINDS = frozenset({"List", "VulnerabilityReportList", "ClusterVulnerabilityReportList"})
LABEL = "trivy-operator.resource."
CONTAINER_LABEL = "trivy-operator.container.name"
DOCKER_HUB = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io"})
_METADATA = ("name", "namespace", "uid", "labels", "creationTimestamp")
_REPORT = ("artifact", "registry", "scanner", "os", "updateTimestamp")
_VULNERABILITY = ("vulnerabilityID", "resource", "installedVersion", "fixedVersion", "severity", "score", "cvss",
                  "title", "primaryLink", "packagePURL", "packagePath", "packageType", "target", "class")


class Artifact(msgspec.Struct, kw_only=True):
    repository: str = ""
    tag: str | None = None
    digest: str | None = None


class Registry(msgspec.Struct, kw_only=True):
    server: str | None = None


class Scanner(msgspec.Struct, kw_only=True):
    name: str | None = None
    version: str | None = None


class Vulnerability(msgspec.Struct, kw_only=True):
    vulnerabilityID: str  # noqa: N815
    resource: str
    installedVersion: str  # noqa: N815
    severity: str
    fixedVersion: str | None = None  # noqa: N815
    score: float | None = None
    cvss: dict[str, scan.CvssScores] | None = None
    title: str | None = None
    primaryLink: str | None = None  # noqa: N815
    packagePURL: str | None = None  # noqa: N815
    packagePath: str | None = None  # noqa: N815
    packageType: str | None = None  # noqa: N815
    target: str | None = None


class Report(msgspec.Struct, kw_only=True):
    artifact: Artifact
    registry: Registry | None = None
    scanner: Scanner | None = None
    updateTimestamp: str | None = None  # noqa: N815
    vulnerabilities: list[Vulnerability] | None = None


class Metadata(msgspec.Struct, kw_only=True):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    creationTimestamp: str | None = None  # noqa: N815


class Resource(msgspec.Struct, kw_only=True):
    apiVersion: str  # noqa: N815
    kind: str
    report: Report
    metadata: Metadata | None = None


def _kind(record: dict[str, Any]) -> str:
    kind = record.get("kind")
    return kind if type(kind) is str else ""


def is_report(record: dict[str, Any]) -> bool:
    api_version, kind = record.get("apiVersion"), _kind(record)
    if type(api_version) is str and api_version.startswith(API_GROUP) and kind in KINDS:
        return True
    items = record.get("items")
    return kind in LIST_KINDS and type(items) is list and bool(items) and type(items[0]) is dict \
        and _kind(items[0]) in KINDS


def split(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per (report, package); a list gives those of each of its reports."""
    if not is_report(record):
        return [record]
    if _kind(record) in LIST_KINDS:
        items = scan.only_dicts(record.get("items"))
        return [part for item in items for part in split(item)] if items is not None else [record]
    report, metadata = record.get("report"), record.get("metadata")
    found = scan.only_dicts(report.get("vulnerabilities")) if type(report) is dict else None
    if found is None or (metadata is not None and type(metadata) is not dict):
        return [record]
    shell = scan.pick(record, ("apiVersion", "kind"))
    shell["metadata"] = scan.pick(metadata or {}, _METADATA)
    kept = scan.pick(report, _REPORT)  # type: ignore[arg-type]
    if not kept.get("updateTimestamp") and not shell["metadata"].get("creationTimestamp"):
        kept["updateTimestamp"] = scan.now_iso()
    groups: dict[bytes, list[dict[str, Any]]] = {}
    for vulnerability in found:
        key = scan.group_key(*(vulnerability.get(k) for k in ("resource", "installedVersion", "packagePath")))
        groups.setdefault(key, []).append(scan.pick(vulnerability, _VULNERABILITY))
    return [{**shell, "report": {**kept, "vulnerabilities": group}} for group in groups.values()]


def image_of(artifact: Artifact, server: str) -> str:
    repository = artifact.repository
    if server in DOCKER_HUB:
        server = ""
        repository = repository.removeprefix("library/")
    name = f"{server}/{repository}" if server else repository
    return f"{name}:{artifact.tag}" if artifact.tag else name


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    resource = convert(record, Resource, SOURCE)
    if not resource.apiVersion.startswith(API_GROUP) or resource.kind not in KINDS:
        raise fail(SOURCE, f"expected a VulnerabilityReport of {API_GROUP}*, got {resource.kind[:64]!r} "
                           f"of {resource.apiVersion[:64]!r}")
    report, metadata = resource.report, resource.metadata or Metadata()
    found = report.vulnerabilities or []
    packages = {(v.resource, v.installedVersion, v.packagePath or "") for v in found}
    if len(packages) != 1:
        raise fail(SOURCE, f"a report with {len(packages)} packages; split it into one record per package first"
                   " (aiwarden publish and ingest do)")
    if not report.artifact.repository:
        raise fail(SOURCE, "no `report.artifact.repository`")
    updated = report.updateTimestamp or metadata.creationTimestamp
    time_ms = scan.scan_time(updated, SOURCE, "$.report.updateTimestamp")
    first = found[0]
    labels = metadata.labels or {}
    namespace = labels.get(f"{LABEL}namespace") or metadata.namespace or ""
    kind, name = labels.get(f"{LABEL}kind", ""), labels.get(f"{LABEL}name", "")
    server = (report.registry.server or "") if report.registry else ""
    image, digest = scan.strip_digest(image_of(report.artifact, server))
    scanner = report.scanner or Scanner()
    purl = first.packagePURL or ""
    extra = {"container_name": labels.get(CONTAINER_LABEL, ""), "workload_kind": kind, "workload_name": name}
    return scan.package_event(
        SOURCE, record, time_ms=time_ms, image=image, image_digest=report.artifact.digest or digest,
        package=first.resource, version=first.installedVersion, purl=purl,
        ecosystem=scan.ecosystem_of(purl, first.packageType or ""),
        paths=[first.packagePath] if first.packagePath else [],
        vulnerabilities=[_vulnerability(v) for v in found],
        scanner=" ".join(p for p in (scanner.name or "", scanner.version or "") if p).lower(),
        report_id=f"{metadata.uid}@{updated}" if metadata.uid else scan.report_digest(image, updated or ""),
        target=first.target or "", artifact=image, namespace=namespace, pod=name if kind == "Pod" else "",
        resource=f"{kind}/{name}" if kind and name else "", extra=extra,
    )


def _vulnerability(found: Vulnerability) -> vulns.Vulnerability:
    scores = (found.cvss or {}).values()
    cvss = found.score if found.score is not None else scan.highest([s.V3Score for s in scores])
    return vulns.Vulnerability(
        id=found.vulnerabilityID, severity=vulns.severity_of(found.severity),
        cvss=cvss if cvss is not None else scan.highest([s.V2Score for s in scores]),
        fixed_version=found.fixedVersion or "", status="fixed" if found.fixedVersion else "affected",
        title=found.title or "", url=found.primaryLink or "",
    )


def primary_key(record: dict[str, Any]) -> str:
    """The image entity, as the normalized event has it."""
    return fallback_key(normalize, record)
