"""Every saved hunt file parses and declares exactly the parameters its SQL binds; the runner's
offline parts (header parsing, output formats, CLI errors that need no server)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from streams.hunt import (
    HUNTS_DIR,
    HuntUsageError,
    Param,
    code_only,
    hunt_app,
    load_hunts,
    parse_hunt,
    render,
)

pytestmark = pytest.mark.unit

HUNT_FILES = sorted(HUNTS_DIR.glob("*.sql"))
REQUIRED = {
    "top_token_principals",
    "new_ai_workloads",
    "shadow_ai_egress",
    "entity_timeline",
    "alerts_by_technique",
    "keys_from_many_networks",
    "dead_letters_by_reason",
    "top_egress_destinations",
}
REPLACING_TABLES = ("events", "findings", "alerts", "inventory")
# Independent of the runner's own regex: {name:Type} with a ClickHouse type.
PLACEHOLDER = re.compile(r"\{(\w+):([^{}]+)\}")


def test_the_required_hunts_exist() -> None:
    assert REQUIRED <= {path.stem for path in HUNT_FILES}


@pytest.mark.parametrize("path", HUNT_FILES, ids=lambda p: p.stem)
def test_hunt_file_parses_with_a_description(path: Path) -> None:
    hunt = parse_hunt(path)
    assert hunt.name == path.stem
    assert hunt.path == path
    assert len(hunt.description) > 15
    assert path.read_text().startswith("-- ---\n")
    for param in hunt.params.values():
        assert param.help, f"{path.name}: param {param.name} has no help"


@pytest.mark.parametrize("path", HUNT_FILES, ids=lambda p: p.stem)
def test_placeholders_and_declared_params_match(path: Path) -> None:
    hunt = parse_hunt(path)
    used: dict[str, set[str]] = {}
    for name, type_ in PLACEHOLDER.findall(code_only(hunt.sql)):
        used.setdefault(name, set()).add(" ".join(type_.split()))
    assert set(used) == set(hunt.params), f"{path.name}: used {sorted(used)} declared {sorted(hunt.params)}"
    for name, types in used.items():
        assert types == {hunt.params[name].type}, f"{path.name}: {name} used as {types}"


@pytest.mark.parametrize("path", HUNT_FILES, ids=lambda p: p.stem)
def test_hunts_bind_values_and_read_replacing_tables_final(path: Path) -> None:
    hunt = parse_hunt(path)
    code = code_only(hunt.sql)
    assert "%(" not in code and "%s" not in code, "values are bound server-side, never formatted in"
    # Events may instead be deduplicated by id (their redelivered copies are identical): FINAL keeps
    # an OR of two indexed conditions from using either index.
    deduplicated = {"events"} if re.search(r"LIMIT\s+1\s+BY\s+event_id\b", code, re.I) else set()
    for match in re.finditer(r"\b(?:FROM|JOIN)\s+([a-z_]+)\b(\s+FINAL\b)?", code, re.I):
        table, final = match.group(1), match.group(2)
        if table in REPLACING_TABLES:
            assert final or table in deduplicated, (
                f"{path.name}: {table} is a ReplacingMergeTree, read it FINAL (or LIMIT 1 BY its id) for exact counts")
    assert not re.search(r"\baiwarden\.", code), "hunts name tables without a database (cluster: <db>_all)"


def test_window_params_have_defaults_and_entity_is_required() -> None:
    hunts = load_hunts()
    for hunt in hunts.values():
        for name in ("since", "until", "limit"):
            if name in hunt.params:
                assert not hunt.params[name].required, f"{hunt.name}.{name} should have a default"
    assert hunts["entity_timeline"].params["entity"].required
    hosts = hunts["shadow_ai_egress"].params["hosts"]
    assert hosts.type == "Array(String)" and isinstance(hosts.default, list) and "api.openai.com" in hosts.default


# -- header format errors name the file


def write(tmp_path: Path, text: str, name: str = "h.sql") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_HEADER = (
    "-- ---\n-- description: a test hunt\n-- params:\n--   n: {type: UInt32, default: 5, help: rows}\n-- ---\n"
)


def test_a_good_file(tmp_path: Path) -> None:
    body = "SELECT number FROM numbers(10) LIMIT {n:UInt32};\n"
    hunt = parse_hunt(write(tmp_path, GOOD_HEADER + body))
    assert hunt.params == {"n": Param("n", "UInt32", "5", "rows")}
    assert hunt.sql.endswith("LIMIT {n:UInt32}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1", "must begin with a header"),
        ("-- ---\n-- description: x\nSELECT 1", "header lines must be SQL comments"),
        ("-- ---\n-- description: x\n", "no closing"),
        ("-- ---\n-- params: {}\n-- ---\nSELECT 1", "needs a description"),
        ("-- ---\n-- description: x\n-- colour: red\n-- ---\nSELECT 1", "unknown header keys"),
        ("-- ---\n-- description: [x\n-- ---\nSELECT 1", "not valid YAML"),
        ("-- ---\n-- description: x\n-- ---\n", "no SQL"),
        ("-- ---\n-- description: x\n-- ---\nSELECT {n:UInt8}", "placeholder {n:UInt8} is not declared"),
        (GOOD_HEADER + "SELECT 1", "never used in the SQL: n"),
        (GOOD_HEADER + "SELECT {n:UInt64}", "does not match the declared type UInt32"),
        (GOOD_HEADER + "SELECT {n:UInt32}; DROP TABLE x", "one statement per hunt"),
        ("-- ---\n-- description: x\n-- params:\n--   n: {default: 1}\n-- ---\nSELECT {n:UInt8}", "needs a type"),
        ("-- ---\n-- description: x\n-- params:\n--   n: {type: 'UInt8; DROP'}\n-- ---\nSELECT 1", "invalid type"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "broken_hunt.sql")
    with pytest.raises(HuntUsageError, match=re.escape(message)) as info:
        parse_hunt(path)
    assert str(path) in str(info.value)


def test_placeholders_in_comments_and_strings_do_not_count(tmp_path: Path) -> None:
    sql = "SELECT '{x:String}', 'it''s -- not a comment {y:UInt8}' -- {z:String}\n/* {w:Date} */ , {n:UInt32}"
    assert PLACEHOLDER.findall(code_only(sql)) == [("n", "UInt32")]
    parse_hunt(write(tmp_path, GOOD_HEADER + sql))


# -- output


COLUMNS = ["name", "when", "tags", "attrs", "n", "score"]
ROWS = [
    ("a,b", datetime(2025, 6, 1, 12, 0, 0, 123000, tzinfo=UTC), ["x", "y"], {"k": "v"}, 3, 0.5),
    ('q"uote', datetime(2025, 6, 1, 12, 0, 1), [], {}, 0, None),  # noqa: DTZ001 - naive = UTC, as the client returns
]


def test_render_json_lines() -> None:
    lines = render(COLUMNS, ROWS, "json").splitlines()
    first = orjson.loads(lines[0])
    assert first == {
        "name": "a,b",
        "when": "2025-06-01T12:00:00.123000Z",
        "tags": ["x", "y"],
        "attrs": {"k": "v"},
        "n": 3,
        "score": 0.5,
    }
    assert orjson.loads(lines[1])["when"] == "2025-06-01T12:00:01Z"
    assert render(COLUMNS, [], "json") == ""


def test_render_csv() -> None:
    parsed = list(csv.reader(io.StringIO(render(COLUMNS, ROWS, "csv"))))
    assert parsed[0] == COLUMNS
    assert parsed[1] == ["a,b", "2025-06-01 12:00:00.123+00:00", '["x","y"]', '{"k":"v"}', "3", "0.5"]
    assert parsed[2][0] == 'q"uote' and parsed[2][-1] == ""


def test_render_table() -> None:
    text = render(COLUMNS, ROWS, "table", width=200)
    assert "name" in text and "a,b" in text and '["x","y"]' in text and "2025-06-01 12:00:00.123" in text
    assert "score" in render(COLUMNS, [], "table")  # an empty result still shows its columns


# -- command line, without a server


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(hunt_app, list(args), obj=Settings(clickhouse={"url": "http://127.0.0.1:9"}))


def test_cli_lists_hunts() -> None:
    result = invoke("--list", "--format", "json")
    assert result.exit_code == 0, result.output
    listed = {orjson.loads(line)["name"]: orjson.loads(line) for line in result.stdout.splitlines()}
    assert REQUIRED <= set(listed)
    entity = listed["entity_timeline"]["params"]["entity"]
    assert entity["type"] == "String" and entity["default"] is None
    assert listed["top_token_principals"]["params"]["limit"]["default"] == "20"


def test_cli_usage_errors_exit_2_with_one_line() -> None:
    unknown = invoke("no_such_hunt")
    assert unknown.exit_code == 2
    assert "no hunt 'no_such_hunt'" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    bad = invoke("entity_timeline", "--param", "entity")
    assert bad.exit_code == 2 and "--param expects NAME=VALUE" in bad.stderr
    both = invoke("entity_timeline", "--sql", "SELECT 1")
    assert both.exit_code == 2 and "not both" in both.stderr


def test_cli_bad_hunts_dir_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "-- ---\n-- description: x\n-- ---\nSELECT {n:UInt8}", "oops.sql")
    result = invoke("--hunts-dir", str(tmp_path), "oops")
    assert result.exit_code == 2
    assert "oops.sql" in result.stderr and "{n:UInt8}" in result.stderr


def test_cli_unreachable_server_is_a_clear_error() -> None:
    result = invoke("--sql", "SELECT 1", "--timeout", "2")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "ClickHouse" in result.stderr


def test_render_table_never_reads_data_as_markup() -> None:
    text = render(["[b]col"], [("[/oops] [red]hi",)], "table")
    assert "[b]col" in text and "[/oops] [red]hi" in text
