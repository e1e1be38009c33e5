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

log = logging.getLogger(__name__)

PACK_DIR = Path(__file__).resolve().parent / "rules"
SUFFIXES = (".yml", ".yaml")

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
STATUSES = {"stable": "stable", "test": "incubating", "experimental": "sandbox"}
SKIPPED_STATUSES = frozenset({"deprecated", "unsupported"})
ATTACK_TECHNIQUE = re.compile(r"t(\d{4})(?:\.(\d{3}))?")
ATLAS_TECHNIQUE = re.compile(r"aml\.t(\d{4})(?:\.(\d{3}))?")


class RuleError(ValueError):
    """A rule that cannot be loaded; the message names its file and the problem."""


@dataclass(frozen=True)
class RuleProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Rule:
    """One loaded Sigma detection rule, its findings' metadata and its condition trees after the
    aiwarden pipeline (field names are aiwarden fields)."""

    id: str
    title: str
    path: Path
    logsource: str  # key of fields.LOGSOURCES
    severity: str
    maturity: str
    level: str
    status: str
    author: str
    references: list[str]
    description: str
    attack: list[str]
    atlas: list[str]
    tactics: list[str]
    conditions: list[Any] = field(repr=False)  # OR-ed (a rule may list several conditions)
    fields: set[str] = field(default_factory=set)
    sigma: SigmaRule | None = field(default=None, repr=False, compare=False)  # as written (for other backends)

    @property
    def detector_id(self) -> str:
        return f"sigma:{self.id}"


def _tags(rule: SigmaRule) -> tuple[list[str], list[str], list[str]]:
    attack: list[str] = []
    atlas: list[str] = []
    tactics: list[str] = []
    for tag in rule.tags:
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
    status = rule.status.name.lower() if rule.status is not None else "experimental"
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
    level = rule.level.name.lower() if rule.level is not None else "medium"
    attack, atlas, tactics = _tags(rule)
    author = rule.author or ""
    return Rule(
        id=str(rule.id),
        title=rule.title,
        path=path,
        logsource=key,
        severity=LEVELS.get(level, "medium"),
        maturity=STATUSES.get(status, "sandbox"),
        level=level,
        status=status,
        author=author,
        references=[str(r) for r in rule.references],
        description=rule.description or "",
        attack=attack,
        atlas=atlas,
        tactics=tactics,
        conditions=conditions,
        fields=used,
        sigma=rule,
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


def load_file(path: Path) -> tuple[list[Rule], list[RuleProblem]]:
    """The rules of one file (a file may hold several YAML documents), and its problems."""
    from detectors.sigma.matcher import check_rule  # the matcher compiles Rule objects of this module
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RuleProblem(path, f"cannot read: {exc}")]
    try:
        collection = SigmaCollection.from_yaml(text, collect_errors=True)
    except SigmaError as exc:
        return [], [RuleProblem(path, str(exc))]
    except Exception as exc:  # noqa: BLE001 - YAML errors and anything pySigma lets through
        return [], [RuleProblem(path, f"not a Sigma rule file: {exc}")]
    problems = [RuleProblem(path, str(error)) for error in collection.errors]
    rules: list[Rule] = []
    for item in collection.rules:
        if isinstance(item, SigmaCorrelationRule):
            problems.append(RuleProblem(path, f"correlation rule {item.title!r}: not evaluated yet"))
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
    return rules, list(dict.fromkeys(problems))  # pySigma reports a rule's error on the rule and the collection


@dataclass
class RuleSet:
    """Rules loaded from ``paths``, with the problems found and each file's modification time."""

    paths: list[Path]
    rules: list[Rule] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    mtimes: dict[Path, float] = field(default_factory=dict)
    loaded: bool = False
    _cache: dict[Path, tuple[float, list[Rule], list[RuleProblem]]] = field(default_factory=dict, repr=False)

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
        cache: dict[Path, tuple[float, list[Rule], list[RuleProblem]]] = {}
        for path in rule_files(p for p in self.paths if p.exists()):
            mtime = times.get(path, 0.0)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                file_rules, file_problems = cached[1], cached[2]
            else:
                file_rules, file_problems = load_file(path)
            cache[path] = (mtime, file_rules, file_problems)
            problems.extend(file_problems)
            for rule in file_rules:
                if rule.id in seen:
                    message = f"rule id {rule.id} is also in {seen[rule.id]}; this copy ignored"
                    problems.append(RuleProblem(path, message))
                    continue
                seen[rule.id] = path
                rules.append(rule)
        self.rules, self.problems, self.mtimes, self._cache = rules, problems, times, cache
        self.loaded = True
        for problem in problems:
            log.error("sigma rule not loaded: %s", problem)
        return True
