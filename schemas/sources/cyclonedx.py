"""CycloneDX JSON BOMs (spec 1.4 to 1.7) with vulnerabilities (``trivy … --format cyclonedx``, ``grype -o
cyclonedx-json``, ``syft``, Dependency-Track exports), one package per record.

``split`` gives one record per package component (type ``library`` / ``framework`` / ``application`` with a
version or a purl; nested ``components`` included): the BOM with ``components`` narrowed to that component and
``vulnerabilities`` to those whose ``affects[].ref`` names its ``bom-ref``. A vulnerability that affects a
ref no component has gets a record of its own, which the normalizer dead-letters with that reason. A BOM
without ``metadata.timestamp`` is stamped with the time it is received.

Mapping (Vulnerability Finding, activity ``package``): the artifact is ``metadata.component``: ``image`` = its
Trivy ``aquasecurity:trivy:RepoTag`` property, else its ``name`` (plus ``:version`` when that is a tag),
without digest; ``image_digest`` from ``aquasecurity:trivy:RepoDigest``, a ``sha256:`` version or a
``pkg:oci`` purl. Package: ``name`` (``group/name`` when grouped), ``version``, ``purl`` and its type as the
ecosystem. Per vulnerability: ``id``; the severity of the rating from the vulnerability's own ``source``, else
the highest; the highest CVSS v3/v4 ``score`` (else v2); the fixed version from ``affects[].versions`` marked
``unaffected``, else the version ``recommendation`` names; ``analysis.state`` as the status (VEX:
``not_affected``, ``false_positive``, ``resolved``, …). ``report_id`` = ``serialNumber`` + ``version``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from schemas import vulns
from schemas.envelope import Event
from schemas.sources import _scanner as scan
from schemas.sources._common import convert, fail, fallback_key

SOURCE = "cyclonedx"
PACKAGE_TYPES = frozenset({"library", "framework", "application"})
_TOP = ("bomFormat", "specVersion", "serialNumber", "version")
_COMPONENT = ("bom-ref", "type", "group", "name", "version", "purl")
_VULNERABILITY = ("bom-ref", "id", "source", "ratings", "recommendation", "analysis", "affects")
_RECOMMENDED = re.compile(r"\bto versions? ([^\s,;]+)")
_MODERN = ("CVSSv3", "CVSSv31", "CVSSv4")


class Property(msgspec.Struct, kw_only=True):
    name: str = ""
    value: str | None = None


class Component(msgspec.Struct, kw_only=True):
    name: str
    type: str | None = None
    group: str | None = None
    version: str | None = None
    purl: str | None = None
    bom_ref: str | None = msgspec.field(default=None, name="bom-ref")
    properties: list[Property] | None = None


class Named(msgspec.Struct, kw_only=True):
    name: str | None = None


class Rating(msgspec.Struct, kw_only=True):
    source: Named | None = None
    score: float | None = None
    severity: str | None = None
    method: str | None = None


class Version(msgspec.Struct, kw_only=True):
    version: str | None = None
    status: str | None = None


class Affects(msgspec.Struct, kw_only=True):
    ref: str
    versions: list[Version] | None = None


class Analysis(msgspec.Struct, kw_only=True):
    state: str | None = None


class Vulnerability(msgspec.Struct, kw_only=True):
    id: str
    source: Named | None = None
    ratings: list[Rating] | None = None
    recommendation: str | None = None
    analysis: Analysis | None = None
    affects: list[Affects] | None = None


class Metadata(msgspec.Struct, kw_only=True):
    timestamp: str | None = None
    component: Component | None = None


class Bom(msgspec.Struct, kw_only=True):
    bomFormat: str  # noqa: N815 - vendor field names
    specVersion: str  # noqa: N815
    serialNumber: str | None = None  # noqa: N815
    version: int | None = None
    metadata: Metadata | None = None
    components: list[Component] | None = None
    vulnerabilities: list[Vulnerability] | None = None


def is_report(record: dict[str, Any]) -> bool:
    return record.get("bomFormat") == "CycloneDX"


def _components(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Every component, nested ones included, in document order; ``None`` when one is not an object."""
    found: list[dict[str, Any]] = []
    stack = list(reversed(items))
    while stack:
        component = stack.pop()
        nested = scan.only_dicts(component.get("components"))
        if nested is None:
            return None
        found.append(component)
        stack.extend(reversed(nested))
    return found


def _is_package(component: dict[str, Any]) -> bool:
    kind = component.get("type")
    return type(kind) is str and kind in PACKAGE_TYPES and bool(component.get("version") or component.get("purl"))


