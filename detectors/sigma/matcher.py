"""The stream matcher: every loaded rule compiled, once, into Python functions over ``Event``.

pySigma parses rules but does not match events. Here each rule's condition tree (after the aiwarden
pipeline, so its fields are aiwarden fields) becomes one Python boolean expression, and all rules
that can see a given ``(source, class_uid)`` become one generated function: an event is tested only
against the rules of its log source, each field is read (and lower-cased) at most once per event,
when a rule first needs it, and the raw record is parsed only when a rule reaches a ``raw.*`` field.
``Matcher.match(event)`` is one dictionary lookup and one call.

Semantics (shared with the ClickHouse backend through ``semantics`` and ``fields``): see those
modules. Modifiers: ``contains``, ``startswith``, ``endswith``, ``all``, ``re`` (with ``i``/``m``/``s``),
``cidr``, ``base64`` / ``base64offset``, ``windash``, ``exists``, ``gt``/``gte``/``lt``/``lte``,
``cased``, wildcards, ``null``, keywords, ``1 of`` / ``all of``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import orjson
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
)

from detectors.sigma.fields import LOGSOURCES, Field, field_of
from detectors.sigma.rules import Rule
from detectors.sigma.semantics import NUMERIC_RE, Unsupported, keyword_pattern, string_op
from schemas.envelope import Event

_U = object()  # "not read yet"
PY_OPS = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
          CompareOperators.GTE: ">=", CompareOperators.NEQ: "!="}
RE_FLAGS = {SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE, SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
            SigmaRegularExpressionFlag.DOTALL: re.DOTALL}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _load(raw: str) -> Any:
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}


def _raw(doc: Any, path: tuple[str, ...]) -> str:
    value = doc
    for key in path:
        if type(value) is not dict:
            return ""
        value = value.get(key)
        if value is None:
            return ""
    if type(value) is str:
        return value
    return orjson.dumps(value).decode()


def _cidr(text: str, network: Network) -> bool:
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False


def _isnum(text: str) -> bool:
    return NUMERIC_RE.match(text) is not None


class _Group:
    """Code generation for the rules of one ``(source, class_uid)``."""

    def __init__(self) -> None:
        self.slots: dict[str, int] = {}
        self.consts: list[Any] = []

    def const(self, value: Any) -> str:
        self.consts.append(value)
        return f"K[{len(self.consts) - 1}]"

    def slot(self, name: str) -> tuple[int, Field]:
        spec = field_of(name)
        if spec is None:  # checked at load time; a rule reaching here is a bug
            msg = f"unmapped field {name!r}"
            raise Unsupported(msg)
        index = self.slots.setdefault(name, len(self.slots))
        return index, spec

    def value(self, name: str) -> str:
        """The field's value (text or int), read once per event."""
        index, spec = self.slot(name)
        py = spec.py.replace("_raw(doc,", "_raw((doc if doc is not _U else (doc := _load(e.raw))),")
        return f"(f{index} if f{index} is not _U else (f{index} := {py}))"

    def text(self, name: str, lower: bool) -> str:
        """The field's value as text, lower-cased when ``lower``."""
        index, spec = self.slot(name)
        if spec.num:
            return f"str({self.value(name)})"
        if not lower:
            return self.value(name)
        return f"(l{index} if l{index} is not _U else (l{index} := {self.value(name)}.lower()))"

    def string(self, name: str, value: SigmaString) -> str:
        lower = not isinstance(value, SigmaCasedString)
        op, text = string_op(value, lower)
        subject = self.text(name, lower)
        return self.apply(op, subject, text)

    def apply(self, op: str, subject: str, text: str) -> str:
        if op == "eq":
            return f"{subject} == {text!r}"
        if op == "startswith":
            return f"{subject}.startswith({text!r})"
        if op == "endswith":
            return f"{subject}.endswith({text!r})"
        if op == "contains":
            return f"{text!r} in {subject}"
        return f"{self.const(re.compile(text))}.match({subject}) is not None"

    def cost(self, node: Any) -> int:
        if isinstance(node, ConditionFieldEqualsValueExpression):
            spec = field_of(node.field)
            return spec.cost if spec is not None else 0
        if isinstance(node, ConditionValueExpression):
            return 1
        return max((self.cost(arg) for arg in getattr(node, "args", ()) or ()), default=0)

    def expr(self, node: Any, keyword_field: str) -> str:
        if isinstance(node, ConditionAND):
            # pure predicates: test the cheap fields (columns) before the ones that parse the raw record
            args = sorted(node.args, key=self.cost)
            return "(" + " and ".join(self.expr(a, keyword_field) for a in args) + ")" if args else "True"
        if isinstance(node, ConditionOR):
            fused = self.fused_or(node)
            if fused is not None:
                return fused
            return "(" + " or ".join(self.expr(a, keyword_field) for a in node.args) + ")" if node.args else "False"
        if isinstance(node, ConditionNOT):
            return f"(not {self.expr(node.args[0], keyword_field)})"
        if isinstance(node, ConditionValueExpression):
            if isinstance(node.value, SigmaString):
                return self.string(keyword_field, keyword_pattern(node.value))
            if isinstance(node.value, SigmaNumber):
                return self.string(keyword_field, keyword_pattern(SigmaString(str(node.value.number))))
            msg = f"keyword of type {type(node.value).__name__}"
            raise Unsupported(msg)
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.field_expr(node.field, node.value, keyword_field)
        msg = f"condition element {type(node).__name__}"
        raise Unsupported(msg)

    def fused_or(self, node: ConditionOR) -> str | None:
        """``field in {…}`` / ``endswith((…))`` for a list of plain values of one field (the common case)."""
        args = [a for a in node.args if isinstance(a, ConditionFieldEqualsValueExpression)]
        if len(args) < 2 or len(args) != len(node.args):
            return None
        names = {a.field for a in args}
        values = [a.value for a in args if type(a.value) is SigmaString]
        if len(names) != 1 or len(values) != len(args):
            return None
        name = next(iter(names))
        ops = [string_op(v, True) for v in values if isinstance(v, SigmaString)]
        kinds = {op for op, _ in ops}
        if len(kinds) != 1 or kinds & {"glob", "contains"}:
            return None
        kind = kinds.pop()
        texts = tuple(text for _, text in ops)
        subject = self.text(name, True)
        if kind == "eq":
            return f"{subject} in {self.const(frozenset(texts))}"
        return f"{subject}.{kind}({texts!r})"

    def field_expr(self, name: str, value: Any, keyword_field: str) -> str:
        _, spec = self.slot(name)
        if isinstance(value, SigmaString):
            return self.string(name, value)
        if isinstance(value, SigmaExpansion):
            return "(" + " or ".join(self.field_expr(name, v, keyword_field) for v in value.values) + ")"
        if isinstance(value, SigmaBool):
            if spec.num:
                return f"{self.value(name)} == {int(value.boolean)}"
            return f"{self.text(name, True)} == {str(value.boolean).lower()!r}"
        if isinstance(value, SigmaNumber):
            if spec.num:
                return f"{self.value(name)} == {value.number!r}"
            return f"{self.text(name, True)} == {str(value.number)!r}"
        if isinstance(value, SigmaNull):
            return f"{self.value(name)} == {0 if spec.num else ''!r}"
        if isinstance(value, SigmaExists):
            empty = 0 if spec.num else ""
            return f"{self.value(name)} {'!=' if value.exists else '=='} {empty!r}"
        if isinstance(value, SigmaCompareExpression):
            op, number = PY_OPS[value.op], value.number.number
            if spec.num:
                return f"{self.value(name)} {op} {number!r}"
            subject = self.text(name, False)
            return f"(_isnum({subject}) and float({subject}) {op} {number!r})"
        if isinstance(value, SigmaRegularExpression):
            flags = 0
            for flag in value.flags:
                flags |= RE_FLAGS[flag]
            pattern = re.compile(str(value.regexp), flags)
            return f"{self.const(pattern)}.search({self.text(name, False)}) is not None"
        if isinstance(value, SigmaCIDRExpression):
            return f"_cidr({self.text(name, False)}, {self.const(value.network)})"
        msg = f"value of type {type(value).__name__} (field {name!r})"
        raise Unsupported(msg)


