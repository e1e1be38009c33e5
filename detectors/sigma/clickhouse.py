"""A pySigma backend for ClickHouse over aiwarden's ``events`` table: the same rules as SQL, for retro-hunts.

``ClickHouseBackend`` is a pySigma ``TextQueryBackend`` with the aiwarden pipeline as its backend
pipeline; it turns a rule's condition into a WHERE expression whose every field is the ClickHouse
expression of ``fields.FIELDS`` and whose every comparison follows ``semantics``, so a rule selects
the same events here as the stream matcher does. ``rule_sql(rule)`` wraps it into a query over the
rule's log source (``(source, class_uid)`` pairs) and a time window, with ClickHouse parameters
``{since:DateTime64(3)}`` and ``{limit:UInt32}`` for ``streams.hunt`` to bind and run read-only.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any, ClassVar, TypeVar

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
)

from detectors.sigma.fields import LOGSOURCES, Field, field_of, sql_string
from detectors.sigma.pipeline import aiwarden_pipeline
from detectors.sigma.rules import Rule
from detectors.sigma.semantics import NUMERIC, Unsupported, keyword_pattern, string_op

T = TypeVar("T")
SQL_OPS = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
           CompareOperators.GTE: ">=", CompareOperators.NEQ: "!="}
RE_FLAGS = {SigmaRegularExpressionFlag.IGNORECASE: "i", SigmaRegularExpressionFlag.MULTILINE: "m",
            SigmaRegularExpressionFlag.DOTALL: "s"}
COLUMNS = ("time", "event_id", "source", "entity_id", "activity", "principal", "namespace", "pod", "host",
           "process_name", "process_cmdline", "api_operation", "model_id", "dst_host", "dst_port", "message")


def _typed(value: Any, kind: type[T]) -> T:
    if not isinstance(value, kind):
        msg = f"expected {kind.__name__}, got {type(value).__name__}"
        raise TypeError(msg)
    return value


def _num(value: int | float) -> str:
    return repr(value)


class ClickHouseBackend(TextQueryBackend):
    """Sigma → ClickHouse WHERE expressions over ``aiwarden.events``."""

    name: ClassVar[str] = "aiwarden ClickHouse"
    formats: ClassVar[dict[str, str]] = {"default": "WHERE expression over the events table"}
    requires_pipeline: ClassVar[bool] = False

    precedence: ClassVar[tuple[type[ConditionNOT], type[ConditionAND], type[ConditionOR]]] = (
        ConditionNOT, ConditionAND, ConditionOR,
    )
    group_expression: ClassVar[str] = "({expr})"
    parenthesize = True
    or_token: ClassVar[str] = "OR"  # noqa: S105 - a query token, not a password
    and_token: ClassVar[str] = "AND"  # noqa: S105
    not_token: ClassVar[str] = "NOT"  # noqa: S105
    eq_token: ClassVar[str] = " = "  # noqa: S105
    str_quote: ClassVar[str] = "'"
    escape_char: ClassVar[str] = "\\"
    # never true / always true: the empty OR / AND
    empty_or_expression: ClassVar[str] = "0"
    empty_and_expression: ClassVar[str] = "1"

    def __init__(self, processing_pipeline: ProcessingPipeline | None = None, **kwargs: Any) -> None:
        super().__init__(processing_pipeline, **kwargs)
        self.keyword_field = "raw"

    def init_processing_pipeline(self, output_format: str | None = None) -> None:
        # a fresh aiwarden pipeline per rule: pySigma pipeline objects are applied to one rule at a time
        self.backend_processing_pipeline = aiwarden_pipeline()  # type: ignore[misc]
        super().init_processing_pipeline(output_format)

    def convert_rule(self, rule: SigmaRule, output_format: str | None = None, callback: Any = None) -> list[Any]:
        self.last_processing_pipeline = None  # type: ignore[assignment]
        return super().convert_rule(rule, output_format, callback)

    # --- fields and values -------------------------------------------------------------------------
    def spec(self, name: str) -> Field:
        spec = field_of(name)
        if spec is None:
            msg = f"field {name!r} is not an aiwarden field"
            raise Unsupported(msg)
        return spec

    def text(self, name: str, lower: bool) -> str:
        spec = self.spec(name)
        if spec.num:
            return f"toString({spec.sql})"
        return f"lowerUTF8({spec.sql})" if lower else spec.sql

    @staticmethod
    def apply(op: str, subject: str, text: str) -> str:
        literal = sql_string(text)
        if op == "eq":
            return f"{subject} = {literal}"
        if op == "startswith":
            return f"startsWith({subject}, {literal})"
        if op == "endswith":
            return f"endsWith({subject}, {literal})"
        if op == "contains":
            return f"position({subject}, {literal}) > 0"
        return f"match({subject}, {literal})"

    def string(self, name: str, value: SigmaString) -> str:
        lower = not isinstance(value, SigmaCasedString)
        op, text = string_op(value, lower)
        return self.apply(op, self.text(name, lower), text)

    # --- TextQueryBackend hooks ------------------------------------------------------------------------
    def convert_condition_field_eq_val_str(self, cond: ConditionFieldEqualsValueExpression,
                                           state: ConversionState) -> str:
        value = _typed(cond.value, SigmaString)
        return self.string(cond.field, value)

    def convert_condition_field_eq_val_str_case_sensitive(self, cond: ConditionFieldEqualsValueExpression,
                                                          state: ConversionState) -> str:
        value = _typed(cond.value, SigmaString)
        return self.string(cond.field, value)

    def convert_condition_field_eq_val_num(self, cond: ConditionFieldEqualsValueExpression,
                                           state: ConversionState) -> str:
        value = _typed(cond.value, SigmaNumber)
        spec = self.spec(cond.field)
        if spec.num:
            return f"{spec.sql} = {_num(value.number)}"
        return f"{self.text(cond.field, True)} = {sql_string(str(value.number))}"

    def convert_condition_field_eq_val_bool(self, cond: ConditionFieldEqualsValueExpression,
                                            state: ConversionState) -> str:
        value = _typed(cond.value, SigmaBool)
        spec = self.spec(cond.field)
        if spec.num:
            return f"{spec.sql} = {int(value.boolean)}"
        return f"{self.text(cond.field, True)} = {sql_string(str(value.boolean).lower())}"

    def convert_condition_field_eq_val_null(self, cond: ConditionFieldEqualsValueExpression,
                                            state: ConversionState) -> str:
        _typed(cond.value, SigmaNull)
        spec = self.spec(cond.field)
        return f"{spec.sql} = {'0' if spec.num else sql_string('')}"

    def convert_condition_field_eq_val_exists(self, cond: ConditionFieldEqualsValueExpression,
                                              state: ConversionState) -> str:
        value = _typed(cond.value, SigmaExists)
        spec = self.spec(cond.field)
        return f"{spec.sql} {'!=' if value.exists else '='} {'0' if spec.num else sql_string('')}"

    def convert_condition_field_compare_op_val(self, cond: ConditionFieldEqualsValueExpression,
                                               state: ConversionState) -> str:
        value = _typed(cond.value, SigmaCompareExpression)
        spec = self.spec(cond.field)
        op, number = SQL_OPS[value.op], _num(value.number.number)
        if spec.num:
            return f"{spec.sql} {op} {number}"
        subject = spec.sql
        return f"(match({subject}, {sql_string(NUMERIC)}) AND toFloat64OrZero({subject}) {op} {number})"

    def convert_condition_field_eq_val_re(self, cond: ConditionFieldEqualsValueExpression,
                                          state: ConversionState) -> str:
        value = _typed(cond.value, SigmaRegularExpression)
        flags = "".join(sorted(RE_FLAGS[f] for f in value.flags))
        pattern = (f"(?{flags})" if flags else "") + str(value.regexp)
        return f"match({self.text(cond.field, False)}, {sql_string(pattern)})"

    def convert_condition_field_eq_val_cidr(self, cond: ConditionFieldEqualsValueExpression,
                                            state: ConversionState) -> str:
        value = _typed(cond.value, SigmaCIDRExpression)
        network = value.network
        subject = self.text(cond.field, False)
        first, last = sql_string(str(network.network_address)), sql_string(str(network.broadcast_address))
        if isinstance(network, ipaddress.IPv4Network):
            return f"ifNull(toIPv4OrNull({subject}) BETWEEN toIPv4({first}) AND toIPv4({last}), 0)"
        return (f"({subject} != '' AND NOT isIPv4String({subject}) AND "
                f"ifNull(toIPv6OrNull({subject}) BETWEEN toIPv6({first}) AND toIPv6({last}), 0))")

    def convert_condition_field_eq_field(self, cond: ConditionFieldEqualsValueExpression,
                                         state: ConversionState) -> str:
        msg = "field references (fieldref) are not supported"
        raise Unsupported(msg)

    def convert_condition_field_eq_query_expr(self, cond: ConditionFieldEqualsValueExpression,
                                              state: ConversionState) -> str:
        msg = "query expressions are not supported"
        raise Unsupported(msg)

    def convert_condition_val_str(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        value = _typed(cond.value, SigmaString)
        return self.string(self.keyword_field, keyword_pattern(value))

    def convert_condition_val_num(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        value = _typed(cond.value, SigmaNumber)
        return self.string(self.keyword_field, keyword_pattern(SigmaString(str(value.number))))

    def convert_condition_val_re(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        msg = "field-less regular expressions are not supported"
        raise Unsupported(msg)

    def convert_condition_query_expr(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        msg = "query expressions are not supported"
        raise Unsupported(msg)


def where_clause(rule: Rule) -> str:
    """The rule's condition and log source as one ClickHouse boolean expression."""
    if rule.sigma is None:
        msg = f"rule {rule.id} has no Sigma source"
        raise Unsupported(msg)
    backend = ClickHouseBackend()
    sigma = copy.deepcopy(rule.sigma)
    sigma._output = True  # pySigma outputs nothing for a rule only a correlation refers to; we want its filter
    conditions = backend.convert_rule(sigma)
    pairs = ", ".join(f"({sql_string(source)}, {class_uid})" for source, class_uid in LOGSOURCES[rule.logsource].events)
    condition = " OR ".join(f"({c})" for c in conditions) if conditions else "0"
    return f"(source, class_uid) IN ({pairs}) AND ({condition})"


def rule_sql(rule: Rule, columns: tuple[str, ...] = COLUMNS) -> str:
    """A read-only query for the events ``rule`` matches since ``{since:DateTime64(3)}``."""
    return (
        f"-- Sigma rule {rule.id}: {rule.title.replace(chr(10), ' ')}\n"
        f"SELECT {', '.join(columns)}\nFROM events FINAL\n"
        f"WHERE time >= {{since:DateTime64(3)}}\n  AND {where_clause(rule)}\n"
        "ORDER BY time\nLIMIT {limit:UInt32}"
    )
