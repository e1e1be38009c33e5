"""Sigma rule files: loading, validation and what a rule says about its findings.

``load_paths(paths)`` reads rule files (``.yml`` / ``.yaml``) and folders (recursively), parses each
with pySigma and checks it can run here (a log source aiwarden has events for, mapped fields,
supported modifiers). A bad rule never stops the others: it becomes a ``RuleProblem`` naming its file
and what is wrong, and the rest load. ``RuleSet`` remembers the files' modification times so a
worker can reload what changed (``RuleSet.reload_if_changed``).

Metadata, per the Sigma specification: ``level`` → severity (``informational`` → ``info``),
``status`` → maturity (``stable`` → stable, ``test`` → incubating, ``experimental`` → sandbox, which
never triggers containment; ``deprecated`` / ``unsupported`` rules are not loaded), ``attack.tNNNN``
tags → ATT&CK technique ids, ``attack.<tactic>`` → tactics, ``atlas.aml.tNNNN`` → ATLAS technique
ids; ``author`` and ``references`` travel with every finding (the Detection Rule License asks for it).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.conditions import ConditionValueExpression
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from detectors.sigma.fields import LOGSOURCES, field_of, logsource_key
from detectors.sigma.pipeline import aiwarden_pipeline
from detectors.sigma.semantics import Unsupported
from schemas.envelope import Event
from schemas.findings import Finding

log = logging.getLogger(__name__)

PACK_DIR = Path(__file__).resolve().parent / "rules"
SUFFIXES = (".yml", ".yaml")

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
STATUSES = {"stable": "stable", "test": "incubating", "experimental": "sandbox"}
SKIPPED_STATUSES = frozenset({"deprecated", "unsupported"})
ATTACK_TECHNIQUE = re.compile(r"t(\d{4})(?:\.(\d{3}))?")
ATLAS_TECHNIQUE = re.compile(r"aml\.t(\d{4})(?:\.(\d{3}))?")


Cached = tuple[float, list["Rule"], list[SigmaCorrelationRule], list["RuleProblem"]]


class RuleError(ValueError):
    """A rule that cannot be loaded; the message names its file and the problem."""


@dataclass(frozen=True)
class RuleProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Metadata:
    """What a Sigma rule (detection or correlation) says about its findings."""

    id: str
    title: str
    path: Path
    severity: str
    maturity: str
    level: str
    status: str
    author: str
    references: list[str]
    attack: list[str]
    atlas: list[str]
    tactics: list[str]

    @property
    def detector_id(self) -> str:
        return f"sigma:{self.id}"

    def finding(self, event: Event, *, finding_id: str, summary: str, evidence: list[str],
                attributes: dict[str, str], time_ms: int | None = None, entity_id: str | None = None) -> Finding:
        """A finding of this rule about ``entity_id`` (default: ``event``'s entity; the author and file travel
        with it), at ``time_ms`` (default: the event's time)."""
        entity = entity_id or event.entity_id
        return Finding(
            finding_id=finding_id,
            detector=self.detector_id,
            title=self.title,
            maturity=self.maturity,
            severity=self.severity,
            time_ms=event.time_ms if time_ms is None else time_ms,
            entity_id=entity,
            entities=[e for e in dict.fromkeys([entity, *event.entities]) if e and not e.endswith(":")],
            summary=summary,
            tactics=list(self.tactics),
            atlas_techniques=list(self.atlas),
            attack_techniques=list(self.attack),
            evidence_event_ids=evidence,
            ai_asset=bool(event.model_id or self.atlas),
            attributes={"sigma_rule_id": self.id, "sigma_author": self.author,
                        "sigma_references": " ".join(self.references), "sigma_level": self.level,
                        "sigma_status": self.status, "sigma_file": self.path.name, **attributes},
        )


def metadata(item: SigmaRule | SigmaCorrelationRule, path: Path) -> dict[str, Any]:
    """``Metadata`` fields of a parsed rule (its id checked by the caller)."""
    status = item.status.name.lower() if item.status is not None else "experimental"
    level = item.level.name.lower() if item.level is not None else "medium"
    attack, atlas, tactics = tags_of(item.tags)
    return {"id": str(item.id), "title": item.title, "path": path, "severity": LEVELS.get(level, "medium"),
            "maturity": STATUSES.get(status, "sandbox"), "level": level, "status": status,
            "author": item.author or "", "references": [str(r) for r in item.references], "attack": attack,
            "atlas": atlas, "tactics": tactics}


@dataclass
class Rule(Metadata):
    """One loaded Sigma detection rule: its metadata and its condition trees after the aiwarden pipeline
    (field names are aiwarden fields)."""

    logsource: str  # key of fields.LOGSOURCES
    description: str
    conditions: list[Any] = field(repr=False)  # OR-ed (a rule may list several conditions)
    fields: set[str] = field(default_factory=set)
    sigma: SigmaRule | None = field(default=None, repr=False, compare=False)  # as written (for other backends)
    name: str = ""  # Sigma's optional rule name, which correlations may refer to
    standalone: bool = True  # False: only feeds correlations (Sigma's generate: false)


def tags_of(tags: Iterable[Any]) -> tuple[list[str], list[str], list[str]]:
    """ATT&CK technique ids, ATLAS technique ids and tactics from a rule's tags."""
    attack: list[str] = []
    atlas: list[str] = []
    tactics: list[str] = []
    for tag in tags:
        name = tag.name.lower()
        if tag.namespace == "attack":
            match = ATTACK_TECHNIQUE.fullmatch(name)
            if match:
                attack.append(f"T{match.group(1)}" + (f".{match.group(2)}" if match.group(2) else ""))
            elif not re.fullmatch(r"[gs]\d{4}", name):  # groups and software are not tactics
                tactics.append(name.replace("-", "_"))
        elif tag.namespace == "atlas":
            match = ATLAS_TECHNIQUE.fullmatch(name)
            if match:
                atlas.append(f"AML.T{match.group(1)}" + (f".{match.group(2)}" if match.group(2) else ""))
    return attack, atlas, tactics


def _walk(node: Any) -> Iterable[Any]:
    yield node
    for arg in getattr(node, "args", None) or ():
        yield from _walk(arg)


def prepare(rule: SigmaRule, path: Path) -> Rule:
    """A parsed rule checked and mapped for aiwarden; ``RuleError`` names the file and the problem."""
    where = f"{path}"
    if rule.id is None:
        msg = f"{where}: rule {rule.title!r} has no id (Sigma rules need a UUID id)"
        raise RuleError(msg)
    key = logsource_key(rule.logsource.product, rule.logsource.service, rule.logsource.category)
    if key is None:
        given = {k: v for k, v in (("product", rule.logsource.product), ("service", rule.logsource.service),
                                   ("category", rule.logsource.category)) if v}
        known = ", ".join(LOGSOURCES)
        msg = f"{where}: log source {given} has no aiwarden events (known: {known})"
        raise RuleError(msg)
    mapped = copy.deepcopy(rule)
    try:
        aiwarden_pipeline().apply(mapped)
        conditions = [condition.parsed for condition in mapped.detection.parsed_condition]
    except SigmaError as exc:
        msg = f"{where}: {exc}"
        raise RuleError(msg) from None
    source = LOGSOURCES[key]
    used: set[str] = set()
    for tree in conditions:
        for node in _walk(tree):
            if isinstance(node, ConditionValueExpression):
                used.add(source.keyword_field)
                continue
            name = getattr(node, "field", None)
            if name is None or not hasattr(node, "value"):
                continue
            if field_of(name) is None:
                known = ", ".join(sorted(source.fields))
                msg = f"{where}: field {name!r} is not mapped for log source {key} (known: {known})"
                raise RuleError(msg)
            used.add(name)
    return Rule(
        **metadata(rule, path),
        logsource=key,
        description=rule.description or "",
        conditions=conditions,
        fields=used,
        sigma=rule,
        name=rule.name or "",
    )


def rule_files(paths: Iterable[Path]) -> list[Path]:
    """Rule files under ``paths`` (files as given, folders searched recursively), sorted, no repeats."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def load_file(path: Path) -> tuple[list[Rule], list[SigmaCorrelationRule], list[RuleProblem]]:
    """The rules of one file (a file may hold several YAML documents), and its problems."""
    from detectors.sigma.matcher import check_rule  # the matcher compiles Rule objects of this module
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [], [RuleProblem(path, f"cannot read: {exc}")]
    try:
        collection = SigmaCollection.from_yaml(text, collect_errors=True)
    except SigmaError as exc:
        return [], [], [RuleProblem(path, str(exc))]
    except Exception as exc:  # noqa: BLE001 - YAML errors and anything pySigma lets through
        return [], [], [RuleProblem(path, f"not a Sigma rule file: {exc}")]
    problems = [RuleProblem(path, str(error)) for error in collection.errors]
    rules: list[Rule] = []
    correlations: list[SigmaCorrelationRule] = []
    for item in collection.rules:
        if isinstance(item, SigmaCorrelationRule):
            correlations.append(item)  # resolved once every file is loaded (references cross files)
            continue
        if not isinstance(item, SigmaRule):
            problems.append(RuleProblem(path, f"{type(item).__name__} {item.title!r}: not supported"))
            continue
        if item.errors:
            problems.extend(RuleProblem(path, str(error)) for error in item.errors)
            continue
        if item.status is not None and item.status.name.lower() in SKIPPED_STATUSES:
            log.info("%s: rule %s is %s, not loaded", path, item.id, item.status.name.lower())
            continue
        try:
            rule = prepare(item, path)
            check_rule(rule)
        except RuleError as exc:
            problems.append(RuleProblem(path, str(exc).removeprefix(f"{path}: ")))
            continue
        except Unsupported as exc:
            problems.append(RuleProblem(path, f"rule {item.id}: unsupported: {exc}"))
            continue
        rules.append(rule)
    # pySigma reports a rule's error on the rule and on the collection: once is enough
    return rules, correlations, list(dict.fromkeys(problems))


@dataclass
class RuleSet:
    """Rules loaded from ``paths``, with the problems found and each file's modification time."""

    paths: list[Path]
    rules: list[Rule] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    mtimes: dict[Path, float] = field(default_factory=dict)
    correlations: list[Any] = field(default_factory=list)  # correlation.Correlation
    loaded: bool = False
    _cache: dict[Path, Cached] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> RuleSet:
        ruleset = cls(list(paths))
        ruleset.reload_if_changed()
        return ruleset

    def _snapshot(self) -> dict[Path, float]:
        times: dict[Path, float] = {}
        for path in self.paths:
            if not path.exists():
                continue
            times[path] = path.stat().st_mtime
        for path in rule_files(p for p in self.paths if p.exists()):
            try:
                times[path] = path.stat().st_mtime
            except OSError:
                continue
        return times

    def reload_if_changed(self) -> bool:
        """Re-read the files added, changed or removed since the last load; whether anything changed."""
        times = self._snapshot()
        if self.loaded and times == self.mtimes:
            return False
        rules: list[Rule] = []
        problems: list[RuleProblem] = [RuleProblem(p, "no such file or folder") for p in self.paths if not p.exists()]
        seen: dict[str, Path] = {}
        cache: dict[Path, Cached] = {}
        pending: list[tuple[Path, SigmaCorrelationRule]] = []
        for path in rule_files(p for p in self.paths if p.exists()):
            mtime = times.get(path, 0.0)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                _, file_rules, file_correlations, file_problems = cached
            else:
                file_rules, file_correlations, file_problems = load_file(path)
            cache[path] = (mtime, file_rules, file_correlations, file_problems)
            problems.extend(file_problems)
            pending.extend((path, item) for item in file_correlations)
            for rule in file_rules:
                if rule.id in seen:
                    message = f"rule id {rule.id} is also in {seen[rule.id]}; this copy ignored"
                    problems.append(RuleProblem(path, message))
                    continue
                seen[rule.id] = path
                rules.append(rule)
        self.correlations = self._resolve(rules, pending, problems)
        self.rules, self.problems, self.mtimes, self._cache = rules, problems, times, cache
        self.loaded = True
        for problem in problems:
            log.error("sigma rule not loaded: %s", problem)
        return True

    @staticmethod
    def _resolve(rules: list[Rule], pending: list[tuple[Path, SigmaCorrelationRule]],
                 problems: list[RuleProblem]) -> list[Any]:
        from detectors.sigma.correlation import prepare_correlation  # it builds on this module

        by_ref = {**{r.name: r for r in rules if r.name}, **{r.id: r for r in rules}}
        for rule in rules:
            rule.standalone = True
        correlations = []
        seen: set[str] = {r.id for r in rules}
        for path, item in pending:
            try:
                correlation = prepare_correlation(item, path, by_ref)
            except RuleError as exc:
                problems.append(RuleProblem(path, str(exc).removeprefix(f"{path}: ")))
                continue
            if correlation.id in seen:
                problems.append(RuleProblem(path, f"rule id {correlation.id} is loaded twice; this copy ignored"))
                continue
            seen.add(correlation.id)
            correlations.append(correlation)
        for correlation in correlations:
            if not correlation.generate:
                for rule in correlation.rules:
                    rule.standalone = False
        return correlations
