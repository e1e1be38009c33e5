"""Saved hunts and ad-hoc SQL against ClickHouse, read-only: ``aiwarden hunt``.

A saved hunt is one ``schemas/clickhouse/hunts/<name>.sql`` file: a YAML header in comment lines
between two ``-- ---`` lines, then one SELECT whose parameters use ClickHouse's server-side
binding, ``{name:Type}``::

    -- ---
    -- description: Top principals and API keys by token volume in a window
    -- params:
    --   since: {type: DateTime64(3), default: 1d, help: "start of the window"}
    --   limit: {type: UInt32, default: 20}
    -- ---
    SELECT ... WHERE time >= {since:DateTime64(3)} ... LIMIT {limit:UInt32}

Header keys: ``description`` (required), ``notes`` (optional, longer text), ``params``: each with
``type`` (required, the ClickHouse type its placeholders use), ``default`` (optional; without
one the parameter is required) and ``help``. Every placeholder in the SQL must be declared with
the same type, and every declared parameter used.

Values (from ``--param name=value`` or a default) are text written the way a hunter types them,
and the server converts them to the parameter's type, so what a value can be is ClickHouse's
rule, not ours. Date-time parameters also take ``now`` or a duration ago (``90s``, ``30m``,
``12h``, ``7d``, ``2w``) and any time ``parseDateTime64BestEffort`` reads (``2025-06-01``,
``2025-06-01T12:00:00Z``). Array parameters take a comma-separated list or an array literal
(``['a','b']``); a default may also be a YAML list. Values never become SQL text: they are bound.

Hunts run read-only: the client is ``connect(settings, readonly=True)`` and every query also
carries ``readonly=1``, so the server refuses writes and refuses changes to the limits
``max_execution_time`` and ``max_result_rows`` (``result_overflow_mode='break'``: the result is
cut at ``max_rows``, which the CLI reports).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infra.settings import Settings

HUNTS_DIR = Path(__file__).resolve().parents[1] / "schemas" / "clickhouse" / "hunts"
FENCE = "-- ---"
DEFAULT_MAX_ROWS = 10_000
DEFAULT_TIMEOUT_S = 30.0

PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\([A-Za-z0-9_ ,'()]*\))?")
DATETIME_TYPE = re.compile(r"(Nullable\()?(LowCardinality\()?DateTime(64)?\b")
ARRAY_TYPE = re.compile(r"Array\(")
NUMERIC_TYPE = re.compile(r"(U?Int\d+|Float\d+|Decimal\d*\(.*\))")
STRING_TYPES = frozenset({"String", "LowCardinality(String)"})
DURATION = re.compile(r"-?\s*(\d+)\s*(s|m|h|d|w)")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

CAST_SQL = "SELECT CAST({v:String}, {t:String})"
# Comments and string literals, so that placeholders and ';' are looked for in code only.
_COMMENTS_AND_STRINGS = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|--[^\n]*|/\*.*?\*/", re.S)

READONLY_CODE = 164
TIMEOUT_CODE = 159
_CODE = re.compile(r"Code: (\d+)")


class HuntError(Exception):
    """A hunt file, a parameter or a query that cannot be run; the message says which and why."""

    exit_code = 1


class HuntUsageError(HuntError):
    """Bad input: an unknown hunt, an unknown, missing or ill-typed parameter, a bad hunt file."""

    exit_code = 2


class ReadOnlyRefused(HuntError):
    """The server refused the statement because hunts are read-only."""

    exit_code = 2


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | list[str] | None = None  # None: required
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def describe(self) -> str:
        if self.default is None:
            return f"{self.name}: {self.type} (required)"
        default = ",".join(self.default) if isinstance(self.default, list) else self.default
        return f"{self.name}: {self.type} = {default!r}"


@dataclass(frozen=True)
class Hunt:
    name: str
    description: str
    params: dict[str, Param]
    sql: str
    path: Path | None = None
    notes: str = ""

    @property
    def where(self) -> str:
        """How errors name the hunt: its name and file."""
        return f"hunt {self.name!r} ({self.path})" if self.path else f"query {self.name!r}"

    @classmethod
    def adhoc(cls, sql: str) -> Hunt:
        """An ad-hoc query; its ``{name:Type}`` placeholders are its (required) parameters."""
        params = {name: Param(name, " ".join(type_.split())) for name, type_ in PLACEHOLDER.findall(code_only(sql))}
        return cls("--sql", "ad-hoc SQL", params, sql)


class Rows(list[Sequence[Any]]):
    """Result rows; ``truncated`` when the result had more than ``max_rows`` rows."""

    truncated: bool = False


# -- hunt files


def _value_text(value: Any) -> str | list[str]:
    """A YAML default as the text a hunter would type (lists stay lists)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def parse_hunt(path: Path) -> Hunt:
    """Read and check one hunt file; a ``HuntUsageError`` names the file and what is wrong."""
    text = path.read_text()
    lines = text.splitlines()
    where = f"hunt file {path}"
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None or lines[start].rstrip() != FENCE:
        msg = f"{where}: must begin with a header between {FENCE!r} lines"
        raise HuntUsageError(msg)
    header_lines: list[str] = []
    end = None
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if line.rstrip() == FENCE:
            end = index
            break
        if not line.startswith("--"):
            msg = f"{where}, line {index + 1}: header lines must be SQL comments (--) up to a closing {FENCE!r}"
            raise HuntUsageError(msg)
        header_lines.append(line[3:] if line.startswith("-- ") else line[2:])
    if end is None:
        msg = f"{where}: header has no closing {FENCE!r} line"
        raise HuntUsageError(msg)
    try:
        header = yaml.safe_load("\n".join(header_lines)) or {}
    except yaml.YAMLError as exc:
        msg = f"{where}: header is not valid YAML: {exc}"
        raise HuntUsageError(msg) from None
    if not isinstance(header, dict):
        msg = f"{where}: header must be a mapping (description, params)"
        raise HuntUsageError(msg)
    unknown = set(header) - {"description", "notes", "params"}
    if unknown:
        msg = f"{where}: unknown header keys {sorted(unknown)} (allowed: description, notes, params)"
        raise HuntUsageError(msg)
    description = header.get("description")
    if not isinstance(description, str) or not description.strip():
        msg = f"{where}: header needs a description"
        raise HuntUsageError(msg)
    params = _parse_params(where, header.get("params") or {})
    sql = "\n".join(lines[end + 1 :]).strip().rstrip(";").strip()
    if not sql:
        msg = f"{where}: no SQL after the header"
        raise HuntUsageError(msg)
    if ";" in code_only(sql).rstrip(";"):
        msg = f"{where}: one statement per hunt (found ';' inside the SQL)"
        raise HuntUsageError(msg)
    _check_placeholders(where, sql, params)
    notes = header.get("notes") or ""
    return Hunt(path.stem, description.strip(), params, sql, path, str(notes).strip())


