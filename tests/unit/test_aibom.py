"""The AIBOM: the inventory as CycloneDX 1.6 through cyclonedx-python-lib, validated by its 1.6 schema validator."""

from __future__ import annotations

import orjson
import pytest

from detectors.inventory import Inventory, InventoryItem
from schemas import entities as ent
from streams.aibom import BomError, to_cyclonedx, validate_json
from streams.inventory_report import PackageFinding
from tests.contract.events import mixed_stream, runtime
from tests.unit.test_inventory import CONFIG, SHARD, observe_all

pytestmark = pytest.mark.unit


def inventory_items() -> list[InventoryItem]:
    events = mixed_stream(seed=5, n=1500) + [runtime("file_open", file_path=SHARD, seq=7)]
    _, states = observe_all(events)
    inventory = Inventory(CONFIG)
    return [inventory.item(a, s) for a, s in states.items()]


def test_cyclonedx_bom() -> None:
    items = inventory_items()
    bom = to_cyclonedx(items)
    validate_json(orjson.dumps(bom).decode())  # the document as written validates against CycloneDX 1.6
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6" and bom["version"] == 1
    assert bom["serialNumber"].startswith("urn:uuid:")
    assert to_cyclonedx(list(reversed(items))) == bom  # content-derived serial and timestamp: same BOM
    types = {c["type"] for c in bom["components"]}
    assert "machine-learning-model" in types and "container" in types
    refs = {c["bom-ref"] for c in bom["components"]} | {s["bom-ref"] for s in bom["services"]}
    assert len(refs) == len(bom["components"]) + len(bom["services"])
    for dep in bom["dependencies"]:
        assert dep["ref"] in refs and set(dep.get("dependsOn", [])) <= refs
    assert any(dep.get("dependsOn") for dep in bom["dependencies"])
    workload = next(c for c in bom["components"] if c["bom-ref"] == ent.pod("ml-prod", "vllm-0"))
    props = {p["name"]: p["value"] for p in workload["properties"]}
    assert props["aiwarden:namespace"] == "ml-prod" and props["aiwarden:sanctioned"] == "true"
    assert props["aiwarden:public_exposure"] == "false"
    empty = to_cyclonedx([])
    assert empty.get("components", []) == [] and empty["serialNumber"] != bom["serialNumber"]


def test_invoked_models_carry_a_model_card_of_their_callers() -> None:
    items = inventory_items()
    bom = to_cyclonedx(items)
    invoked = {i.asset_id: i for i in items if i.kind == "model" and i.principals}
    assert invoked, "the mixed stream invokes models"
    cards = {c["bom-ref"]: c["modelCard"] for c in bom["components"] if "modelCard" in c}
    assert set(cards) == set(invoked)
    for ref, card in cards.items():
        assert card["considerations"]["users"] == invoked[ref].principals
    loaded = [c for c in bom["components"] if c["type"] == "machine-learning-model" and c["bom-ref"] not in cards]
    assert loaded, "models only loaded by workloads have no card (nothing known about their use)"


def test_the_validator_refuses_what_cyclonedx_16_does_not_define() -> None:
    bom = to_cyclonedx(inventory_items())
    card = next(c for c in bom["components"] if "modelCard" in c)
    card["modelCard"]["colour"] = "red"
    with pytest.raises(BomError, match="CycloneDX 1.6"):
        validate_json(orjson.dumps(bom).decode())
    with pytest.raises(BomError):
        validate_json(orjson.dumps({**to_cyclonedx([]), "specVersion": "1.6", "components": [{"name": "x"}]}).decode())


def test_ai_workloads_list_their_packages_and_vulnerabilities() -> None:
    items = inventory_items()
    workload = ent.pod("ml-prod", "vllm-0")
    assert workload in {i.asset_id for i in items}
    packages = [
        PackageFinding(workload, "vllm", "0.5.0", "pkg:pypi/vllm@0.5.0", "pypi", ai_package=True, in_use=True,
                       in_use_first_seen=1_764_000_000_000, in_use_last_seen=1_764_000_600_000,
                       vulnerability_id="CVE-2099-0001", severity="CRITICAL", cvss=9.8, fixed_version="0.5.1",
                       priority="critical", priority_score=97, reasons=["in use", "publicly exposed"]),
        PackageFinding(workload, "vllm", "0.5.0", "pkg:pypi/vllm@0.5.0", "pypi", ai_package=True, in_use=True,
                       vulnerability_id="CVE-2099-0002", severity="MEDIUM", priority="high", priority_score=60),
        PackageFinding(workload, "torch", "2.1.0", "pkg:pypi/torch@2.1.0", "pypi", ai_package=True),
        PackageFinding("pod:elsewhere/not-ai", "vllm", "0.5.0", "pkg:pypi/vllm@0.5.0", "pypi", ai_package=True,
                       vulnerability_id="CVE-2099-0001", severity="CRITICAL"),  # not an inventory workload
    ]
    bom = to_cyclonedx(items, packages)  # validated against CycloneDX 1.6 inside
    libraries = {c["bom-ref"]: c for c in bom["components"] if c["type"] == "library"}
    vllm_ref, torch_ref = f"{workload}#pkg:pypi/vllm@0.5.0", f"{workload}#pkg:pypi/torch@2.1.0"
    assert set(libraries) == {vllm_ref, torch_ref}
    vllm = libraries[vllm_ref]
    assert (vllm["name"], vllm["version"], vllm["purl"]) == ("vllm", "0.5.0", "pkg:pypi/vllm@0.5.0")
    props = {p["name"]: p["value"] for p in vllm["properties"]}
    assert props["aiwarden:in_use"] == "true" and props["aiwarden:in_use_first_seen"] == "2025-11-24T16:00:00Z"
    depends = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert {vllm_ref, torch_ref} <= depends[workload]
    found = {v["id"]: v for v in bom["vulnerabilities"]}
    assert set(found) == {"CVE-2099-0001", "CVE-2099-0002"}
    critical = found["CVE-2099-0001"]
    assert critical["affects"] == [{"ref": vllm_ref}]
    assert critical["ratings"] == [{"score": 9.8, "severity": "critical", "method": "other"}]
    assert critical["recommendation"] == "Upgrade to vllm 0.5.1"
    vuln_props = {p["name"]: p["value"] for p in critical["properties"]}
    assert vuln_props["aiwarden:priority"] == "critical" and vuln_props["aiwarden:in_use_workloads"] == workload
    assert to_cyclonedx(items, list(reversed(packages))) == bom  # the same content gives the same BOM
    assert to_cyclonedx(items)["serialNumber"] != bom["serialNumber"]
