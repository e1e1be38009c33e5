"""`aiwarden inventory`: the AI inventory (AIBOM) from ClickHouse, as a table or CycloneDX 1.6."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from detectors.inventory import InventoryItem

COLUMNS = (
    "asset_id", "kind", "name", "namespace", "image", "runtimes", "models", "principals",
    "first_seen", "last_seen", "sanctioned", "public_exposure", "attributes",
)


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
