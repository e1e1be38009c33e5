"""Sigma correlation rules (``event_count``, ``value_count``, ``temporal``, ``temporal_ordered``) in the
stream, with per-group state in the detect stage's store, and as ClickHouse GROUP BY / HAVING.

A correlation names the rules it correlates (by id or ``name``, in any loaded file), ``group-by``
fields (in the referenced rules' own field names), a ``timespan`` and a condition. In the stream,
an event matching a referenced rule is re-keyed by ``<correlation id>|<group values>`` through the
detect stage's re-key topic, so one worker owns each group and its state survives a restart like
every detector's (the ``rekeyed-state`` store). The window is sliding: a correlation fires when the
events of the last ``timespan`` satisfy it, then its group starts afresh. Conditions: ``gte`` / ``gt``
(``eq`` fires when the count reaches the value); ``lt`` / ``lte`` need a window to close and are not
evaluated in the stream. In ClickHouse the window is tumbling (``toStartOfInterval``), so a burst
straddling two windows may be found by the stream and not by SQL: the stream is the reference.

Referenced rules do not report findings of their own unless the correlation says ``generate: true``
(Sigma's specification).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.correlations import SigmaCorrelationRule

from detectors.base import h32
from detectors.sigma.fields import FIELDS, LOGSOURCES, RAW_PREFIX, field_of, sql_string
from detectors.sigma.rules import Metadata, Rule, RuleError, metadata
from schemas.envelope import Event
from schemas.findings import Finding, stable_id

TYPES = ("event_count", "value_count", "temporal", "temporal_ordered")
STREAM_OPS = ("gte", "gt", "eq")
MAX_ITEMS = 64  # remembered times / values per group


@dataclass
class Correlation(Metadata):
    """A loaded correlation rule, resolved against the loaded detection rules."""

    type: str
    rules: list[Rule]
    group_by: list[str]  # Sigma field names
    group_fields: dict[str, list[str]]  # rule id -> aiwarden field per group-by name
    value_fields: dict[str, str]  # rule id -> aiwarden field counted (value_count)
    timespan_ms: int
    op: str
    count: float
    generate: bool
    getters: dict[str, Callable[[Event], str]] = field(default_factory=dict, repr=False)

    def group_key(self, rule: Rule, event: Event) -> str:
        return "\x1f".join(self.getters[name](event) for name in self.group_fields[rule.id])

    def value(self, rule: Rule, event: Event) -> str:
        return self.getters[self.value_fields[rule.id]](event)


def _getter(name: str) -> Callable[[Event], str]:
    from detectors.sigma.matcher import _load, _raw

    spec = field_of(name)
    if spec is None:
        msg = f"unmapped field {name!r}"
        raise RuleError(msg)
    code = spec.py.replace("_raw(doc,", "_raw(_load(e.raw),")
    fn: Callable[[Event], Any] = eval(f"lambda e: {code}", {"_raw": _raw, "_load": _load})  # noqa: S307 - our own
    return lambda event: str(fn(event))


def _aiwarden_field(rule: Rule, sigma_name: str, where: str) -> str:
    source = LOGSOURCES[rule.logsource]
    if sigma_name in source.fields:
        return source.fields[sigma_name]
    if source.raw_fallback:
        return RAW_PREFIX + sigma_name
    if sigma_name in FIELDS:
        return sigma_name
    msg = f"{where}: group-by field {sigma_name!r} is not mapped for log source {rule.logsource} of rule {rule.id}"
    raise RuleError(msg)


def prepare_correlation(item: SigmaCorrelationRule, path: Path, rules: dict[str, Rule]) -> Correlation:
    """A correlation resolved against ``rules`` (by id and by name); ``RuleError`` names the problem."""
    where = f"{path}"
    if item.id is None:
        msg = f"{where}: correlation {item.title!r} has no id"
        raise RuleError(msg)
    kind = item.type.name.lower()
    if kind not in TYPES:
        msg = f"{where}: correlation type {kind} is not supported (supported: {', '.join(TYPES)})"
        raise RuleError(msg)
    condition = item.condition
    op = getattr(getattr(condition, "op", None), "name", "").lower()
    if op not in STREAM_OPS:
        msg = f"{where}: condition {op or condition!r} cannot fire in a stream (use gte, gt or eq)"
        raise RuleError(msg)
    referenced: list[Rule] = []
    for reference in item.rules or []:
        found = rules.get(str(reference.reference))
        if found is None:
            msg = f"{where}: correlation {item.id} refers to rule {reference.reference!r}, which is not loaded"
            raise RuleError(msg)
        referenced.append(found)
    if not referenced:
        msg = f"{where}: correlation {item.id} refers to no rule"
        raise RuleError(msg)
    if item.aliases.aliases:
        msg = f"{where}: correlation field aliases are not supported"
        raise RuleError(msg)
    group_by = list(item.group_by or [])
    group_fields = {r.id: [_aiwarden_field(r, name, where) for name in group_by] for r in referenced}
    value_fields: dict[str, str] = {}
    if kind == "value_count":
        fieldref = getattr(condition, "fieldref", None)
        if not isinstance(fieldref, str):
            msg = f"{where}: value_count needs one condition field"
            raise RuleError(msg)
        value_fields = {r.id: _aiwarden_field(r, fieldref, where) for r in referenced}
    names = {n for fields in (*group_fields.values(), list(value_fields.values())) for n in fields}
    return Correlation(
        **metadata(item, path), type=kind, rules=referenced, group_by=group_by, group_fields=group_fields,
        value_fields=value_fields, timespan_ms=item.timespan.seconds * 1000, op=op,
        count=float(getattr(condition, "count", 0)), generate=bool(item.generate),
        getters={name: _getter(name) for name in names},
    )


def _reached(correlation: Correlation, count: float) -> bool:
    if correlation.op == "gte":
        return count >= correlation.count
    if correlation.op == "gt":
        return count > correlation.count
    return count == correlation.count


def correlate(state: dict[str, Any], correlation: Correlation, rule: Rule, event: Event, group: str,
              max_evidence: int = 20) -> list[Finding]:
    """Update a group's state with an event matching ``rule``; the finding when the correlation holds."""
    now, span = event.time_ms, correlation.timespan_ms
    # [time, key, event id, entity id]
    items: list[list[Any]] = [i for i in state.get("i", []) if now - i[0] <= span]
    # An event counts once: one seen again (redelivered, re-published) neither counts twice nor, once its
    # group fired, starts a new group (``f``: the event ids of the last group that fired).
    if event.event_id in state.get("f", ()) or any(i[2] == event.event_id for i in items):
        return []
    kind = correlation.type
    if kind == "event_count":
        items.append([now, "", event.event_id, event.entity_id])
        reached = _reached(correlation, len(items))
    elif kind == "value_count":
        value = h32(correlation.value(rule, event))
        items = [i for i in items if i[1] != value] + [[now, value, event.event_id, event.entity_id]]
        reached = _reached(correlation, len(items))
    else:
        order = [r.id for r in correlation.rules]
        items = [i for i in items if i[1] != rule.id] + [[now, rule.id, event.event_id, event.entity_id]]
        seen = {i[1]: i[0] for i in items}
        reached = all(r in seen for r in order)
        if reached and kind == "temporal_ordered":
            times = [seen[r] for r in order]
            reached = times == sorted(times)
    if not reached:
        state["i"] = items[-MAX_ITEMS:]
        return []
    state.clear()  # the group starts afresh
    state["f"] = [i[2] for i in items][-MAX_ITEMS:]
    # the group's first event names the finding: the same group found again (events re-published, taken in
    # another order) gives the same row, whichever event completed it
    opener = min(items, key=lambda i: (i[0], i[2]))
    first = opener[0]
    evidence = [i[2] for i in items][-max_evidence:]
    values = dict(zip(correlation.group_by, group.split("\x1f"), strict=False)) if correlation.group_by else {}
    shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "all events"
    return [correlation.finding(
        event,
        finding_id=stable_id(correlation.detector_id, group, str(first)),
        time_ms=first,  # the group's first event: one finding id, one time, whichever event completed it
        summary=f"Sigma correlation: {correlation.title} ({shown}; {len(items)} events within "
        f"{correlation.timespan_ms // 1000} s; rule by {correlation.author or 'unknown author'})",
        evidence=evidence,
        attributes={"sigma_type": correlation.type, "sigma_group": shown[:256]},
        entity_id=opener[3] if len(opener) > 3 else None,
    )]


