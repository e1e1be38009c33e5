"""`aiwarden inventory`: the AI inventory (AIBOM) from ClickHouse, as a table or CycloneDX 1.6, with each AI
workload's packages and their vulnerabilities (the ``vulnerabilities`` table)."""

from __future__ import annotations

from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from detectors.inventory import InventoryItem

COLUMNS = (
    "asset_id", "kind", "name", "namespace", "image", "runtimes", "models", "principals",
    "first_seen", "last_seen", "sanctioned", "public_exposure", "attributes",
)
PACKAGE_COLUMNS = (
    "workload", "package", "package_version", "purl", "ecosystem", "ai_package", "in_use", "in_use_first_seen",
    "in_use_last_seen", "vulnerability_id", "severity", "cvss", "fixed_version", "priority", "priority_score",
    "reasons",
)


@dataclass
class PackageFinding:
    """A row of the ``vulnerabilities`` table: a package of a workload and one of its vulnerabilities
    (``vulnerability_id`` '' for a package with none)."""

    workload: str
    package: str
    package_version: str
    purl: str = ""
    ecosystem: str = ""
    ai_package: bool = False
    in_use: bool = False
    in_use_first_seen: int | None = None
    in_use_last_seen: int | None = None
    vulnerability_id: str = ""
    severity: str = ""
    cvss: float | None = None
    fixed_version: str = ""
    priority: str = ""
    priority_score: int = 0
    reasons: list[str] = field(default_factory=list)


def load_inventory(client: Client, database: str) -> list[InventoryItem]:
    """Every asset's latest version (``FINAL``), riskiest first: exposed, then unsanctioned."""
    rows = client.query(
        f"SELECT {', '.join(COLUMNS)} FROM {database}.inventory FINAL "  # noqa: S608 - names from settings
        "ORDER BY public_exposure DESC, sanctioned ASC, kind, asset_id"
    ).named_results()
    items = []
    for row in rows:
        attributes = row.pop("attributes")
        items.append(
            InventoryItem(
                **{k: v for k, v in row.items()},
                gpu=attributes.get("gpu") == "true",
                callers=int(attributes.get("callers", "0") or 0),
            )
        )
    for item in items:
        item.sanctioned = bool(item.sanctioned)
        item.public_exposure = bool(item.public_exposure)
    return items


def load_packages(client: Client, database: str, workloads: list[str]) -> list[PackageFinding]:
    """The packages of ``workloads`` worth listing: AI packages, and any package with a vulnerability; in use
    first, then by priority."""
    if not workloads:
        return []
    rows = client.query(
        f"SELECT {', '.join(PACKAGE_COLUMNS)} FROM {database}.vulnerabilities FINAL "  # noqa: S608
        "WHERE workload IN {workloads:Array(String)} AND (ai_package = 1 OR vulnerability_id != '') "
        "ORDER BY workload, in_use DESC, priority_score DESC, package, vulnerability_id",
        parameters={"workloads": sorted(set(workloads))},
    ).named_results()
    return [
        PackageFinding(**{**row, "ai_package": bool(row["ai_package"]), "in_use": bool(row["in_use"]),
                          "cvss": round(row["cvss"], 1) if row["cvss"] is not None else None})
        for row in rows
    ]