def _parse_params(where: str, raw: Any) -> dict[str, Param]:
    if not isinstance(raw, dict):
        msg = f"{where}: params must be a mapping of name to {{type, default, help}}"
        raise HuntUsageError(msg)
    params: dict[str, Param] = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            msg = f"{where}: param name {name!r} is not an identifier"
            raise HuntUsageError(msg)
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            msg = f"{where}: param {name!r} needs a type, e.g. {{type: String}}"
            raise HuntUsageError(msg)
        extra = set(spec) - {"type", "default", "help"}
        if extra:
            msg = f"{where}: param {name!r} has unknown keys {sorted(extra)} (allowed: type, default, help)"
            raise HuntUsageError(msg)
        type_ = " ".join(spec["type"].split())
        if not TYPE.fullmatch(type_):
            msg = f"{where}: param {name!r} has an invalid type {type_!r}"
            raise HuntUsageError(msg)
        default = _value_text(spec["default"]) if "default" in spec and spec["default"] is not None else None
        params[name] = Param(name, type_, default, str(spec.get("help") or ""))
    return params


def code_only(sql: str) -> str:
    """``sql`` without comments and with string literals emptied: where placeholders can be."""
    return _COMMENTS_AND_STRINGS.sub(lambda m: "" if m.group(0)[0] in "-/" else "''", sql)


def _normal_type(type_: str) -> str:
    return re.sub(r"\s*,\s*", ", ", " ".join(type_.split()))


def _check_placeholders(where: str, sql: str, params: dict[str, Param]) -> None:
    used: dict[str, str] = {}
    for name, type_ in PLACEHOLDER.findall(code_only(sql)):
        if name not in params:
            msg = f"{where}: placeholder {{{name}:{type_}}} is not declared in params"
            raise HuntUsageError(msg)
        if _normal_type(type_) != _normal_type(params[name].type):
            msg = f"{where}: placeholder {{{name}:{type_}}} does not match the declared type {params[name].type}"
            raise HuntUsageError(msg)
        used[name] = type_
    unused = sorted(set(params) - set(used))
    if unused:
        msg = f"{where}: declared params never used in the SQL: {', '.join(unused)}"
        raise HuntUsageError(msg)


