"""Regenerate ``schemas/techniques/mitre.json`` from MITRE's published data (facts only: ids, names,
tactics, URLs, versions).

    python -m schemas.techniques.generate --atlas ATLAS.yaml --atlas-source mitre-atlas/atlas-data@v5.6.1 \\
        --attack enterprise-attack/ --attack-version 18.1 --attack-source mitre/cti@421deacb77

``--atlas`` is ATLAS's ``dist/ATLAS.yaml`` (github.com/mitre-atlas/atlas-data). ``--attack`` is ATT&CK
Enterprise (which holds the Containers and IaaS platforms) as a STIX bundle (``enterprise-attack-18.1.json``
of github.com/mitre-attack/attack-stix-data) or a folder of per-object bundles (``enterprise-attack/`` of
github.com/mitre/cti); ``--attack-version`` is needed when the data carries no ``x-mitre-collection``.
Revoked and deprecated techniques are left out, so a detector naming one fails ``tests/unit/test_techniques.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml

TABLE = Path(__file__).with_name("mitre.json")
ATLAS_URL = "https://atlas.mitre.org"


def atlas_table(path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """ATLAS tactics and techniques from ``ATLAS.yaml``; also its version."""
    data = yaml.safe_load(path.read_text())
    matrix = next(m for m in data["matrices"] if m["id"] == "ATLAS")
    tactics = {
        t["id"]: {"name": t["name"], "url": f"{ATLAS_URL}/tactics/{t['id']}", "framework": "atlas"}
        for t in matrix["tactics"]
    }
    by_id = {t["id"]: t for t in matrix["techniques"]}
    techniques = {}
    for tid, tech in by_id.items():
        parent = tech.get("subtechnique-of")
        entry: dict[str, Any] = {
            "name": tech["name"],
            "tactics": list((by_id[parent] if parent else tech).get("tactics", [])),
            "url": f"{ATLAS_URL}/techniques/{tid}",
            "framework": "atlas",
        }
        if parent:
            entry["parent"] = parent
        techniques[tid] = entry
    return tactics, techniques, str(data["version"])


def _stix_objects(path: Path) -> Iterator[dict[str, Any]]:
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    for file in files:
        data = orjson.loads(file.read_bytes())
        yield from data.get("objects", [data])


def _mitre_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in obj.get("external_references", []) if r.get("source_name") == "mitre-attack"), None)


def attack_table(path: Path, version: str | None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """ATT&CK Enterprise tactics and techniques from STIX; also the ATT&CK version."""
    objects = [o for o in _stix_objects(path) if not o.get("revoked") and not o.get("x_mitre_deprecated")]
    collection = next((o for o in objects if o.get("type") == "x-mitre-collection"), None)
    found = collection.get("x_mitre_version") if collection else None
    if not (version or found):
        msg = f"{path}: no x-mitre-collection in the data; pass --attack-version"
        raise SystemExit(msg)
    shortnames: dict[str, str] = {}
    tactics = {}
    for obj in objects:
        ref = _mitre_ref(obj)
        if obj.get("type") == "x-mitre-tactic" and ref:
            shortnames[obj["x_mitre_shortname"]] = ref["external_id"]
            tactics[ref["external_id"]] = {
                "name": obj["name"], "shortname": obj["x_mitre_shortname"], "url": ref["url"], "framework": "attack",
            }
    techniques = {}
    for obj in objects:
        ref = _mitre_ref(obj)
        if obj.get("type") != "attack-pattern" or not ref:
            continue
        tid = ref["external_id"]
        phases = [p["phase_name"] for p in obj.get("kill_chain_phases", []) if p["kill_chain_name"] == "mitre-attack"]
        entry: dict[str, Any] = {
            "name": obj["name"],
            "tactics": [shortnames[p] for p in phases if p in shortnames],
            "url": ref["url"],
            "framework": "attack",
        }
        if obj.get("x_mitre_is_subtechnique"):
            entry["parent"] = tid.split(".")[0]
        techniques[tid] = entry
    return tactics, techniques, str(version or found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atlas", type=Path, required=True)
    parser.add_argument("--atlas-source", required=True, help="where ATLAS.yaml came from (repo@tag)")
    parser.add_argument("--attack", type=Path, required=True)
    parser.add_argument("--attack-version")
    parser.add_argument("--attack-source", required=True, help="where the STIX data came from (repo@commit)")
    parser.add_argument("--out", type=Path, default=TABLE)
    args = parser.parse_args(argv)
    atlas_tactics, atlas_techniques, atlas_version = atlas_table(args.atlas)
    attack_tactics, attack_techniques, attack_version = attack_table(args.attack, args.attack_version)
    table = {
        "generated_by": "python -m schemas.techniques.generate (see its docstring)",
        "sources": {
            "atlas": {"version": atlas_version, "data": args.atlas_source, "url": ATLAS_URL},
            "attack": {"version": attack_version, "domain": "enterprise-attack", "data": args.attack_source,
                       "url": "https://attack.mitre.org"},
        },
        "tactics": dict(sorted({**atlas_tactics, **attack_tactics}.items())),
        "techniques": dict(sorted({**atlas_techniques, **attack_techniques}.items())),
    }
    args.out.write_bytes(orjson.dumps(table, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{args.out}: {len(table['tactics'])} tactics, {len(table['techniques'])} techniques")  # noqa: T201


if __name__ == "__main__":
    main()