def compile_group(rules: list[tuple[int, Rule]]) -> Callable[[Event], list[int]]:
    """One function returning the indices of the rules (of this group) that match an event."""
    group = _Group()
    lines = []
    for index, rule in rules:
        keyword_field = LOGSOURCES[rule.logsource].keyword_field
        terms = [group.expr(tree, keyword_field) for tree in rule.conditions]
        lines.append(f"    if {' or '.join(terms)}:\n        out.append({index})")
    names = ["doc"] + [f"f{i}" for i in group.slots.values()] + [f"l{i}" for i in group.slots.values()]
    source = (
        "def match(e):\n"
        f"    {' = '.join(names)} = _U\n"
        "    out = []\n" + "\n".join(lines) + "\n    return out\n"
    )
    namespace: dict[str, Any] = {"_U": _U, "_load": _load, "_raw": _raw, "_cidr": _cidr, "_isnum": _isnum,
                                 "K": group.consts}
    exec(compile(source, "<sigma rules>", "exec"), namespace)  # noqa: S102 - our own generated code
    fn: Callable[[Event], list[int]] = namespace["match"]
    fn.__doc__ = source
    return fn


def check_rule(rule: Rule) -> None:
    """Raise ``Unsupported`` when the stream matcher cannot compile ``rule`` (load-time check)."""
    compile_group([(0, rule)])


class Matcher:
    """Every rule, dispatched by ``(event.source, event.class_uid)``."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        by_events: dict[tuple[str, int], list[tuple[int, Rule]]] = {}
        for index, rule in enumerate(self.rules):
            for pair in LOGSOURCES[rule.logsource].events:
                by_events.setdefault(pair, []).append((index, rule))
        self.dispatch = {pair: compile_group(group) for pair, group in by_events.items()}

    def match(self, event: Event) -> list[Rule]:
        """The rules ``event`` matches, in load order."""
        fn = self.dispatch.get((event.source, event.class_uid))
        if fn is None:
            return []
        hits = fn(event)
        if not hits:
            return []
        rules = self.rules
        return [rules[i] for i in hits]
