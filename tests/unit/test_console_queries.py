"""The console's workload view: table rows (one per package and vulnerability) folded into packages."""

from __future__ import annotations

from typing import Any

import pytest

from streams.console.queries import packages_of

pytestmark = pytest.mark.unit


def row(package: str, vulnerability_id: str = "", **fields: Any) -> dict[str, Any]:
    base = {"package": package, "package_version": "1.0", "purl": f"pkg:pypi/{package}@1.0", "ecosystem": "pypi",
            "in_use": 0, "in_use_first_seen": None, "in_use_last_seen": None, "exposed": 0,
            "vulnerability_id": vulnerability_id, "severity": "HIGH" if vulnerability_id else "UNKNOWN", "cvss": None,
            "fixed_version": "", "priority": "none", "priority_score": 0, "reasons": []}
    return {**base, **fields}


def test_packages_in_use_first_each_with_its_vulnerabilities_by_priority() -> None:
    rows = [
        row("torch", "CVE-3", priority_score=80),  # not in use: after every package in use, however high
        row("vllm", "CVE-1", in_use=1, in_use_first_seen=2_000, in_use_last_seen=5_000, priority_score=40),
        row("vllm", "CVE-2", in_use=1, in_use_first_seen=1_000, in_use_last_seen=4_000, priority_score=90,
            exposed=1),
        row("transformers", in_use=1, in_use_first_seen=3_000, in_use_last_seen=3_000),
    ]
    packages = packages_of(rows)
    assert [p["package"] for p in packages] == ["vllm", "transformers", "torch"]
    vllm = packages[0]
    assert [v["vulnerability_id"] for v in vllm["vulnerabilities"]] == ["CVE-2", "CVE-1"]
    assert (vllm["in_use"], vllm["exposed"], vllm["priority_score"]) == (True, True, 90)
    assert (vllm["in_use_first_seen"], vllm["in_use_last_seen"]) == (1_000, 5_000)
    assert packages[1]["vulnerabilities"] == [] and packages[2]["in_use"] is False
    assert packages_of([]) == []