def load_hunts(directory: Path = HUNTS_DIR) -> dict[str, Hunt]:
    """Every ``*.sql`` hunt in ``directory`` by name; a bad file raises ``HuntUsageError`` naming it."""
    if not directory.is_dir():
        msg = f"no hunts directory at {directory}"
        raise HuntUsageError(msg)
    return {path.stem: parse_hunt(path) for path in sorted(directory.glob("*.sql"))}


# -- running


def query_settings(max_rows: int, timeout_s: float) -> dict[str, Any]:
    """Per-query settings: read-only, time-limited, result cut after ``max_rows`` (one more to tell)."""
    return {
        "readonly": 1,
        "max_execution_time": timeout_s,
        "timeout_overflow_mode": "throw",
        "max_result_rows": max_rows + 1,
        "result_overflow_mode": "break",
    }


def error_code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def clickhouse_message(exc: BaseException) -> str:
    """The server's own one-line reason, without the client's wrapping and the URL."""
    text = str(exc)
    match = re.search(r"DB::Exception: (.*)", text, re.S)
    message = match.group(1) if match else text
    message = message.split("Stack trace", 1)[0]
    message = re.sub(r"\s*\(for url [^)]*\)", "", message)
    message = re.sub(r"^[\w.-]+: (?=[A-Z])", "", message.strip())  # "default: Cannot…" (user name)
    message = " ".join(message.split())
    return message[:400] + ("…" if len(message) > 400 else "")


def _query(client: Client, sql: str, parameters: dict[str, Any], settings: dict[str, Any]) -> Any:
    return client.query(sql, parameters=parameters or None, settings=settings)


