"""Vulnerable AI workload: an AI package with known vulnerabilities, in use in a workload, prioritized.

Three facts meet here, each from another source and keyed on another entity:

* **packages** — scanner results (``schemas.vulns``: one event per package of an image, entity ``image:<ref>``);
* **in use** — runtime events (Falco, native agent) of a container running that image whose executable,
  command line or opened file shows the package: an entry point of ``ai_package_entry_points``,
  ``python -m <module>``, a path under ``…/site-packages/<module>/`` (process starts, file opens and
  listening sockets only: a server's every connection would cross the re-key topic all day);
* **exposure** — the exposure detector's decision (``ExposedAIWorkload.exposure``: a LoadBalancer /
  NodePort Service or Ingress fronting a model server), which names a namespace, never an image; and the
  inventory's ``ai_exposed`` / ``ai_asset`` context when it travels with a runtime event.

State lives under two kinds of key, both in the detect stage's re-keyed store (``joins``):

* ``image:<ref>`` (digest and ``docker.io/`` dropped): the image's AI packages with their worst
  vulnerabilities, the workloads seen running it (first / last in-use time, which packages are in use,
  AI asset, exposed) and the exposed namespaces. Package events and in-use runtime events come here.
* ``namespace:<ns>``: the exposures in the namespace and the images seen running there. Exposure events
  come here; a runtime event that shows an image in a namespace for the first time is forwarded here
  (``forward``), and the namespace answers each of its images with the exposure (forwarded back to the
  image). A workload counts as exposed when a public model-server Service in its namespace is named
  after it (``vllm-public`` fronts the pods ``vllm-7d9f8-x2k4q``, ``vllm-0``): Services select pods by
  labels, which neither audit nor runtime events carry, so the names both share stand in for them.

**Priority** per workload and vulnerability (``priority``): severity base (CRITICAL 40, HIGH 30,
MEDIUM 15, LOW / UNKNOWN 5) + 5 if CVSS ≥ 9 + 25 in use + 20 publicly exposed + 5 AI asset + 5 fix
available, 0..100; ``vuln_priority_critical`` / ``_high`` / ``_medium`` / ``_low`` name the levels. A
critical CVE in a package in use on an exposed AI workload is 100; the same CVE not in use, 75 (high).
Every row and finding carries the reasons.

**Findings** name whom exposed the workload, when a Service change did (``continues``): the finding, and
the workload's next findings (the reverse shell, say), join that person's exposure alert
(``detectors.correlation``). One per workload and set of critical-priority vulnerabilities (id from the workload and the
sorted vulnerability ids, remembered as hashes), so redelivery and repeats raise nothing new.
**Rows** (``VulnerabilityRow``, the ``vulnerabilities`` table) whenever one changes: a scan, a new
workload or package in use, an exposure, the last-seen time (every ``vuln_in_use_refresh_s``).

Bounded state: 4 AI packages per image (the most severe first), 3 vulnerabilities each (the worst), 16
workloads (exposed ones kept, else the least recently seen replaced: enough for the replicas of the
Deployments an exposure may front, whose in-use may have been seen long before it), 2 exposing Services per
image and 2 per namespace, 8 images per namespace, 16 findings remembered; strings cut.
Packages outside the AI list give rows at scan time and no state.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from detectors.base import STATE_BOUND_BYTES, Detector, Observed, State, clean, h32, lru_add
from detectors.config import DetectionConfig
from detectors.correlation import CONTINUES
from detectors.policy import glob_matcher
from detectors.rules.exposed_ai_workload import ExposedAIWorkload
from schemas import entities as ent
from schemas import vulns
from schemas.envelope import (
    API_ACTIVITY,
    FILE_ACTIVITY,
    NETWORK_ACTIVITY,
    PROCESS_ACTIVITY,
    VULNERABILITY_FINDING,
    Event,
)
from schemas.findings import Finding

RUNTIME_SOURCES = frozenset({"falco", "native"})
RUNTIME_CLASSES = frozenset({PROCESS_ACTIVITY, FILE_ACTIVITY, NETWORK_ACTIVITY})
HOP = "vulns_hop"  # extra key of a forwarded event: "namespace" (image seen in a namespace) | "exposure"
EXPOSURE = "vulns_exposure"  # extra key: how the namespace is exposed (on "exposure" hops)
SERVICE = "vulns_service"  # extra key: the exposing Service's base name (on "exposure" hops)
EXPOSED_BY = "vulns_exposed_by"  # extra key: who created or changed that Service (on "exposure" hops)
SERVICE_SUFFIXES = ("-public", "-external", "-ext", "-lb", "-loadbalancer", "-nodeport", "-svc", "-service",
                    "-ingress", "-internal")

MAX_PACKAGES, MAX_VULNS, MAX_WORKLOADS, MAX_EXPOSURES, MAX_IMAGES, MAX_REPORTED = 4, 3, 16, 2, 8, 16
NAME_CHARS, VERSION_CHARS, ID_CHARS, IMAGE_CHARS, HOW_CHARS = 32, 16, 20, 80, 56
NAMESPACE_CHARS, WORKLOAD_CHARS, SERVICE_CHARS, PRINCIPAL_CHARS = 40, 80, 32, 160
SEVERITY_POINTS = {"CRITICAL": 40, "HIGH": 30, "MEDIUM": 15, "LOW": 5, "UNKNOWN": 5}
PRIORITIES = ("critical", "high", "medium", "low", "none")
OS_ECOSYSTEMS = frozenset({"deb", "rpm", "apk", "alpm", "debian", "ubuntu", "alpine", "redhat"})

_SITE_PACKAGES = re.compile(r"/(?:site|dist)-packages/([A-Za-z0-9_]+)(?:/|\.py\b)")
_PYTHON_MODULE = re.compile(r"(?:^|\s)-m\s+([A-Za-z0-9_.]+)")
_SEPARATORS = re.compile(r"[-_.]+")


def normalized(name: str) -> str:
    """A package name per PEP 503 (``Sentence_Transformers`` → ``sentence-transformers``)."""
    return _SEPARATORS.sub("-", name).lower()


def image_ref(reference: str) -> str:
    """An image reference as scanners and runtimes both name it: no digest, no ``docker.io/[library/]``."""
    ref = reference.split("@", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def service_base(resource: str) -> str:
    """The workload name a Service or Ingress is named after (``services/ml/vllm-public`` → ``vllm``)."""
    name = resource.rsplit("/", 1)[-1].lower()
    for suffix in SERVICE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def fronts(base: str, workload: str) -> bool:
    """Whether a Service named after ``base`` fronts a workload: its pods are named after their
    Deployment / StatefulSet (``vllm-7d9f8-x2k4q``, ``vllm-0``). Services select pods by labels, which no
    audit or runtime event carries; the names are what both sides share."""
    if not workload.startswith("pod:"):
        return False
    name = workload.rsplit("/", 1)[-1].lower()
    return name == base or name.startswith(base + "-")


def use_bit(name: str) -> int:
    """The bit of an in-use package name in a workload's bitmask."""
    return 1 << (h32(name) % 30)


