"""The AI inventory as a CycloneDX 1.6 BOM (the AIBOM of ``aiwarden inventory --format cyclonedx``), built
with the CycloneDX project's own library (``cyclonedx-python-lib``) and checked against the 1.6 JSON schema
by its validator.

Workloads are ``container`` components (``application`` when no image is known), models invoked or loaded
are ``machine-learning-model`` components, API keys are ``application`` components (the client behind the
key), cloud AI services are ``services``. ``dependencies`` link workloads, keys and services to the models they
load or call. Namespace, sanctioned status, exposure, runtimes, GPU and principals are ``aiwarden:*``
properties. The serial number is a UUID derived from the content and the timestamp is the latest
``last_seen``, so the same inventory gives the same BOM.

Packages and vulnerabilities: each AI workload's packages (from the ``vulnerabilities`` table: its AI packages and
every package with a known vulnerability) are ``library`` components (bom-ref ``<workload>#<purl>``) its
workload depends on, with ``aiwarden:in_use`` and when the runtime first and last showed them in use; their
vulnerabilities are the BOM's ``vulnerabilities``, each with a rating (severity, CVSS score), the fix to take,
the priority aiwarden gave it (the highest over the workloads it affects) and ``affects`` refs to those packages.

Model cards: the library does not model ``modelCard`` yet (11.x), so it is added to the JSON the library
wrote, and the whole document is then validated. A model's card holds what aiwarden observed: the
principals and keys that invoke it (``considerations.users``; the count of distinct callers is the
component's ``aiwarden:callers``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from cyclonedx.model import Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.model.service import Service
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityRating,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
)
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from detectors.inventory import InventoryItem
from schemas import entities as ent
from streams.inventory_report import PackageFinding

SPEC_VERSION = "1.6"
_BOM_NAMESPACE = uuid.UUID("6f1b9c1e-8d7a-4e52-9a43-5c2b0d7e1f00")


class BomError(ValueError):
    """The BOM does not validate against the CycloneDX 1.6 schema (the validator's message)."""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _props(pairs: list[tuple[str, object]]) -> list[Property]:
    out = []
    for name, value in pairs:
        if value in ("", None, []):
            continue
        if isinstance(value, list):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        out.append(Property(name=f"aiwarden:{name}", value=text))
    return out


def _common(item: InventoryItem) -> list[Property]:
    return _props([
        ("kind", item.kind), ("namespace", item.namespace), ("sanctioned", item.sanctioned),
        ("public_exposure", item.public_exposure), ("runtimes", item.runtimes), ("gpu", item.gpu if item.gpu else ""),
        ("principals", item.principals), ("callers", item.callers if item.callers else ""),
        ("first_seen", _iso(item.first_seen) if item.first_seen else ""),
        ("last_seen", _iso(item.last_seen) if item.last_seen else ""),
        ("image", item.image),
    ])


def _model_card(item: InventoryItem) -> dict[str, Any] | None:
    """What aiwarden observed about a model, as a CycloneDX model card (``None`` when it observed nothing)."""
    if not item.principals:
        return None
    return {"considerations": {"users": list(item.principals)}}


def _purl(text: str) -> PackageURL | None:
    try:
        return PackageURL.from_string(text) if text else None
    except ValueError:
        return None


def package_components(packages: Sequence[PackageFinding], workloads: set[str]
                       ) -> tuple[dict[str, Component], dict[str, list[str]], list[Vulnerability]]:
    """The package components of ``workloads`` (by bom-ref), each workload's package refs, and the
    vulnerabilities with their ``affects`` refs."""
    rows: dict[str, list[PackageFinding]] = {}
    for found in packages:
        if found.workload in workloads:
            ref = f"{found.workload}#{found.purl or f'pkg:{found.ecosystem}/{found.package}@{found.package_version}'}"
            rows.setdefault(ref, []).append(found)
    components: dict[str, Component] = {}
    depends: dict[str, list[str]] = {}
    affected: dict[str, list[tuple[str, PackageFinding]]] = {}
    for ref, found_rows in sorted(rows.items()):
        first = found_rows[0]
        first_seen = min((f.in_use_first_seen for f in found_rows if f.in_use_first_seen), default=None)
        last_seen = max((f.in_use_last_seen for f in found_rows if f.in_use_last_seen), default=None)
        components[ref] = Component(
            type=ComponentType.LIBRARY, name=first.package, version=first.package_version or None, bom_ref=ref,
            purl=_purl(first.purl), properties=_props([
                ("ecosystem", first.ecosystem), ("ai_package", any(f.ai_package for f in found_rows)),
                ("in_use", any(f.in_use for f in found_rows)),
                ("in_use_first_seen", _iso(first_seen) if first_seen else ""),
                ("in_use_last_seen", _iso(last_seen) if last_seen else ""),
            ]))
        depends.setdefault(first.workload, []).append(ref)
        for found in found_rows:
            if found.vulnerability_id:
                affected.setdefault(found.vulnerability_id, []).append((ref, found))
    vulnerabilities = []
    for vulnerability_id, hits in sorted(affected.items()):
        top = max((f for _, f in hits), key=lambda f: (f.priority_score, f.workload))
        severity = top.severity.lower() if top.severity.lower() in {s.value for s in VulnerabilitySeverity} \
            else "unknown"
        fixes = sorted({f"{f.package} {f.fixed_version}" for _, f in hits if f.fixed_version})
        vulnerabilities.append(Vulnerability(
            bom_ref=f"vulnerability:{vulnerability_id}", id=vulnerability_id,
            ratings=[VulnerabilityRating(
                severity=VulnerabilitySeverity(severity),
                score=Decimal(str(top.cvss)) if top.cvss is not None else None,
                method=VulnerabilityScoreSource.OTHER if top.cvss is not None else None)],
            recommendation=f"Upgrade to {', '.join(fixes)}" if fixes else None,
            affects=[BomTarget(ref=ref) for ref in sorted({ref for ref, _ in hits})],
            properties=_props([("priority", top.priority), ("priority_score", top.priority_score),
                               ("reasons", top.reasons),
                               ("in_use_workloads", sorted({f.workload for _, f in hits if f.in_use}))]),
        ))
    return components, depends, vulnerabilities


def build_bom(items: list[InventoryItem], packages: Sequence[PackageFinding] = ()
              ) -> tuple[Bom, dict[str, dict[str, Any]]]:
    """The library's ``Bom`` of the inventory (with the workloads' packages and their vulnerabilities), and
    the model cards to add (by bom-ref)."""
    components: dict[str, Component] = {}
    services: list[Service] = []
    depends: dict[str, list[str]] = {}
    cards: dict[str, dict[str, Any]] = {}
    model_refs: dict[str, str] = {}

    def model_ref(name: str) -> str:
        return model_refs.setdefault(name, ent.model(name))

    for item in sorted(items, key=lambda i: i.asset_id):
        if item.kind == "cloud_service":
            provider, _, name = item.name.partition("/")
            services.append(Service(
                name=name or item.name, bom_ref=item.asset_id, properties=_common(item),
                provider=OrganizationalEntity(name=provider.upper() if provider == "aws" else provider),
            ))
        elif item.kind == "model":
            model_refs.setdefault(item.name, item.asset_id)
            components[item.asset_id] = Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=item.name,
                                                  bom_ref=item.asset_id, properties=_common(item))
            card = _model_card(item)
            if card is not None:
                cards[item.asset_id] = card
        else:
            version = None
            if item.image:
                _, sep, tag = item.image.rpartition(":")
                version = tag if sep and "/" not in tag else None
            kind = ComponentType.CONTAINER if item.kind == "workload" and item.image else ComponentType.APPLICATION
            components[item.asset_id] = Component(type=kind, name=item.name, bom_ref=item.asset_id, version=version,
                                                  properties=_common(item))
        if item.models:
            depends[item.asset_id] = sorted({model_ref(m) for m in item.models})
    for name, ref in sorted(model_refs.items()):
        if ref not in components:  # loaded or called, never seen as an asset of its own
            components[ref] = Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=name, bom_ref=ref,
                                        properties=[Property(name="aiwarden:kind", value="model")])
    workloads = {i.asset_id for i in items if i.kind == "workload"}
    libraries, package_refs, vulnerabilities = package_components(packages, workloads)
    components.update(libraries)
    for workload, refs in package_refs.items():
        depends[workload] = [*depends.get(workload, []), *refs]
    digest = hashlib.sha256(orjson.dumps(
        [[i.to_dict() for i in sorted(items, key=lambda i: i.asset_id)],
         sorted((asdict(p) for p in packages), key=lambda p: (p["workload"], p["package"], p["vulnerability_id"]))],
        option=orjson.OPT_SORT_KEYS,
    )).hexdigest()
    latest = max((i.last_seen for i in items), default=0)
    bom = Bom(
        serial_number=uuid.uuid5(_BOM_NAMESPACE, digest), version=1, components=components.values(),
        services=services, vulnerabilities=vulnerabilities,
        metadata=BomMetaData(
            timestamp=datetime.fromtimestamp(latest / 1000, tz=UTC),
            tools=ToolRepository(components=[Component(type=ComponentType.APPLICATION, name="aiwarden",
                                                       group="aiwarden")]),
            properties=[Property(name="aiwarden:assets", value=str(len(items)))],
        ),
    )
    by_ref = {**{str(c.bom_ref): c for c in components.values()}, **{str(s.bom_ref): s for s in services}}
    for ref, refs in sorted(depends.items()):
        bom.register_dependency(by_ref[ref], [by_ref[r] for r in refs])
    return bom, cards


def validate_json(text: str) -> None:
    """Raise ``BomError`` unless ``text`` is a valid CycloneDX 1.6 JSON BOM (the library's strict validator)."""
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        msg = f"CycloneDX {SPEC_VERSION} schema: {error}"
        raise BomError(msg)


def to_cyclonedx(items: list[InventoryItem], packages: Sequence[PackageFinding] = ()) -> dict[str, Any]:
    """The inventory as a CycloneDX 1.6 BOM (a JSON object), model cards, the workloads' packages and their
    vulnerabilities included, validated."""
    bom, cards = build_bom(items, packages)
    document: dict[str, Any] = orjson.loads(JsonV1Dot6(bom).output_as_string())
    for component in document.get("components", []):
        card = cards.get(component.get("bom-ref", ""))
        if card is not None:
            component["modelCard"] = {"bom-ref": f"{component['bom-ref']}#model-card", **card}
    validate_json(orjson.dumps(document).decode())
    return document
