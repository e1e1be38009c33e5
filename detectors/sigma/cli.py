"""``aiwarden sigma``: check rules, test them on a file of events, print their SQL, hunt with them.

RULE is a rule file (or folder), or the id of a rule among those the worker loads (the pack and
``AIWARDEN_SIGMA__RULES``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from detectors.sigma.detector import rule_paths
from detectors.sigma.rules import RuleSet

sigma_app = typer.Typer(help="Sigma rules: check, test on events, print as SQL, hunt in ClickHouse.",
                        add_completion=False, no_args_is_help=True)


def _settings(ctx: typer.Context) -> Any:
    from streams.hunt import settings_of

    return settings_of(ctx)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def select_rules(ctx: typer.Context, rule: str, correlations: bool = False) -> list[Any]:
    """The rules RULE names: those of a file or folder, or the loaded rule with that id (with
    ``correlations``, its correlation rules too)."""
    path = Path(rule)
    if path.exists():
        ruleset = RuleSet.load([path])
        for problem in ruleset.problems:
            typer.echo(f"error: {problem}", err=True)
        loaded = [*ruleset.rules, *(ruleset.correlations if correlations else [])]
        if not loaded:
            message = f"no rule loaded from {path}"
            raise _fail(message)
        return loaded
    settings = _settings(ctx)
    ruleset = RuleSet.load(rule_paths(settings.sigma.pack, settings.sigma.rules))
    candidates = [*ruleset.rules, *(ruleset.correlations if correlations else [])]
    found = [r for r in candidates if r.id == rule or r.detector_id == rule]
    if not found:
        message = f"no rule file {rule!r} and no loaded rule with that id"
        raise _fail(message)
    return found


def _validators() -> list[Any]:
    from sigma.validators.core import validators

    return [cls() for _, cls in sorted(validators.items())]


@sigma_app.command("check")
def check(paths: Annotated[list[Path], typer.Argument(help="Rule files or folders.")]) -> None:
    """Validate rules: parse, map onto aiwarden's events, compile, and run pySigma's validators."""
    ruleset = RuleSet.load(paths)
    for problem in ruleset.problems:
        typer.echo(f"error: {problem}")
    validators = _validators()
    warnings = 0
    skipped: dict[str, str] = {}
    for rule in ruleset.rules:
        for validator in validators:
            name = type(validator).__name__
            if rule.sigma is None or name in skipped:
                continue
            try:
                issues = validator.validate(rule.sigma)
            except Exception as exc:  # noqa: BLE001 - e.g. the ATT&CK tag validator downloads MITRE's data
                skipped[name] = str(exc).splitlines()[0][:120]
                continue
            for issue in issues:
                tag = getattr(issue, "tag", None)
                if tag is not None and tag.namespace == "atlas":  # aiwarden's MITRE ATLAS tags (atlas.aml.tNNNN)
                    continue
                warnings += 1
                typer.echo(f"warning: {rule.path}: {issue.severity.name.lower()}: {issue.description} ({rule.id})")
    for name, reason in skipped.items():
        typer.echo(f"note: pySigma validator {name} not run: {reason}")
    typer.echo(f"{len(ruleset.rules)} rules and {len(ruleset.correlations)} correlations loaded, "
               f"{len(ruleset.problems)} errors, {warnings} warnings")
    if ruleset.problems or not ruleset.rules:
        raise typer.Exit(1)


@sigma_app.command("test")
def test(
    ctx: typer.Context,
    rule: Annotated[str, typer.Argument(help="Rule file, folder or rule id.")],
    files: Annotated[list[str], typer.Argument(help="Event files (JSON lines, .gz, CloudTrail files; - for stdin).")],
    source: Annotated[str | None, typer.Option(help="Source of every record (default: detected per record).")] = None,
) -> None:
    """Which events of FILES the rules match, through the source parsers and the stream matcher (no Kafka)."""
    import orjson

    from detectors.sigma.matcher import Matcher
    from schemas.codec import RecordError
    from schemas.sources import CLI_NAMES, normalize_bytes
    from streams.publish import iter_inputs

    rules = select_rules(ctx, rule)
    matcher = Matcher(rules)
    reader_source = CLI_NAMES.get(source or "cloudtrail", source or "cloudtrail")
    total = matched = bad = 0
    for data, position in iter_inputs(files, reader_source, sys.stdin.buffer):
        total += 1
        try:
            event = normalize_bytes(data, source)
        except RecordError as exc:
            bad += 1
            typer.echo(f"skipped {position.get('file')}:{position.get('line')}: {exc}", err=True)
            continue
        for hit in matcher.match(event):
            matched += 1
            line = {"rule": hit.id, "title": hit.title, "event_id": event.event_id, "source": event.source,
                    "entity": event.entity_id, "time_ms": event.time_ms, "at": position}
            typer.echo(orjson.dumps(line).decode())
    typer.echo(f"{total} records, {bad} unparsable, {matched} matches of {len(rules)} rules", err=True)


@sigma_app.command("sql")
def sql(ctx: typer.Context, rule: Annotated[str, typer.Argument(help="Rule file, folder or rule id.")]) -> None:
    """Print the ClickHouse query of each rule (parameters {since:DateTime64(3)} and {limit:UInt32})."""
    for item in select_rules(ctx, rule, correlations=True):
        typer.echo(query_of(item) + ";\n")


def query_of(item: Any) -> str:
    from detectors.sigma.clickhouse import rule_sql
    from detectors.sigma.correlation import Correlation, correlation_sql

    return correlation_sql(item) if isinstance(item, Correlation) else rule_sql(item)


@sigma_app.command("hunt")
def hunt(
    ctx: typer.Context,
    rule: Annotated[str, typer.Argument(help="Rule file, folder or rule id.")],
    since: Annotated[str, typer.Option(help="Start of the window: 30d, 12h, now, or a time.")] = "30d",
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows returned at most per rule.")] = 1000,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds the server may spend per rule.")] = 30.0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
) -> None:
    """Run the rules (correlations: GROUP BY / HAVING) over past events in ClickHouse, read-only, like
    ``aiwarden hunt``."""
    from streams.hunt import Hunt, HuntError, Param, _run, render

    width = shutil.get_terminal_size((160, 24)).columns
    failed = False
    for item in select_rules(ctx, rule, correlations=True):
        query = Hunt(
            name=item.detector_id, description=item.title, sql=query_of(item), path=item.path,
            params={"since": Param("since", "DateTime64(3)", "30d"), "limit": Param("limit", "UInt32", "1000")},
        )
        try:
            columns, rows = _run(_settings(ctx), query, {"since": since, "limit": str(max_rows)}, max_rows, timeout)
        except HuntError as exc:
            typer.echo(f"error: {exc}", err=True)
            failed = True
            continue
        typer.echo(f"# {item.title} ({item.id}): {len(rows)} rows", err=True)
        typer.echo(render(columns, rows, fmt, width), nl=False)
    if failed:
        raise typer.Exit(1)