def correlation_sql(correlation: Correlation) -> str:
    """GROUP BY / HAVING over tumbling windows of ``timespan`` since ``{since:DateTime64(3)}``."""
    from detectors.sigma.clickhouse import where_clause

    wheres = {r.id: where_clause(r) for r in correlation.rules}

    def per_rule(exprs: dict[str, str]) -> str:
        if len(exprs) == 1:
            return next(iter(exprs.values()))
        arms = ", ".join(f"({wheres[rid]}), {expr}" for rid, expr in exprs.items())
        return f"multiIf({arms}, '')"

    groups = [
        per_rule({r.id: f"toString({field_of(correlation.group_fields[r.id][i]).sql})"  # type: ignore[union-attr]
                  for r in correlation.rules}) + f" AS `{name}`"
        for i, name in enumerate(correlation.group_by)
    ]
    seconds = correlation.timespan_ms // 1000
    op = {"gte": ">=", "gt": ">", "eq": "="}[correlation.op]
    count = repr(correlation.count) if correlation.count != int(correlation.count) else str(int(correlation.count))
    if correlation.type == "event_count":
        measure, having = "count() AS events", f"events {op} {count}"
    elif correlation.type == "value_count":
        value = per_rule({r.id: field_of(correlation.value_fields[r.id]).sql  # type: ignore[union-attr]
                          for r in correlation.rules})
        measure, having = f"uniqExact({value}) AS distinct_values", f"distinct_values {op} {count}"
    else:
        label = per_rule({r.id: sql_string(r.id) for r in correlation.rules})
        measure = f"uniqExact({label}) AS rules_seen"
        having = f"rules_seen = {len(correlation.rules)}"
        if correlation.type == "temporal_ordered":
            pairs = zip(correlation.rules, correlation.rules[1:], strict=False)
            having += "".join(f" AND minIf(time, {wheres[a.id]}) <= maxIf(time, {wheres[b.id]})" for a, b in pairs)
    select = ", ".join([*groups, f"toStartOfInterval(time, INTERVAL {seconds} SECOND) AS window", measure,
                        "min(time) AS first_seen", "max(time) AS last_seen"])
    keys = ", ".join([f"`{name}`" for name in correlation.group_by] + ["window"])
    any_rule = " OR ".join(f"({w})" for w in wheres.values())
    return (
        f"-- Sigma correlation {correlation.id} ({correlation.type}): {correlation.title}\n"
        f"SELECT {select}\nFROM events FINAL\nWHERE time >= {{since:DateTime64(3)}} AND ({any_rule})\n"
        f"GROUP BY {keys}\nHAVING {having}\nORDER BY first_seen\nLIMIT {{limit:UInt32}}"
    )