def resolve_value(client: Client, param: Param, value: str | list[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Convert one value (text, or a list for arrays) to ``param.type`` on the server; raises
    ``DatabaseError`` when the server cannot. Date-times come back as the server's text."""
    settings = query_settings(1, timeout_s)
    type_ = param.type
    if isinstance(value, str) and type_ in STRING_TYPES:
        return value
    binds: dict[str, Any]
    if DATETIME_TYPE.match(type_):
        text = value if isinstance(value, str) else ",".join(value)
        text = text.strip()
        if text.lower() == "now":
            sql, binds = "SELECT toString(CAST(now64(3), {t:String}))", {"t": type_}
        elif match := DURATION.fullmatch(text):
            ms = int(match.group(1)) * UNIT_SECONDS[match.group(2)] * 1000
            sql = "SELECT toString(CAST(now64(3) - toIntervalMillisecond({ms:Int64}), {t:String}))"
            binds = {"ms": ms, "t": type_}
        else:
            sql = "SELECT toString(CAST(parseDateTime64BestEffort({v:String}, 3, 'UTC'), {t:String}))"
            binds = {"v": text, "t": type_}
        return _query(client, sql, binds, settings).result_rows[0][0]
    if ARRAY_TYPE.match(type_) and (isinstance(value, list) or not value.lstrip().startswith("[")):
        items = value if isinstance(value, list) else [v.strip() for v in value.split(",") if v.strip()]
        result = _query(client, "SELECT CAST({v:Array(String)}, {t:String})", {"v": items, "t": type_}, settings)
        return result.result_rows[0][0]
    text = value if isinstance(value, str) else ",".join(value)
    # accurateCast refuses what does not fit (300 as UInt8); CAST handles every other type.
    sql = "SELECT accurateCast({v:String}, {t:String})" if NUMERIC_TYPE.fullmatch(type_) else CAST_SQL
    result = _query(client, sql, {"v": text.strip(), "t": type_}, settings)
    converted = result.result_rows[0][0]
    if isinstance(converted, bool):
        return "true" if converted else "false"
    return converted


def resolve_params(
    client: Client, hunt: Hunt, given: dict[str, Any] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Any]:
    """Every parameter of ``hunt`` from ``given`` or its default, converted by the server.

    Unknown, missing and ill-typed parameters raise ``HuntUsageError`` naming the hunt and the param.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(hunt.params))
    if unknown:
        takes = ", ".join(hunt.params) or "no parameters"
        msg = f"{hunt.where}: unknown param {unknown[0]!r}; it takes: {takes}"
        raise HuntUsageError(msg)
    resolved: dict[str, Any] = {}
    for param in hunt.params.values():
        if param.name in given:
            value, origin = given[param.name], "value"
        elif param.default is not None:
            value, origin = param.default, "default"
        else:
            msg = f"{hunt.where}: param {param.name!r} ({param.type}) is required: --param {param.name}=…"
            raise HuntUsageError(msg)
        if not isinstance(value, str | list):
            value = _value_text(value)
        try:
            resolved[param.name] = resolve_value(client, param, value, timeout_s)
        except DatabaseError as exc:
            if isinstance(exc, OperationalError):
                raise
            msg = (
                f"{hunt.where}: param {param.name!r} {origin} {value!r} is not a valid {param.type} "
                f"(ClickHouse: {clickhouse_message(exc)})"
            )
            raise HuntUsageError(msg) from None
    return resolved


def execute(
    client: Client, hunt: Hunt, params: dict[str, Any], max_rows: int, timeout_s: float
) -> tuple[list[str], Rows]:
    if max_rows < 1:
        msg = "max_rows must be at least 1"
        raise HuntUsageError(msg)
    try:
        result = client.query(hunt.sql, parameters=params or None, settings=query_settings(max_rows, timeout_s))
    except OperationalError as exc:
        msg = f"{hunt.where}: cannot reach ClickHouse: {exc}"
        raise HuntError(msg) from None
    except ClickHouseError as exc:
        code = error_code(exc)
        if code == READONLY_CODE:
            msg = f"refused: hunts are read-only (ClickHouse: {clickhouse_message(exc)})"
            raise ReadOnlyRefused(msg) from None
        if code == TIMEOUT_CODE:
            msg = f"{hunt.where}: timed out after {timeout_s:g} s (raise --timeout, or narrow the window)"
            raise HuntError(msg) from None
        msg = f"{hunt.where} failed: {clickhouse_message(exc)}"
        raise HuntError(msg) from None
    rows = Rows(result.result_rows[:max_rows])
    rows.truncated = len(result.result_rows) > max_rows
    columns = list(result.column_names)
    if not columns and not rows:
        # An empty Native result carries no header: ask the server for the query's columns.
        try:
            described = client.query(
                f"DESCRIBE TABLE (\n{hunt.sql}\n)", parameters=params or None, settings=query_settings(1, timeout_s)
            )
            columns = [row[0] for row in described.result_rows]
        except ClickHouseError:  # not a SELECT (SHOW, EXPLAIN …): no columns to show
            columns = []
    return columns, rows


def run_hunt(
    client: Client,
    hunt: Hunt,
    params: dict[str, Any] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[list[str], Rows]:
    """Run a saved hunt; ``params`` are values as text (or lists), the rest take their defaults."""
    try:
        resolved = resolve_params(client, hunt, params, timeout_s)
    except OperationalError as exc:
        msg = f"{hunt.where}: cannot reach ClickHouse: {exc}"
        raise HuntError(msg) from None
    return execute(client, hunt, resolved, max_rows, timeout_s)


def run_sql(
    client: Client,
    sql: str,
    params: dict[str, Any] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[list[str], Rows]:
    """Run ad-hoc read-only SQL; its ``{name:Type}`` placeholders take ``params`` (all required)."""
    return run_hunt(client, Hunt.adhoc(sql), params, max_rows, timeout_s)


# -- output


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)  # Decimal, IP addresses, anything else: its text


_JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds" if value.microsecond else "seconds")
    if isinstance(value, list | tuple | dict):
        return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS).decode()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def render(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: OutputFormat | str = "table", width: int = 160
) -> str:
    """Rows as a rich table, JSON lines (orjson; times in UTC with ``Z``) or CSV with a header."""
    fmt = OutputFormat(fmt)
    if fmt is OutputFormat.json:
        return "".join(
            orjson.dumps(dict(zip(columns, row, strict=True)), default=_json_default, option=_JSON_OPTIONS).decode()
            + "\n"
            for row in rows
        )
    if fmt is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
        return buffer.getvalue()
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(Text(column), overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(v)) for v in row))  # Text: data is never read as rich markup
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False).print(table)
    return buffer.getvalue()


# -- command line


hunt_app = typer.Typer(
    help="Hunt in ClickHouse, read-only: saved hunts (schemas/clickhouse/hunts) or ad-hoc SQL.",
    add_completion=False,
)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    if isinstance(settings, Settings):
        return settings
    return Settings()


def clickhouse_settings(settings: Settings) -> Settings:
    """Settings with the local ClickHouse address filled in; Kafka need not be running to hunt."""
    if settings.clickhouse.url:
        return settings
    from infra import services

    return services.resolved(settings, need=("clickhouse",))


def _parse_param_options(options: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        name = name.strip()
        if not sep or not NAME.fullmatch(name):
            msg = f"--param expects NAME=VALUE, got {option!r}"
            raise HuntUsageError(msg)
        if name in params:
            msg = f"--param {name} given twice"
            raise HuntUsageError(msg)
        params[name] = value
    return params


def _list_hunts(hunts: dict[str, Hunt], fmt: OutputFormat, width: int) -> str:
    columns = ["name", "description", "params"]
    rows: list[tuple[Any, ...]] = [
        (hunt.name, hunt.description, "; ".join(p.describe() for p in hunt.params.values())) for hunt in hunts.values()
    ]
    if fmt is OutputFormat.json:
        columns = ["name", "description", "params", "notes", "path"]
        rows = [
            (
                hunt.name,
                hunt.description,
                {p.name: {"type": p.type, "default": p.default, "help": p.help} for p in hunt.params.values()},
                hunt.notes,
                str(hunt.path),
            )
            for hunt in hunts.values()
        ]
    return render(columns, rows, fmt, width)


@hunt_app.callback(
    invoke_without_command=True, subcommand_metavar="", context_settings={"allow_interspersed_args": True}
)
def hunt(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Saved hunt to run (see --list).", show_default=False)] = None,
    list_hunts: Annotated[bool, typer.Option("--list", "-l", help="List the saved hunts and their params.")] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="NAME=VALUE", help="A hunt parameter (repeatable)."),
    ] = None,
    sql: Annotated[
        str | None, typer.Option("--sql", help="Run this read-only SQL ({name:Type} placeholders take --param).")
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows returned at most.")] = DEFAULT_MAX_ROWS,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds the server may spend.")] = (
        DEFAULT_TIMEOUT_S
    ),
    hunts_dir: Annotated[Path, typer.Option("--hunts-dir", help="Directory of saved hunts.")] = HUNTS_DIR,
) -> None:
    """Run a saved hunt (aiwarden hunt NAME --param k=v), ad-hoc SQL (--sql), or list hunts (--list)."""
    if ctx.invoked_subcommand is not None:
        return
    width = shutil.get_terminal_size((160, 24)).columns
    try:
        if list_hunts:
            typer.echo(_list_hunts(load_hunts(hunts_dir), fmt, width), nl=False)
            return
        if (name is None) == (sql is None):
            if name is None:
                typer.echo(ctx.get_help())
                raise typer.Exit(0)
            msg = "give a hunt NAME or --sql, not both"
            raise HuntUsageError(msg)
        params = _parse_param_options(param or [])
        target = Hunt.adhoc(sql) if sql is not None else None
        if target is None:
            hunts = load_hunts(hunts_dir)
            if name not in hunts:
                msg = f"no hunt {name!r} in {hunts_dir} (aiwarden hunt --list shows {len(hunts)})"
                raise HuntUsageError(msg)
            target = hunts[name]
        columns, rows = _run(settings_of(ctx), target, params, max_rows, timeout)
    except HuntError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    typer.echo(render(columns, rows, fmt, width), nl=False)
    if rows.truncated:
        typer.echo(f"note: result cut at --max-rows {max_rows}", err=True)


def _run(
    settings: Settings, target: Hunt, params: dict[str, str], max_rows: int, timeout: float
) -> tuple[list[str], Rows]:
    from infra import services
    from infra.clickhouse.client import connect
    from infra.clickhouse.cluster import hunt_database
    from infra.kafka.clients import NotConfiguredError

    try:
        resolved = clickhouse_settings(settings)
        client = connect(
            resolved, readonly=True, database=hunt_database(resolved), send_receive_timeout=int(timeout) + 30
        )
    except (services.ServiceError, NotConfiguredError) as exc:
        raise HuntError(str(exc)) from None
    except OperationalError as exc:
        msg = f"cannot reach ClickHouse at {settings.clickhouse.url or 'the local server'}: {exc}"
        raise HuntError(msg) from None
    try:
        return run_hunt(client, target, params, max_rows, timeout)
    finally:
        client.close()


__all__ = [
    "HUNTS_DIR",
    "Hunt",
    "HuntError",
    "HuntUsageError",
    "OutputFormat",
    "Param",
    "ReadOnlyRefused",
    "Rows",
    "clickhouse_message",
    "hunt_app",
    "load_hunts",
    "parse_hunt",
    "render",
    "resolve_params",
    "run_hunt",
    "run_sql",
]