def in_use(package: str, bits: int) -> bool:
    """Whether a workload's in-use bits name ``package`` or a prefix of it (the module ``llama_index``
    covers the distribution ``llama-index-core``), whichever came first, the scan or the runtime."""
    parts = package.split("-")
    return any(bits & use_bit("-".join(parts[:n])) for n in range(len(parts), 0, -1))


class Priority(NamedTuple):
    score: int
    level: str  # critical | high | medium | low | none
    reasons: tuple[str, ...]


@dataclass(slots=True)
class VulnerabilityRow:
    """One row of the ``vulnerabilities`` table: a (workload, package, vulnerability) as it is now."""

    workload: str
    image: str
    image_digest: str
    namespace: str
    package: str
    package_version: str
    purl: str
    ecosystem: str
    ai_package: int
    vulnerability_id: str
    severity: str
    cvss: float | None
    fixed_version: str
    in_use: int
    in_use_first_seen: int | None
    in_use_last_seen: int | None
    exposed: int
    ai_asset: int
    priority: str
    priority_score: int
    reasons: list[str] = field(default_factory=list)
    scanner: str = ""
    updated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class VulnerableAIWorkload(Detector):
    id = "vulnerable_ai_workload"
    title = "Vulnerable AI package in use on a workload"
    maturity = "incubating"
    severity = "critical"
    tactics = ("initial-access", "execution")
    atlas = ("AML.T0010", "AML.T0049")
    attack = ("T1190", "T1195.001")
    classes = frozenset({VULNERABILITY_FINDING, API_ACTIVITY, *RUNTIME_CLASSES})
    sources = frozenset({*vulns.SCANNER_SOURCES, *RUNTIME_SOURCES, "k8s_audit"})
    joins = True  # state under image and namespace keys, in the re-keyed store; observe() forwards events
    # A key is an image or a namespace, not an entity: an estate has hundreds, and an image's state keeps the
    # replicas it runs in (16), so an exposure that comes later still finds the one that will be attacked.
    state_bound_bytes = 8 * STATE_BOUND_BYTES
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self.is_ai_package = glob_matcher(normalized(p) for p in config.ai_packages)
        entry_points: dict[str, str] = {}
        for package, points in config.ai_package_entry_points.items():
            for point in points:
                entry_points.setdefault(point.lower(), normalized(package))
        self.entry_points = entry_points
        self.exposures = ExposedAIWorkload(config)
        self.thresholds = ((config.vuln_priority_critical, "critical"), (config.vuln_priority_high, "high"),
                           (config.vuln_priority_medium, "medium"), (config.vuln_priority_low, "low"))
        self.refresh_ms = config.vuln_in_use_refresh_s * 1000
        self.evidence = lru_cache(maxsize=4096)(self._evidence)

    # --- what an event shows -------------------------------------------------------------------------
    def _evidence(self, exe: str, cmdline: str, file_path: str) -> tuple[str, ...]:
        """AI packages (normalized) a process's executable / command line / opened file shows in use."""
        points = self.entry_points
        head = cmdline[:1024]
        words = [w.rsplit("/", 1)[-1].lower() for w in head.split(None, 2)[:2]]
        # the program run: the executable, the command (a script's interpreter may come first)
        programs = [exe.rsplit("/", 1)[-1].lower(), *words[:1]]
        if words and words[0].startswith("python") and len(words) > 1:
            programs.append(words[1])
        found = [points[p] for p in programs if p in points]
        modules = [*_PYTHON_MODULE.findall(head), *_SITE_PACKAGES.findall(head), *_SITE_PACKAGES.findall(file_path)]
        for module in modules:
            top = module.split(".", 1)[0]
            found.append(points.get(module.lower()) or points.get(top.lower()) or normalized(top))
        return tuple(dict.fromkeys(p for p in found if self.is_ai_package(p)))

    def in_use_evidence(self, event: Event) -> tuple[str, ...]:
        """Evidence from the events that start or load something: a process start (exe, command line), a
        file opened under a package's directory, a listening socket (the server's command line). A
        server's every connection and file read would otherwise cross the re-key topic all day."""
        if event.class_uid == PROCESS_ACTIVITY:
            exe = event.extra.get("exe", "") or event.process_name
            return self.evidence(exe, event.process_cmdline, event.file_path)
        if event.class_uid == FILE_ACTIVITY:
            return self.evidence("", "", event.file_path) if "-packages/" in event.file_path else ()
        if event.activity == "network_listen":
            return self.evidence(event.extra.get("exe", "") or event.process_name, event.process_cmdline, "")
        return ()

    # --- interface -----------------------------------------------------------------------------------
    def state_key(self, event: Event) -> str | None:
        source = event.source
        if source in vulns.SCANNER_SOURCES:
            return ent.image(image_ref(event.image)) if event.image and event.activity == vulns.ACTIVITY else None
        if source == "k8s_audit":
            # only the namespace state answers an exposure: never a finding there, so a key is
            # given only to exposures (the contract: no key, nothing to find, holds trivially)
            return ent.namespace(event.namespace) if event.namespace and self._exposure(event) else None
        if not event.image or event.class_uid not in RUNTIME_CLASSES or not self.in_use_evidence(event):
            return None
        return ent.image(image_ref(event.image))

    def detect(self, event: Event, state: State) -> list[Finding]:
        return self.observe(event, state).findings

    def observe(self, event: Event, state: State) -> Observed:
        """Everything ``event`` does to ``state``: findings, events to forward to other keys of this
        detector, changed rows (the detect stage calls this instead of ``detect``). Seeing an event
        again changes nothing and raises nothing new."""
        hop = event.extra.get(HOP, "")
        if event.source == "k8s_audit" and not hop:
            return self._namespace_exposed(event, state)
        if hop == "namespace":
            return self._namespace_runs(event, state)
        if hop == "exposure":
            return self._image_exposed(event, state)
        if event.source in vulns.SCANNER_SOURCES:
            return self._package(event, state)
        return self._runtime(event, state)

    # --- namespace state ------------------------------------------------------------------------------
    def _exposure(self, event: Event) -> str:
        resource, how = self.exposures.exposure(event)
        return how if resource and event.source == "k8s_audit" else ""

    def _namespace_exposed(self, event: Event, state: State) -> Observed:
        how = self._exposure(event)
        if not how:
            return Observed([], [], [])
        exposure = [clean(service_base(event.resource), SERVICE_CHARS), clean(how, HOW_CHARS),
                    clean(event.principal, PRINCIPAL_CHARS)]
        exposures: list[list[str]] = state.setdefault("ex", [])
        lru_add(exposures, exposure, MAX_EXPOSURES)
        images: list[str] = state.setdefault("im", [])
        return Observed([], [(ent.image(image), self._hop(event, exposure)) for image in images], [])

    def _namespace_runs(self, event: Event, state: State) -> Observed:
        image = clean(image_ref(event.image), IMAGE_CHARS)
        images: list[str] = state.setdefault("im", [])
        lru_add(images, image, MAX_IMAGES)
        return Observed([], [(ent.image(image), self._hop(event, e)) for e in state.get("ex", [])], [])

    @staticmethod
    def _hop(event: Event, exposure: list[str] | None = None) -> Event:
        """``event`` marked for the other side of the join: to the namespace (no ``exposure``), or back to
        an image with an exposure ``[service base name, how, by whom]``."""
        extra = {**event.extra, HOP: "exposure" if exposure else "namespace"}
        if exposure:
            extra[SERVICE], extra[EXPOSURE] = exposure[:2]
            if len(exposure) > 2 and exposure[2]:
                extra[EXPOSED_BY] = exposure[2]
        return dataclasses.replace(event, extra=extra)

    # --- image state ------------------------------------------------------------------------------------
    def _image_exposed(self, event: Event, state: State) -> Observed:
        namespace = clean(event.namespace, NAMESPACE_CHARS)
        base = clean(event.extra.get(SERVICE, ""), SERVICE_CHARS)
        how = clean(event.extra.get(EXPOSURE, "") or "public Service", HOW_CHARS)
        by = clean(event.extra.get(EXPOSED_BY, ""), PRINCIPAL_CHARS)
        exposed: list[list[str]] = state.setdefault("xn", [])
        if any(item[:2] == [namespace, base] for item in exposed):
            return Observed([], [], [])
        exposed.append([namespace, base, how, by])
        del exposed[:-MAX_EXPOSURES]
        changed = [w for w in state.get("wl", []) if w[1] == namespace and fronts(base, str(w[0]))]
        return self._changed(event, state, changed)

    def _package(self, event: Event, state: State) -> Observed:
        extra = event.extra
        ecosystem = extra.get(vulns.ECOSYSTEM, "")
        name = normalized(extra.get(vulns.PACKAGE, "")) if ecosystem in ("pypi", "conda", "") else \
            extra.get(vulns.PACKAGE, "").lower()
        if not name:
            return Observed([], [], [])
        found = sorted(vulns.vulnerabilities_of(extra), key=lambda v: (-v.severity_rank, -(v.cvss or 0.0), v.id))
        state["dg"] = clean(extra.get(vulns.IMAGE_DIGEST, ""), 80)
        state["sc"] = clean(extra.get(vulns.SCANNER, ""), 32)
        state.setdefault("im", clean(image_ref(event.image), IMAGE_CHARS))
        ai = ecosystem not in OS_ECOSYSTEMS and self.is_ai_package(name)
        workloads: list[list[Any]] = state.get("wl", [])
        if not ai:  # rows only: nothing about it changes later
            return Observed([], [], self._package_rows(event, state, name, found, workloads))
        entry: list[Any] = [clean(name, NAME_CHARS), clean(extra.get(vulns.VERSION, ""), VERSION_CHARS),
                 clean(extra.get(vulns.ECOSYSTEM, ""), 12),
                 [[clean(v.id, ID_CHARS), v.severity_rank, v.cvss, clean(v.fixed_version, VERSION_CHARS)]
                  for v in found[:MAX_VULNS]]]
        packages: list[list[Any]] = state.setdefault("pk", [])
        packages[:] = [p for p in packages if p[0] != entry[0]]
        packages.append(entry)
        packages.sort(key=lambda p: (-max((v[1] for v in p[3]), default=-1), p[0]))
        del packages[MAX_PACKAGES:]
        if entry not in packages:
            return Observed([], [], [])
        return self._changed(event, state, workloads, only=entry[0])

    def _runtime(self, event: Event, state: State) -> Observed:
        evidence = self.in_use_evidence(event)
        workload = _workload_of(event)
        if not evidence or not workload:
            return Observed([], [], [])
        namespace = clean(event.namespace, NAMESPACE_CHARS)
        workloads: list[list[Any]] = state.setdefault("wl", [])
        state.setdefault("im", clean(image_ref(event.image), IMAGE_CHARS))
        row = next((w for w in workloads if w[0] == workload), None)
        forwards: list[tuple[str, Event]] = []
        changed = False
        if row is None:
            if namespace and all(w[1] != namespace for w in workloads):
                forwards.append((ent.namespace(event.namespace), self._hop(event)))
            # [workload, namespace, first in use, last in use, in-use package bits, ai asset, exposed, container]
            container = ent.container(clean(event.container_id, 12)) if event.container_id else ""
            row = [clean(workload, WORKLOAD_CHARS), namespace, event.time_ms, event.time_ms, 0, False, False, container]
            workloads.append(row)
            # the exposed workloads stay, then the most recently seen
            workloads.sort(key=lambda w: (not self._exposure_of(state, w)[0], -int(w[3])))
            del workloads[MAX_WORKLOADS:]
            changed = True
        elif event.time_ms >= int(row[3]) + self.refresh_ms:
            row[3] = event.time_ms
            changed = True
        bits = int(row[4])
        for name in evidence:
            bits |= use_bit(name)
        if bits != row[4]:
            row[4] = bits
            changed = True
        ai_asset = bool(event.extra.get("ai_asset")) or bool(self.policy.runtime_in(event.image))
        exposed = event.extra.get("ai_exposed") == "true"
        if (ai_asset and not row[5]) or (exposed and not row[6]):
            row[5], row[6] = bool(row[5]) or ai_asset, bool(row[6]) or exposed
            changed = True
        if not changed or row not in workloads:
            return Observed([], forwards, [])
        result = self._changed(event, state, [row])
        return Observed(result.findings, forwards, result.rows)

    # --- priority, rows, findings ----------------------------------------------------------------------
    def priority(self, severity_rank: int, cvss: float | None, fixed: str, in_use: bool, exposed: bool,
                 ai_asset: bool, package: str = "", how: str = "") -> Priority:
        """The documented priority of one vulnerability on one workload (module docstring)."""
        severity = vulns.SEVERITIES[severity_rank] if 0 <= severity_rank < len(vulns.SEVERITIES) else "UNKNOWN"
        score = SEVERITY_POINTS[severity]
        reasons = [f"{severity.lower()} severity" + (f" (CVSS {cvss:.1f})" if cvss is not None else "")]
        if cvss is not None and cvss >= 9.0:
            score += 5
        if in_use:
            score += 25
            reasons.append(f"{package or 'package'} in use")
        else:
            reasons.append(f"{package or 'package'} installed, not seen in use")
        if exposed:
            score += 20
            reasons.append(f"publicly exposed ({how})" if how else "publicly exposed")
        if ai_asset:
            score += 5
            reasons.append("AI asset")
        if fixed:
            score += 5
            reasons.append(f"fix available ({fixed})")
        else:
            reasons.append("no fix yet")
        score = min(100, score)
        level = next((name for threshold, name in self.thresholds if score >= threshold), "none")
        return Priority(score, level, tuple(reasons))

    @staticmethod
    def _exposure_of(state: State, workload: list[Any]) -> tuple[str, str]:
        """How a workload is exposed ('' when it is not) and by whom ('' when unknown): a public Service named
        after it in its namespace, else the inventory's word."""
        for exposure in state.get("xn", []):
            namespace, base = exposure[0], exposure[1]
            if namespace and namespace == workload[1] and fronts(str(base), str(workload[0])):
                return str(exposure[2]), str(exposure[3]) if len(exposure) > 3 else ""  # 3 items: kept from before
        return ("inventory: exposed" if workload[6] else ""), ""

    def _changed(self, event: Event, state: State, workloads: list[list[Any]], only: str = "") -> Observed:
        """Rows of the AI packages (``only`` one) for ``workloads`` (the image itself when none runs it),
        and a finding per workload whose set of critical-priority vulnerabilities is new."""
        rows: list[VulnerabilityRow] = []
        findings: list[Finding] = []
        targets: list[list[Any]] = workloads or ([] if state.get("wl") else [[ent.image(str(state.get("im", ""))),
                                                                              "", None, None, 0, False, False, ""]])
        for workload in targets:
            how, by = self._exposure_of(state, workload)
            for package in state.get("pk", []):
                if only and package[0] != only:
                    continue
                used = in_use(package[0], int(workload[4]))
                for vuln_id, rank, cvss, fixed in package[3] or [["", -1, None, ""]]:
                    prio = self.priority(rank, cvss, fixed, used, bool(how), bool(workload[5]), package[0], how) \
                        if vuln_id else Priority(0, "none", ())
                    rows.append(self._row(event, state, workload, package, [vuln_id, rank, cvss, fixed], used,
                                          bool(how), prio))
            finding = self._finding(event, state, workload, self._critical(state, workload, how), how, by)
            if finding is not None:
                findings.append(finding)
        return Observed(findings, [], rows)

    def _critical(self, state: State, workload: list[Any], how: str) -> list[tuple[str, list[Any], Priority]]:
        out = []
        for package in state.get("pk", []):
            used = in_use(package[0], int(workload[4]))
            for vuln_id, rank, cvss, fixed in package[3]:
                prio = self.priority(rank, cvss, fixed, used, bool(how), bool(workload[5]), package[0], how)
                if prio.level == "critical":
                    out.append((str(vuln_id), package, prio))
        return out

    def _finding(self, event: Event, state: State, workload: list[Any],
                 critical: list[tuple[str, list[Any], Priority]], how: str, by: str) -> Finding | None:
        if not critical or workload[2] is None:
            return None
        ids = sorted({c[0] for c in critical})
        # who exposed it is part of the marker: an exposure learned later (the inventory's word came first)
        # raises the finding again, now naming whom, so the workload's alert joins that exposure's
        marker = h32(f"{workload[0]}|{','.join(ids)}|{by}")
        reported: list[int] = state.setdefault("rp", [])
        if marker in reported:
            return None
        reported.append(marker)
        del reported[:-MAX_REPORTED]
        vuln_id, package, prio = max(critical, key=lambda c: c[2].score)
        packages = sorted({f"{c[1][0]} {c[1][1]}" for c in critical})
        shown = ", ".join(ids[:3]) + (f" (+{len(ids) - 3} more)" if len(ids) > 3 else "")
        phrase = f"runs vulnerable {', '.join(packages)} in use ({shown})"
        if how:
            phrase = f"is publicly exposed and {phrase}"
        image = str(state.get("im", ""))
        entities = [ent.image(image)] if image else []
        if workload[7]:
            entities.append(str(workload[7]))
        if workload[1]:
            entities.append(ent.namespace(str(workload[1])))
        attributes = {
            "phrase": phrase, "kind": "vulnerable_package", "ai_workload": "true" if workload[5] else "false",
            "vulnerabilities": ",".join(ids), "packages": ",".join(packages), "package": str(package[0]),
            "priority": prio.level, "priority_score": str(prio.score), "reasons": "; ".join(prio.reasons),
            "top_vulnerability": vuln_id, "image": image,
        }
        if by:  # the exposure's alert is whom exposed it: this workload's story continues there
            entities.append(ent.principal(by))
            attributes[CONTINUES] = ent.principal(by)
        return self.finding(
            event=event,
            entity_id=str(workload[0]),
            discriminator=",".join(ids) + (f"|{by}" if by else ""),
            summary=f"Workload {str(workload[0]).split(':', 1)[-1]} {phrase}: {'; '.join(prio.reasons)}",
            entities=entities,
            severity="critical",
            ai_asset=bool(workload[5]),
            public_exposure=bool(how),
            attributes=attributes,
        )

    def _row(self, event: Event, state: State, workload: list[Any], package: list[Any], vuln: list[Any],
             used: bool, exposed: bool, prio: Priority) -> VulnerabilityRow:
        name, version, ecosystem = str(package[0]), str(package[1]), str(package[2])
        rank = int(vuln[1])
        return VulnerabilityRow(
            workload=str(workload[0]), image=str(state.get("im", "")), image_digest=str(state.get("dg", "")),
            namespace=str(workload[1]), package=name, package_version=version,
            purl=f"pkg:{ecosystem}/{name}@{version}" if ecosystem and version else "", ecosystem=ecosystem,
            ai_package=1, vulnerability_id=str(vuln[0]),
            severity=vulns.SEVERITIES[rank] if 0 <= rank < len(vulns.SEVERITIES) else "",
            cvss=vuln[2], fixed_version=str(vuln[3]), in_use=int(used),
            in_use_first_seen=int(workload[2]) if used and workload[2] is not None else None,
            in_use_last_seen=int(workload[3]) if used and workload[3] is not None else None,
            exposed=int(exposed), ai_asset=int(bool(workload[5])), priority=prio.level,
            priority_score=prio.score, reasons=list(prio.reasons), scanner=str(state.get("sc", "")),
            updated=event.time_ms,
        )

    def _package_rows(self, event: Event, state: State, name: str, found: list[vulns.Vulnerability],
                      workloads: list[list[Any]]) -> list[VulnerabilityRow]:
        """Rows of a package outside the AI list, straight from its scan (its in-use is not tracked)."""
        extra = event.extra
        targets = workloads or [[ent.image(str(state.get("im", ""))), "", None, None, 0, False, False, ""]]
        rows = []
        for workload in targets:
            how, _ = self._exposure_of(state, workload)
            listed: list[vulns.Vulnerability | None] = [*found] or [None]
            for vuln in listed:
                prio = self.priority(vuln.severity_rank, vuln.cvss, vuln.fixed_version, False, bool(how),
                                     bool(workload[5]), name, how) if vuln else Priority(0, "none", ())
                rows.append(VulnerabilityRow(
                    workload=str(workload[0]), image=str(state.get("im", "")), image_digest=str(state.get("dg", "")),
                    namespace=str(workload[1]), package=name, package_version=extra.get(vulns.VERSION, ""),
                    purl=extra.get(vulns.PURL, ""), ecosystem=extra.get(vulns.ECOSYSTEM, ""), ai_package=0,
                    vulnerability_id=vuln.id if vuln else "", severity=vuln.severity if vuln else "",
                    cvss=vuln.cvss if vuln else None, fixed_version=vuln.fixed_version if vuln else "",
                    in_use=0, in_use_first_seen=None, in_use_last_seen=None, exposed=int(bool(how)),
                    ai_asset=int(bool(workload[5])), priority=prio.level, priority_score=prio.score,
                    reasons=list(prio.reasons), scanner=str(state.get("sc", "")), updated=event.time_ms,
                ))
        return rows


def _workload_of(event: Event) -> str:
    if event.namespace and event.pod:
        return ent.pod(event.namespace, event.pod)
    return ent.container(event.container_id) if event.container_id else ""
