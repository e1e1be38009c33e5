"""Scanner results in the envelope: what a vulnerability scanner reports of one package in one artifact.

A scanner report (Trivy JSON, Trivy Operator ``VulnerabilityReport``, Grype JSON, a CycloneDX BOM with
vulnerabilities) is split into one record per (artifact, package); each becomes one ``Event`` of class
``VULNERABILITY_FINDING`` (OCSF 2002), activity ``package``:

- ``image`` = the artifact's image reference without digest (``vllm/vllm-openai:v0.5.0``), or the scanned
  path for filesystem scans; ``entity_id`` = ``image:<image>``; ``namespace`` / ``pod`` when the scanner knows
  the workload (Trivy Operator), with their entities;
- ``extra`` (strings, like every ``extra``): the keys below; ``vulnerabilities`` is a JSON array of
  ``Vulnerability`` objects, ``package_paths`` a JSON array of the package's files or directories as the
  scanner reports them (``FilePath``, locations), both ``[]`` when there are none.

>>> extra = package_extra(package="vllm", version="0.5.0", purl="pkg:pypi/vllm@0.5.0", ecosystem="pypi",
...                       vulnerabilities=[Vulnerability("CVE-2024-0001", "CRITICAL", 9.8, "0.5.1")])
>>> [v.id for v in vulnerabilities_of(extra)], vulnerabilities_of(extra)[0].fixable
(['CVE-2024-0001'], True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

SCANNER_SOURCES = ("trivy", "trivy_operator", "grype", "cyclonedx")
ACTIVITY = "package"

# extra keys of a package event
IMAGE_DIGEST = "image_digest"  # sha256:… of the scanned image, "" when unknown
PACKAGE = "package"  # the package's name as its ecosystem spells it
VERSION = "package_version"
PURL = "purl"  # package URL (pkg:pypi/vllm@0.5.0), "" when the scanner gave none
ECOSYSTEM = "ecosystem"  # pypi, npm, deb, rpm, apk, golang, … (the purl type, else the scanner's)
PATHS = "package_paths"  # JSON array of str
VULNERABILITIES = "vulnerabilities"  # JSON array of Vulnerability
SCANNER = "scanner"  # "trivy 0.49.1", "grype 0.74.0"
REPORT_ID = "report_id"  # the report's own id, else a digest of it
TARGET = "target"  # the scanned target inside the artifact (lock file, OS, …)

SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")  # ascending


@dataclass(frozen=True, slots=True)
class Vulnerability:
    id: str  # CVE-…, GHSA-…
    severity: str  # one of SEVERITIES
    cvss: float | None = None  # the highest CVSS v3 (else v2) base score any source gives
    fixed_version: str = ""  # first fixed version(s), "" when no fix exists
    status: str = ""  # the scanner's fix status: fixed, affected, will_not_fix, …
    title: str = ""
    url: str = ""

    @property
    def fixable(self) -> bool:
        return bool(self.fixed_version)

    @property
    def severity_rank(self) -> int:
        return SEVERITIES.index(self.severity) if self.severity in SEVERITIES else 0


def severity_of(name: str) -> str:
    """A scanner's severity word as one of ``SEVERITIES`` (``Negligible``/``Info`` → LOW)."""
    upper = name.strip().upper()
    if upper in SEVERITIES:
        return upper
    return {"NEGLIGIBLE": "LOW", "INFO": "LOW", "INFORMATIONAL": "LOW", "NONE": "LOW", "MODERATE": "MEDIUM",
            "IMPORTANT": "HIGH"}.get(upper, "UNKNOWN")


def package_extra(*, package: str, version: str, purl: str = "", ecosystem: str = "", image_digest: str = "",
                  paths: list[str] | None = None, vulnerabilities: list[Vulnerability] | None = None,
                  scanner: str = "", report_id: str = "", target: str = "") -> dict[str, str]:
    """The ``extra`` of a package event."""
    return {
        PACKAGE: package, VERSION: version, PURL: purl, ECOSYSTEM: ecosystem, IMAGE_DIGEST: image_digest,
        PATHS: orjson.dumps(paths or []).decode(),
        VULNERABILITIES: orjson.dumps([asdict(v) for v in vulnerabilities or []]).decode(),
        SCANNER: scanner, REPORT_ID: report_id, TARGET: target,
    }


def vulnerabilities_of(extra: dict[str, str]) -> list[Vulnerability]:
    """The vulnerabilities a package event's ``extra`` carries."""
    return [Vulnerability(**item) for item in _json_list(extra.get(VULNERABILITIES))]


def paths_of(extra: dict[str, str]) -> list[str]:
    return [str(p) for p in _json_list(extra.get(PATHS))]


def _json_list(text: str | None) -> list[Any]:
    if not text:
        return []
    value = orjson.loads(text)
    return value if isinstance(value, list) else []
