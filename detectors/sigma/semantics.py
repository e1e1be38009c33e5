"""How a Sigma value matches a field, decided once for both engines (stream and ClickHouse).

String matching is case-insensitive (Sigma's default: both sides lower-cased) unless the rule says
``|cased``; wildcards ``*`` and ``?`` match any run / one character. A pattern is classified into
the cheapest operation that means the same thing: ``eq``, ``startswith``, ``endswith``,
``contains``, else a regular expression over the whole value (``glob``). Numbers compare as numbers
on numeric fields and as their text on text fields; ``gt``/``gte``/``lt``/``lte`` on a text field
compare only values that are decimal numbers (``NUMERIC``), in both engines.
"""

from __future__ import annotations

import re

from sigma.types import Placeholder, SigmaString, SpecialChars

# A text value that numeric comparisons accept: the same test in Python and in ClickHouse (RE2).
NUMERIC = r"^-?[0-9]+(\.[0-9]+)?$"
NUMERIC_RE = re.compile(NUMERIC)


class Unsupported(ValueError):
    """A rule uses a Sigma feature neither engine evaluates (named in the message)."""


def string_op(value: SigmaString, lower: bool) -> tuple[str, str]:
    """``(op, text)``: ``eq`` / ``startswith`` / ``endswith`` / ``contains`` with plain text, or ``glob``
    with an anchored regular expression (Python and RE2 syntax alike). ``text`` is lower-cased
    when ``lower``."""
    parts = value.s
    if any(isinstance(part, Placeholder) for part in parts):
        msg = f"placeholder in {value!s}: the expand modifier needs a pipeline that fills it"
        raise Unsupported(msg)
    specials = [i for i, p in enumerate(parts) if isinstance(p, SpecialChars)]

    def text(items: list[str | SpecialChars | Placeholder]) -> str:
        joined = "".join(p for p in items if isinstance(p, str))
        return joined.lower() if lower else joined

    multi = SpecialChars.WILDCARD_MULTI
    if not specials:
        return "eq", text(list(parts))
    n = len(parts)
    only_multi = all(parts[i] is multi for i in specials)
    if only_multi and specials == [n - 1] and n > 1:
        return "startswith", text(list(parts))
    if only_multi and specials == [0] and n > 1:
        return "endswith", text(list(parts))
    if only_multi and specials == [0, n - 1] and n > 2:
        return "contains", text(list(parts))
    pattern = []
    for part in parts:
        if part is multi:
            pattern.append(".*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            pattern.append(".")
        elif isinstance(part, str):
            pattern.append(escape(part.lower() if lower else part))
    return "glob", "^(?s:" + "".join(pattern) + ")$"


_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


def escape(text: str) -> str:
    """``text`` as a literal in a regular expression that Python's ``re`` and RE2 read alike."""
    return _SPECIAL.sub(r"\\\1", text)


def number_text(number: int | float) -> str:
    """A Sigma number as the text it matches on a text field."""
    return str(number)


def keyword_pattern(value: SigmaString) -> SigmaString:
    """A field-less keyword matches anywhere in the searched text: ``*value*``."""
    parts = list(value.s)
    multi = SpecialChars.WILDCARD_MULTI
    if not parts or parts[0] is not multi:
        parts.insert(0, multi)
    if parts[-1] is not multi:
        parts.append(multi)
    pattern = SigmaString()
    pattern.s = tuple(parts)  # type: ignore[assignment]
    return pattern