def split(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per package component (and per vulnerability of an unknown ref); the BOM itself when its
    shape is not CycloneDX's."""
    if not is_report(record):
        return [record]
    listed, found = scan.only_dicts(record.get("components")), scan.only_dicts(record.get("vulnerabilities"))
    components = _components(listed) if listed is not None else None
    if components is None or found is None:
        return [record]
    top = scan.pick(record, _TOP)
    metadata = record.get("metadata")
    metadata = scan.pick(metadata, ("timestamp", "component", "tools")) if type(metadata) is dict else {}
    if type(metadata.get("component")) is dict:
        metadata["component"] = {k: v for k, v in metadata["component"].items() if k != "components"}
    if not metadata.get("timestamp"):
        metadata["timestamp"] = scan.now_iso()
    top["metadata"] = metadata
    by_ref = {str(c["bom-ref"]): c for c in components if c.get("bom-ref")}
    if type(metadata.get("component")) is dict and metadata["component"].get("bom-ref"):
        by_ref.setdefault(str(metadata["component"]["bom-ref"]), metadata["component"])
    affecting: dict[str, list[dict[str, Any]]] = {}
    for vulnerability in found:
        affects = scan.only_dicts(vulnerability.get("affects"))
        if affects is None:
            return [record]
        for affected in affects:
            ref = str(affected.get("ref"))
            affecting.setdefault(ref, []).append({**scan.pick(vulnerability, _VULNERABILITY), "affects": [affected]})
    records = []
    seen: set[str] = set()
    for component in components:
        ref = str(component.get("bom-ref", ""))
        if not _is_package(component) or (ref and ref in seen):
            continue
        seen.add(ref)
        records.append({**top, "components": [scan.pick(component, _COMPONENT)],
                        "vulnerabilities": affecting.get(ref, [])})
    for ref, matched in affecting.items():
        if ref not in seen:  # the BOM's own subject, an OS component or a ref nothing names
            subject = by_ref.get(ref)
            records.append({**top, "components": [scan.pick(subject, _COMPONENT)] if subject else [],
                            "vulnerabilities": matched})
    return records


def _property(component: Component, name: str) -> str:
    return next((p.value or "" for p in component.properties or [] if p.name == name), "")


def _artifact(component: Component) -> tuple[str, str]:
    """(image or path, digest) of the BOM's subject."""
    tag = _property(component, "aquasecurity:trivy:RepoTag")
    version = component.version or ""
    if tag:
        image, digest = scan.strip_digest(tag)
    elif version and not version.startswith("sha256:") and component.type == "container" and ":" not in component.name:
        image, digest = scan.strip_digest(f"{component.name}:{version}")
    else:
        image, digest = scan.strip_digest(component.name)
    repo_digest = scan.strip_digest(_property(component, "aquasecurity:trivy:RepoDigest"))[1]
    purl_digest = (component.purl or "").partition("@")[2].partition("?")[0] if (component.purl or "").startswith(
        "pkg:oci/") else ""
    return image, repo_digest or (version if version.startswith("sha256:") else "") or purl_digest.replace(
        "%3A", ":") or digest


def normalize(record: dict[str, Any], *, prompt_chars: int = 2048) -> Event:
    bom = convert(record, Bom, SOURCE)
    if bom.bomFormat != "CycloneDX":
        raise fail(SOURCE, f"bomFormat {bom.bomFormat[:64]!r} is not CycloneDX")
    metadata = bom.metadata or Metadata()
    components, found = bom.components or [], bom.vulnerabilities or []
    refs = {a.ref for v in found for a in v.affects or []}
    if len(components) != 1 or len(refs) > 1:
        if not components and refs:
            raise fail(SOURCE, f"vulnerability {found[0].id[:64]} affects bom-ref {sorted(refs)[0][:128]!r}, "
                               "which no component of the BOM has")
        raise fail(SOURCE, f"a BOM with {len(components)} components; split it into one record per package "
                           "first (aiwarden publish and ingest do)")
    component = components[0]
    if refs and component.bom_ref not in refs:
        raise fail(SOURCE, f"the vulnerabilities affect {sorted(refs)[0][:128]!r}, not the component's bom-ref")
    if metadata.component is None:
        raise fail(SOURCE, "no `metadata.component`: the BOM does not say which artifact it describes")
    time_ms = scan.scan_time(metadata.timestamp, SOURCE, "$.metadata.timestamp")
    image, digest = _artifact(metadata.component)
    purl = component.purl or ""
    name = f"{component.group}/{component.name}" if component.group else component.name
    return scan.package_event(
        SOURCE, record, time_ms=time_ms, image=image, image_digest=digest, package=name,
        version=component.version or "", purl=purl, ecosystem=scan.ecosystem_of(purl, component.type or ""),
        vulnerabilities=[_vulnerability(v) for v in found], scanner=_scanner(record),
        report_id=f"{bom.serialNumber}/{bom.version or 1}" if bom.serialNumber
        else scan.report_digest(image, metadata.timestamp or ""),
        target=metadata.component.name, artifact=image,
    )


def _scanner(record: dict[str, Any]) -> str:
    """``name version`` of the first tool in ``metadata.tools`` (1.5+: ``{"components": […]}``; 1.4: a list)."""
    tools = (record.get("metadata") or {}).get("tools")
    listed = tools.get("components") if type(tools) is dict else tools
    first = listed[0] if type(listed) is list and listed and type(listed[0]) is dict else {}
    return " ".join(str(first[k]) for k in ("name", "version") if type(first.get(k)) is str and first[k])


def _vulnerability(found: Vulnerability) -> vulns.Vulnerability:
    ratings = found.ratings or []
    own = (found.source.name or "") if found.source else ""
    chosen = [r for r in ratings if r.source and r.source.name == own and r.severity]
    severities = [vulns.severity_of(r.severity or "") for r in (chosen or ratings)]
    severity = max(severities, key=vulns.SEVERITIES.index, default="UNKNOWN")
    modern = scan.highest([r.score for r in ratings if (r.method or "") in _MODERN])
    fixed = [v.version for a in found.affects or [] for v in a.versions or [] if v.status == "unaffected" and v.version]
    if not fixed and found.recommendation:
        named = _RECOMMENDED.search(found.recommendation)
        fixed = [named.group(1).rstrip(".")] if named else []
    return vulns.Vulnerability(
        id=found.id, severity=severity,
        cvss=modern if modern is not None else scan.highest([r.score for r in ratings]),
        fixed_version=", ".join(fixed), status=(found.analysis.state or "") if found.analysis else "",
    )


def primary_key(record: dict[str, Any]) -> str:
    """The image entity, as the normalized event has it."""
    return fallback_key(normalize, record)
