"""Trivy JSON reports (``trivy image|fs|repo|rootfs --format json``, ``SchemaVersion`` 2), one package per record.

``split`` turns a report into one record per (result target, package): the report with ``Results`` narrowed to
that target, that package (``Packages``, present with ``--list-all-pkgs``, the default for JSON since Trivy 0.50)
and the vulnerabilities found in it; a vulnerable package the report does not list is made from its
vulnerabilities (``PkgName``, ``InstalledVersion``, ``PkgIdentifier``, ``PkgPath``). Vulnerabilities match
packages by ``PkgIdentifier.UID``, else by name, version and path. Secret, licence and misconfiguration
results carry no packages and give no record. A report without ``CreatedAt`` (Trivy before 0.49) is stamped
with the time it is received.

Mapping (Vulnerability Finding, activity ``package``): ``image`` = the first ``Metadata.RepoTags``, else
``Metadata.Reference`` / ``ArtifactName`` (the scanned path for ``fs`` / ``repo``), without digest;
``image_digest`` from the first ``Metadata.RepoDigests``; ``package_version`` = ``[Epoch:]Version[-Release]``
as Trivy prints ``InstalledVersion``; ``package_paths`` = ``FilePath`` (else the vulnerabilities' ``PkgPath``);
``ecosystem`` = the purl type, else the result ``Type``; per vulnerability: ``Severity``, the highest CVSS
``V3Score`` (else ``V2Score``) of any source, ``FixedVersion``, ``Status``, ``Title``, ``PrimaryURL``.
``target`` = the result's ``Target``; ``scanner`` = ``trivy <Trivy.Version>``; ``report_id`` = ``ReportID``,
else a digest of the artifact and the time.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import vulns
from schemas.envelope import Event
from schemas.sources import _scanner as scan
from schemas.sources._common import convert, fail, fallback_key

SOURCE = "trivy"
_TOP = ("SchemaVersion", "Trivy", "ReportID", "CreatedAt", "ArtifactID", "ArtifactName", "ArtifactType")
_METADATA = ("OS", "ImageID", "RepoTags", "RepoDigests", "Reference")
_RESULT = ("Target", "Class", "Type")
_VULNERABILITY = ("VulnerabilityID", "PkgID", "PkgName", "PkgPath", "PkgIdentifier", "InstalledVersion",
                  "FixedVersion", "Status", "Severity", "SeveritySource", "CVSS", "Title", "PrimaryURL")


class Identifier(msgspec.Struct, kw_only=True):
    PURL: str | None = None  # noqa: N815 - vendor field names
    UID: str | None = None  # noqa: N815


class Package(msgspec.Struct, kw_only=True):
    Name: str  # noqa: N815
    Version: str | None = None  # noqa: N815
    Release: str | None = None  # noqa: N815
    Epoch: int | None = None  # noqa: N815
    Identifier: Identifier | None = None  # noqa: N815
    FilePath: str | None = None  # noqa: N815
    SrcName: str | None = None  # noqa: N815


class Vulnerability(msgspec.Struct, kw_only=True):
    VulnerabilityID: str  # noqa: N815
    PkgName: str  # noqa: N815
    InstalledVersion: str | None = None  # noqa: N815
    PkgPath: str | None = None  # noqa: N815
    PkgIdentifier: Identifier | None = None  # noqa: N815
    FixedVersion: str | None = None  # noqa: N815
    Status: str | None = None  # noqa: N815
    Severity: str | None = None  # noqa: N815
    CVSS: dict[str, scan.CvssScores] | None = None  # noqa: N815
    Title: str | None = None  # noqa: N815
    PrimaryURL: str | None = None  # noqa: N815


class Result(msgspec.Struct, kw_only=True):
    Target: str  # noqa: N815
    Class: str | None = None  # noqa: N815
    Type: str | None = None  # noqa: N815
    Packages: list[Package] | None = None  # noqa: N815
    Vulnerabilities: list[Vulnerability] | None = None  # noqa: N815


class Metadata(msgspec.Struct, kw_only=True):
    RepoTags: list[str] | None = None  # noqa: N815
    RepoDigests: list[str] | None = None  # noqa: N815
    Reference: str | None = None  # noqa: N815
    ImageID: str | None = None  # noqa: N815


class ScannerVersion(msgspec.Struct, kw_only=True):
    Version: str | None = None  # noqa: N815


class Report(msgspec.Struct, kw_only=True):
    SchemaVersion: int  # noqa: N815
    ArtifactName: str  # noqa: N815
    ArtifactType: str | None = None  # noqa: N815
    CreatedAt: str | None = None  # noqa: N815
    ReportID: str | None = None  # noqa: N815
    Trivy: ScannerVersion | None = None  # noqa: N815
    Metadata: Metadata | None = None  # noqa: N815
    Results: list[Result] | None = None  # noqa: N815


def is_report(record: dict[str, Any]) -> bool:
    return "SchemaVersion" in record and ("Results" in record or "ArtifactName" in record)


def _version(package: dict[str, Any]) -> str:
    version, release, epoch = package.get("Version") or "", package.get("Release") or "", package.get("Epoch")
    full = f"{version}-{release}" if release else version
    return f"{epoch}:{full}" if epoch else full


def _package_key(uid: object, name: object, version: object, path: object) -> bytes:
    return scan.group_key("uid", uid) if uid else scan.group_key("name", name, version, path or "")


def split(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per (result target, package); the report itself when its shape is not Trivy's."""
    if not is_report(record):
        return [record]
    results = scan.only_dicts(record.get("Results"))
    if results is None:
        return [record]
    top = scan.pick(record, _TOP)
    if not top.get("CreatedAt"):
        top["CreatedAt"] = scan.now_iso()
    metadata = record.get("Metadata")
    if type(metadata) is dict:
        top["Metadata"] = scan.pick(metadata, _METADATA)
    records = []
    for result in results:
        packages, found = scan.only_dicts(result.get("Packages")), scan.only_dicts(result.get("Vulnerabilities"))
        if packages is None or found is None:
            return [record]
        groups: dict[bytes, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for package in packages:
            uid = (package.get("Identifier") or {}).get("UID") if type(package.get("Identifier")) is dict else None
            key = _package_key(uid, package.get("Name"), _version(package), package.get("FilePath"))
            groups.setdefault(key, (package, []))
        for vulnerability in found:
            identifier = vulnerability.get("PkgIdentifier")
            uid = identifier.get("UID") if type(identifier) is dict else None
            name, version, path = (vulnerability.get(k) for k in ("PkgName", "InstalledVersion", "PkgPath"))
            key = _package_key(uid, name, version, path)
            if key not in groups:  # the same package listed without a UID, or not listed at all
                key = next((k for k, (p, _) in groups.items() if p.get("Name") == name and _version(p) == version
                            and (not path or p.get("FilePath") in (None, "", path))), key)
            if key not in groups:
                made = {"Name": name, "Version": version, "Identifier": identifier, "FilePath": path}
                groups[key] = ({k: v for k, v in made.items() if v is not None}, [])
            groups[key][1].append(scan.pick(vulnerability, _VULNERABILITY))
        shell = scan.pick(result, _RESULT)
        for package, matched in groups.values():
            records.append({**top, "Results": [{**shell, "Packages": [package], "Vulnerabilities": matched}]})
    return records


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    report = convert(record, Report, SOURCE)
    if report.SchemaVersion != 2:
        raise fail(SOURCE, f"SchemaVersion {report.SchemaVersion} is not supported (Trivy JSON SchemaVersion 2)")
    packages = [(result, package) for result in report.Results or [] for package in result.Packages or []]
    if len(packages) != 1:
        raise fail(SOURCE, f"a report with {len(packages)} packages; split it into one record per package first"
                   " (aiwarden publish and ingest do)")
    result, package = packages[0]
    time_ms = scan.scan_time(report.CreatedAt, SOURCE, "$.CreatedAt")
    metadata = report.Metadata or Metadata()
    tags, digests = metadata.RepoTags or [], metadata.RepoDigests or []
    image, digest = scan.strip_digest(tags[0] if tags else metadata.Reference or report.ArtifactName)
    if digests:
        digest = scan.strip_digest(digests[0])[1] or digest
    version = _version(msgspec.to_builtins(package))
    purl = (package.Identifier.PURL or "") if package.Identifier else ""
    found = result.Vulnerabilities or []
    paths = [package.FilePath] if package.FilePath else sorted({v.PkgPath for v in found if v.PkgPath})
    scanner_version = report.Trivy.Version if report.Trivy and report.Trivy.Version else ""
    report_id = report.ReportID or scan.report_digest(report.ArtifactName, report.CreatedAt or "")
    extra = {"source_package": package.SrcName} if package.SrcName and package.SrcName != package.Name else {}
    return scan.package_event(
        SOURCE, record, time_ms=time_ms, image=image, image_digest=digest, package=package.Name, version=version,
        purl=purl, ecosystem=scan.ecosystem_of(purl, result.Type or ""), paths=paths,
        vulnerabilities=[_vulnerability(v) for v in found], scanner=f"trivy {scanner_version}".strip(),
        report_id=report_id, target=result.Target, artifact=report.ArtifactName, extra=extra,
    )


def _vulnerability(found: Vulnerability) -> vulns.Vulnerability:
    scores = (found.CVSS or {}).values()
    v3 = scan.highest([s.V3Score for s in scores] + [s.V40Score for s in scores])
    return vulns.Vulnerability(
        id=found.VulnerabilityID, severity=vulns.severity_of(found.Severity or ""),
        cvss=v3 if v3 is not None else scan.highest([s.V2Score for s in scores]),
        fixed_version=found.FixedVersion or "", status=found.Status or "", title=found.Title or "",
        url=found.PrimaryURL or "",
    )


def primary_key(record: dict[str, Any]) -> str:
    """The image entity, as the normalized event has it."""
    return fallback_key(normalize, record)
