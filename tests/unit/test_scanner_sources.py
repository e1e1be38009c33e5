"""Scanner reports (Trivy, Trivy Operator, Grype, CycloneDX): split into package records and normalized.

Every record of the fixtures also goes through the generic checks of ``test_sources.py``; here: the real Trivy
samples of ``shared/data/trivy/`` read in place, field mappings, bad reports, and a split that never raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import vulns
from schemas.codec import Limits, RecordError
from schemas.envelope import VULNERABILITY_FINDING, Event
from schemas.sources import SOURCES, detect_source, normalize_bytes

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "sources"
SHARED_TRIVY = REPO / ".." / "shared" / "data" / "trivy"
needs_shared = pytest.mark.skipif(not SHARED_TRIVY.is_dir(), reason="shared/data is not beside the repository")


def report(source: str, name: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads((FIXTURES / source / name).read_bytes())
    return value


def events_of(document: dict[str, Any], source: str | None = None) -> list[Event]:
    """The package events of a whole report, as publish and ingest make them."""
    name = source or detect_source(document)
    assert name is not None
    return [normalize_bytes(orjson.dumps(part), name, limits=Limits()) for part in SOURCES[name].split(document)]


def by_package(events: list[Event]) -> dict[str, Event]:
    return {e.extra[vulns.PACKAGE]: e for e in events}


# --- Trivy ----------------------------------------------------------------------------------------

# file -> (image, packages, vulnerable packages, vulnerabilities)
SHARED_SAMPLES = {
    "trivy_pip.json": ("testdata/fixtures/repo/pip", 7, 1, 2),
    "trivy_poetry.json": ("testdata/fixtures/repo/poetry", 3, 1, 1),
    "trivy_uv.json": ("testdata/fixtures/repo/uv", 4, 1, 2),
    "trivy_distroless-python27.json": ("ghcr.io/aquasecurity/trivy-test-images:distroless-python27", 2, 2, 4),
    "trivy_debian-buster.json": ("ghcr.io/aquasecurity/trivy-test-images:debian-buster", 2, 2, 2),
}


@needs_shared
@pytest.mark.parametrize("name", sorted(SHARED_SAMPLES))
def test_every_shared_trivy_sample(name: str) -> None:
    document = orjson.loads((SHARED_TRIVY / name).read_bytes())
    assert detect_source(document) == "trivy"
    events = events_of(document)
    image, packages, vulnerable, count = SHARED_SAMPLES[name]
    assert len(events) == packages
    assert {e.image for e in events} == {image}
    assert all(e.entity_id == f"image:{image}" and e.class_uid == VULNERABILITY_FINDING for e in events)
    assert all(e.activity == vulns.ACTIVITY and e.time_ms == 1629894030000 for e in events)
    assert sum(1 for e in events if vulns.vulnerabilities_of(e.extra)) == vulnerable
    assert sum(len(vulns.vulnerabilities_of(e.extra)) for e in events) == count
    assert len({e.event_id for e in events}) == packages
    # Deterministic: publishing the report again gives the same ids.
    assert [e.event_id for e in events_of(document)] == [e.event_id for e in events]
    # The whole report is not one event: the normalizer says to split it.
    if packages > 1:
        with pytest.raises(RecordError, match="split it into one record per package"):
            normalize_bytes(orjson.dumps(document), None, limits=Limits())


@needs_shared
def test_trivy_lock_file_packages_and_vulnerabilities() -> None:
    events = by_package(events_of(orjson.loads((SHARED_TRIVY / "trivy_pip.json").read_bytes())))
    werkzeug = events["Werkzeug"]
    assert werkzeug.extra[vulns.PURL] == "pkg:pypi/werkzeug@0.11"
    assert (werkzeug.extra[vulns.ECOSYSTEM], werkzeug.extra[vulns.TARGET]) == ("pypi", "requirements.txt")
    assert werkzeug.extra[vulns.SCANNER] == "trivy dev"
    assert werkzeug.extra[vulns.REPORT_ID] == "017b7d41-e09f-7000-80ea-000000000001"
    found = {v.id: v for v in vulns.vulnerabilities_of(werkzeug.extra)}
    assert found["CVE-2019-14806"] == vulns.Vulnerability(
        "CVE-2019-14806", "HIGH", 7.5, "0.15.3", "fixed",
        "python-werkzeug: insufficient debugger PIN randomness vulnerability", "https://avd.aquasec.com/nvd/cve-2019-14806")
    assert werkzeug.severity_id == 4
    assert "CVE-2019-14806 HIGH" in werkzeug.message
    flask = events["Flask"]
    assert vulns.vulnerabilities_of(flask.extra) == [] and flask.severity_id == 1
    assert flask.message.endswith("no known vulnerabilities")


@needs_shared
def test_trivy_image_os_packages() -> None:
    events = by_package(events_of(orjson.loads((SHARED_TRIVY / "trivy_debian-buster.json").read_bytes())))
    libidn = events["libidn2-0"]
    assert libidn.extra[vulns.VERSION] == "2.0.5-1"
    assert libidn.extra[vulns.ECOSYSTEM] == "deb"
    assert libidn.severity_id == 5
    [found] = vulns.vulnerabilities_of(libidn.extra)
    assert (found.id, found.severity, found.fixable) == ("CVE-2019-18224", "CRITICAL", True)
    assert libidn.extra[vulns.TARGET].startswith("testdata/fixtures/images/debian-buster.tar.gz")


def test_trivy_packages_made_from_vulnerabilities_and_digests() -> None:
    document = {
        "SchemaVersion": 2, "ArtifactName": "vllm/vllm-openai:v0.5.0@sha256:abc", "ArtifactType": "container_image",
        "CreatedAt": "2026-11-30T10:00:00Z",
        "Metadata": {"RepoTags": [], "RepoDigests": ["vllm/vllm-openai@sha256:def"], "ImageConfig": {"huge": "x"}},
        "Results": [
            {"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", "Vulnerabilities": [
                {"VulnerabilityID": "CVE-2024-0001", "PkgName": "vllm", "InstalledVersion": "0.5.0",
                 "PkgPath": "usr/lib/python3/site-packages/vllm-0.5.0.dist-info/METADATA", "Severity": "CRITICAL",
                 "FixedVersion": "0.5.1", "Description": "long", "References": ["https://x"],
                 "CVSS": {"nvd": {"V2Score": 10.0, "V3Score": 9.8}, "ghsa": {"V3Score": 9.1}}},
                {"VulnerabilityID": "GHSA-xxxx", "PkgName": "vllm", "InstalledVersion": "0.5.0",
                 "PkgPath": "usr/lib/python3/site-packages/vllm-0.5.0.dist-info/METADATA", "Severity": "MODERATE"},
            ]},
            {"Target": "secrets", "Class": "secret", "Secrets": [{"RuleID": "aws-access-key-id"}]},
        ],
    }
    parts = SOURCES["trivy"].split(document)
    assert len(parts) == 1
    assert "ImageConfig" not in parts[0]["Metadata"]
    assert "Description" not in parts[0]["Results"][0]["Vulnerabilities"][0]
    [event] = events_of(document)
    assert (event.image, event.extra[vulns.IMAGE_DIGEST]) == ("vllm/vllm-openai:v0.5.0", "sha256:def")
    assert vulns.paths_of(event.extra) == ["usr/lib/python3/site-packages/vllm-0.5.0.dist-info/METADATA"]
    found = vulns.vulnerabilities_of(event.extra)
    assert [(v.id, v.severity, v.cvss) for v in found] == [("CVE-2024-0001", "CRITICAL", 9.8),
                                                            ("GHSA-xxxx", "MEDIUM", None)]


def test_trivy_report_without_time_is_stamped_on_receipt() -> None:
    document = report("trivy", "trivy_pipenv.json")
    del document["CreatedAt"]
    [part] = SOURCES["trivy"].split(document)
    assert part["CreatedAt"].endswith("Z")
    with pytest.raises(RecordError, match="no scan time"):
        SOURCES["trivy"].normalize({**part, "CreatedAt": None})


# --- Trivy Operator -------------------------------------------------------------------------------


def test_trivy_operator_report_names_the_workload() -> None:
    [event] = events_of(report("trivy_operator", "trivy-operator_vulnerability-ttl.json"))
    assert event.source == "trivy_operator"
    assert event.image == "k8s.gcr.io/coredns/coredns:v1.8.0"
    assert (event.namespace, event.pod, event.resource) == ("kube-system", "", "ReplicaSet/coredns-558bd4d5db")
    assert event.entities == ["image:k8s.gcr.io/coredns/coredns:v1.8.0", "namespace:kube-system"]
    assert event.extra["container_name"] == "coredns"
    assert (event.extra[vulns.PACKAGE], event.extra[vulns.VERSION]) == ("github.com/gogo/protobuf", "v1.3.1")
    assert event.time_ms == 1670514637000
    assert event.extra[vulns.REPORT_ID] == "66e3e613-9655-4330-aee7-45e283be2339@2022-12-08T15:50:37Z"
    assert event.extra[vulns.SCANNER] == "trivy 0.35.0"
    [found] = vulns.vulnerabilities_of(event.extra)
    assert (found.id, found.severity, found.cvss, found.fixed_version) == ("CVE-2021-3121", "HIGH", 8.6, "1.3.2")


def test_trivy_operator_list_and_pod_reports() -> None:
    events = by_package(events_of(report("trivy_operator", "trivy-operator_docs-list.json")))
    assert set(events) == {"libbsd0", "libwebp6"}
    assert {e.image for e in events.values()} == {"nginx:1.16"}  # Docker Hub as pod specs name it
    assert vulns.vulnerabilities_of(events["libwebp6"].extra)[0].fixable is False
    pod = report("trivy_operator", "trivy-operator_vulnerability-ttl.json")
    pod["metadata"]["labels"].update({"trivy-operator.resource.kind": "Pod", "trivy-operator.resource.name": "vllm-0",
                                      "trivy-operator.resource.namespace": "ml"})
    pod["report"]["artifact"]["digest"] = "sha256:0123"
    [event] = events_of(pod)
    assert (event.namespace, event.pod, event.extra[vulns.IMAGE_DIGEST]) == ("ml", "vllm-0", "sha256:0123")
    assert event.entities == ["image:k8s.gcr.io/coredns/coredns:v1.8.0", "pod:ml/vllm-0", "namespace:ml"]


# --- Grype ----------------------------------------------------------------------------------------


def test_grype_image_report() -> None:
    events = by_package(events_of(report("grype", "grype_json-images-presenter.json")))
    assert set(events) == {"package-1", "package-2"}
    first, second = events["package-1"], events["package-2"]
    assert first.image == "user-input"
    assert first.extra[vulns.IMAGE_DIGEST] == "sha256:ca738abb87a8d58f112d3400ebb079b61ceae7dc290beb34bda735be4b1941d5"
    assert vulns.paths_of(first.extra) == ["/foo/bar/somefile-1.txt"]
    assert (first.extra[vulns.ECOSYSTEM], second.extra[vulns.ECOSYSTEM]) == ("rpm", "deb")
    assert second.extra[vulns.PURL] == "pkg:deb/package-2@2.2.2"
    [low] = vulns.vulnerabilities_of(first.extra)
    assert (low.id, low.severity, low.cvss, low.fixed_version, low.status) == (
        "CVE-1999-0001", "LOW", 8.2, "1.2.1, 2.1.3, 3.4.0", "fixed")
    [critical] = vulns.vulnerabilities_of(second.extra)
    assert (critical.severity, critical.fixable) == ("CRITICAL", False)
    assert first.extra[vulns.SCANNER] == "grype [not provided]"


def test_grype_directory_report() -> None:
    events = events_of(report("grype", "grype_json-dirs-presenter.json"))
    assert {e.image for e in events} == {"/some/path"}
    assert all(vulns.IMAGE_DIGEST not in e.extra for e in events)


# --- CycloneDX ------------------------------------------------------------------------------------


def test_cyclonedx_bom_with_vulnerabilities() -> None:
    events = by_package(events_of(report("cyclonedx", "trivy_pom-cyclonedx.json")))
    assert set(events) == {"com.example/log4shell", "com.fasterxml.jackson.core/jackson-databind"}
    jackson = events["com.fasterxml.jackson.core/jackson-databind"]
    assert jackson.image == "testdata/fixtures/repo/pom"
    assert (jackson.extra[vulns.ECOSYSTEM], jackson.extra[vulns.VERSION]) == ("maven", "2.9.1")
    found = {v.id: v for v in vulns.vulnerabilities_of(jackson.extra)}
    assert (found["CVE-2020-9548"].severity, found["CVE-2020-9548"].cvss) == ("CRITICAL", 9.8)
    assert found["CVE-2020-9548"].fixed_version == "2.9.10.4"
    assert jackson.extra[vulns.SCANNER] == "trivy dev"
    assert vulns.vulnerabilities_of(events["com.example/log4shell"].extra) == []
    assert len(by_package(events_of(report("cyclonedx", "trivy_npm-cyclonedx.json")))) == 12


def test_cyclonedx_image_subject_vex_and_unknown_refs() -> None:
    bom = {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": "urn:uuid:1", "version": 1,
        "metadata": {"timestamp": "2026-11-30T10:00:00Z", "component": {
            "bom-ref": "img", "type": "container", "name": "vllm/vllm-openai:v0.5.0",
            "properties": [{"name": "aquasecurity:trivy:RepoDigest", "value": "vllm/vllm-openai@sha256:abc"}]}},
        "components": [{"bom-ref": "pkg:pypi/vllm@0.5.0", "type": "library", "name": "vllm", "version": "0.5.0",
                        "purl": "pkg:pypi/vllm@0.5.0", "components": [
                            {"bom-ref": "pkg:pypi/torch@2.1.0", "type": "library", "name": "torch",
                             "version": "2.1.0"}]}],
        "vulnerabilities": [
            {"id": "CVE-2024-0001", "source": {"name": "nvd"}, "ratings": [{"source": {"name": "nvd"}, "score": 9.8,
             "severity": "critical", "method": "CVSSv31"}], "analysis": {"state": "not_affected"},
             "affects": [{"ref": "pkg:pypi/vllm@0.5.0", "versions": [{"version": "0.5.1", "status": "unaffected"}]}]},
            {"id": "CVE-2024-0002", "affects": [{"ref": "pkg:pypi/nowhere@1.0"}]},
        ],
    }
    parts = SOURCES["cyclonedx"].split(bom)
    assert len(parts) == 3  # vllm, the nested torch, the vulnerability of an unknown ref
    vllm = normalize_bytes(orjson.dumps(parts[0]), None, limits=Limits())
    assert (vllm.image, vllm.extra[vulns.IMAGE_DIGEST]) == ("vllm/vllm-openai:v0.5.0", "sha256:abc")
    [found] = vulns.vulnerabilities_of(vllm.extra)
    assert (found.severity, found.cvss, found.fixed_version, found.status) == ("CRITICAL", 9.8, "0.5.1", "not_affected")
    assert normalize_bytes(orjson.dumps(parts[1]), None, limits=Limits()).extra[vulns.PACKAGE] == "torch"
    with pytest.raises(RecordError, match="affects bom-ref 'pkg:pypi/nowhere@1.0', which no component"):
        normalize_bytes(orjson.dumps(parts[2]), None, limits=Limits())


# --- bad reports ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "document", "reason"),
    [
        ("trivy", {"SchemaVersion": 1, "ArtifactName": "x", "CreatedAt": "2026-01-01T00:00:00Z", "Results": [
            {"Target": "t", "Packages": [{"Name": "a"}]}]}, "SchemaVersion 1 is not supported"),
        ("trivy", {"SchemaVersion": 2, "ArtifactName": "x", "Results": "none"}, r"Expected `array \| null`"),
        ("trivy", {"SchemaVersion": 2, "ArtifactName": "x", "Results": [{"Target": "t", "Packages": [{"Name": 5}]}]},
         r"Expected `str`, got `int` - at `\$.Results\[0\].Packages\[0\].Name`"),
        ("trivy", {"SchemaVersion": 2, "Results": [{"Target": "t", "Packages": [{"Name": "a"}]}]},
         "missing required field `ArtifactName`"),
        ("trivy_operator", {"apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "VulnerabilityReport",
                            "report": {"vulnerabilities": [{"vulnerabilityID": "CVE-1"}]}}, "missing required field"),
        ("trivy_operator", {"apiVersion": "v1", "kind": "VulnerabilityReport", "report": {
            "artifact": {"repository": "r"}, "updateTimestamp": "2026-01-01T00:00:00Z", "vulnerabilities": [
                {"vulnerabilityID": "C", "resource": "p", "installedVersion": "1", "severity": "LOW"}]}},
         "expected a VulnerabilityReport of aquasecurity.github.io"),
        ("grype", {"matches": [{"vulnerability": {"id": "CVE-1"}, "artifact": {"name": ["x"]}}],
                   "descriptor": {"timestamp": "2026-01-01T00:00:00Z"}}, r"\$.matches\[0\].artifact.name"),
        ("grype", {"matches": "all", "descriptor": {}}, "Expected `array`"),
        ("cyclonedx", {"bomFormat": "CycloneDX", "specVersion": "1.6",
                       "components": [{"type": "library", "version": "1"}]},
         "missing required field `name`"),
    ],
)
def test_bad_reports_are_record_errors_with_the_reason(source: str, document: dict[str, Any], reason: str) -> None:
    parts = SOURCES[source].split(document)
    with pytest.raises(RecordError, match=reason) as info:
        for part in parts:
            normalize_bytes(orjson.dumps(part), source, limits=Limits())
    assert info.value.reason.startswith(f"{source}: ")


def test_empty_reports_give_no_records() -> None:
    assert SOURCES["trivy"].split({"SchemaVersion": 2, "ArtifactName": "alpine:3.20"}) == []
    assert SOURCES["grype"].split({"matches": [], "descriptor": {"name": "grype"}}) == []


# --- split never raises ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
REPORTS = [
    ("trivy", report("trivy", "trivy_pipenv.json")),
    ("trivy_operator", report("trivy_operator", "trivy-operator_docs-list.json")),
    ("grype", report("grype", "grype_json-images-presenter.json")),
    ("cyclonedx", report("cyclonedx", "trivy_pom-cyclonedx.json")),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found = []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(REPORTS), st.data(), json_values)
def test_split_and_normalize_of_mutated_reports_only_record_errors(
    chosen: tuple[str, dict[str, Any]], data: st.DataObject, junk: Any
) -> None:
    source, original = chosen
    document = orjson.loads(orjson.dumps(original))
    path = data.draw(st.sampled_from(_paths(document)))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = junk
    for part in SOURCES[source].split(document):  # never raises
        try:
            normalize_bytes(orjson.dumps(part), source, limits=Limits())
        except RecordError:
            pass
