"""``aiwarden dlq``: dead letters for operators, from ClickHouse's ``dead_letters`` table.

``list`` counts them by source, stage and reason; ``show ID`` prints one with its original bytes;
``replay`` re-publishes the originals to the raw topic they came from (after a parser fix or a
settings change), once per letter: each replay is recorded in ``dlq_replays`` and a letter found
there is skipped, and the event ids derived from the original bytes stay the same, so even two
replays racing each other land each event once in the (ReplacingMergeTree) events table. A
truncated letter no longer holds its whole record: it is reported as not replayable. ``export``
writes letters as JSON lines for a vendor bug report.

Reads are read-only queries with a time and row limit (as hunts); only ``replay`` writes, to
``dlq_replays``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from confluent_kafka import KafkaException

from infra.settings import Settings
from schemas.dead_letter import DeadLetter
from schemas.sources import SOURCES
from streams import topics
from streams.hunt import Hunt, HuntError, Param, render, run_hunt, settings_of

REPLAY_HEADER = "aiwarden-replay-of"  # the dead letter a replayed record came from
TIMEOUT_S = 30.0
# Letters written before letter ids existed get one from what they hold.
LETTER_ID = ("if(letter_id != '', letter_id, substring(lower(hex(SHA256(concat(stage, '|', source, '|', "
             "toString(position), '|', raw)))), 1, 32))")
FILTERS = """time >= {since:DateTime64(3)} AND time < {until:DateTime64(3)}
  AND ({source:String} = '' OR source = {source:String})
  AND ({stage:String} = '' OR stage = {stage:String})
  AND ({reason:String} = '' OR positionCaseInsensitiveUTF8(reason, {reason:String}) > 0)"""
FILTER_PARAMS = {
    "since": Param("since", "DateTime64(3)", "1d"),
    "until": Param("until", "DateTime64(3)", "now"),
    "source": Param("source", "String", ""),
    "stage": Param("stage", "String", ""),
    "reason": Param("reason", "String", ""),
}
LETTER_COLUMNS = (f"{LETTER_ID} AS id, time_ms, reason, source, stage, position, raw, raw_encoding, "
                  "raw_bytes, raw_sha256, truncated")

dlq_app = typer.Typer(help="Dead letters: counts, one letter, replay after a fix, export.", add_completion=False,
                      no_args_is_help=True)

Since = Annotated[str, typer.Option(help="Start of the window: a duration ago (30m, 2h, 1d) or a time.")]
Until = Annotated[str, typer.Option(help="End of the window (exclusive): now, or a time.")]
SourceOpt = Annotated[str, typer.Option("--source", help="Only this source (falco, cloudtrail, …).")]
StageOpt = Annotated[str, typer.Option("--stage", help="Only this stage (publish, normalize, detect, …).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Only reasons containing this text (any case).")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _client(settings: Settings, *, readonly: bool) -> Any:
    from infra import services
    from infra.clickhouse.client import connect
    from infra.clickhouse.cluster import hunt_database
    from infra.kafka.clients import NotConfiguredError

    try:
        resolved = settings if settings.clickhouse.url else services.resolved(settings, need=("clickhouse",))
        return connect(resolved, readonly=readonly, database=hunt_database(resolved))
    except (services.ServiceError, NotConfiguredError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - clickhouse-connect raises several kinds on connect
        msg = f"cannot reach ClickHouse at {settings.clickhouse.url or 'the local server'}: {exc}"
        raise _fail(msg) from None


def _query(client: Any, name: str, sql: str, params: dict[str, Any], max_rows: int,
           extra: dict[str, Param] | None = None) -> tuple[list[str], list[Any]]:
    hunt = Hunt(f"dlq {name}", name, {**FILTER_PARAMS, **(extra or {})}, sql)
    try:
        columns, rows = run_hunt(client, hunt, {k: v for k, v in params.items() if v is not None}, max_rows,
                                 TIMEOUT_S)
    except HuntError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    return columns, rows


def _filters(since: str, until: str, source: str, stage: str, reason: str) -> dict[str, Any]:
    return {"since": since, "until": until, "source": source, "stage": stage, "reason": reason}


def counts(client: Any, filters: dict[str, Any], max_rows: int = 1000) -> tuple[list[str], list[Any]]:
    """Letters per source, stage and reason (numbers folded), with how many are truncated and replayed."""
    sql = f"""
        SELECT source, stage, replaceRegexpAll(reason, '[0-9]+', 'N') AS reason_pattern, count() AS letters,
               countIf(truncated) AS truncated, countIf(id IN (SELECT letter_id FROM dlq_replays)) AS replayed,
               argMin(reason, time) AS example_reason, min(time) AS first_seen, max(time) AS last_seen
        FROM (SELECT {LETTER_ID} AS id, * FROM dead_letters WHERE {FILTERS})
        GROUP BY source, stage, reason_pattern
        ORDER BY letters DESC, source, stage, reason_pattern"""  # noqa: S608 - fixed text, values bound
    return _query(client, "list", sql, filters, max_rows)


def letters(client: Any, filters: dict[str, Any], max_rows: int, ids: list[str] | None = None) -> list[DeadLetter]:
    """The letters matching ``filters`` (or with one of ``ids``), one per letter id, oldest first."""
    id_filter = "AND has({ids:Array(String)}, id)" if ids else ""
    sql = f"""
        SELECT * FROM (SELECT {LETTER_COLUMNS} FROM dead_letters WHERE {FILTERS})
        WHERE 1 {id_filter}
        ORDER BY time_ms, id LIMIT 1 BY id"""  # noqa: S608
    extra = {"ids": Param("ids", "Array(String)", [])} if ids else None
    params = {**filters, "ids": ids} if ids else filters
    columns, rows = _query(client, "letters", sql, params, max_rows, extra)
    return [_letter(dict(zip(columns, row, strict=True))) for row in rows]


def _letter(row: dict[str, Any]) -> DeadLetter:
    return DeadLetter(row["reason"], row["source"], row["stage"], dict(row["position"]), row["raw"],
                      row["raw_encoding"], int(row["time_ms"]), row["id"], int(row["raw_bytes"]), row["raw_sha256"],
                      bool(row["truncated"]))


def replayed_ids(client: Any, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    hunt = Hunt("dlq replayed", "replayed", {"ids": Param("ids", "Array(String)")},
                "SELECT DISTINCT letter_id FROM dlq_replays WHERE has({ids:Array(String)}, letter_id)")
    try:
        _, rows = run_hunt(client, hunt, {"ids": ids}, len(ids), TIMEOUT_S)
    except HuntError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    return {row[0] for row in rows}


def raw_topic(letter: DeadLetter) -> str | None:
    """The raw topic a letter's record came from (or would have gone to), if it was a raw record."""
    topic = str(letter.position.get("topic", ""))
    if topic in topics.RAW_TOPICS:
        return topic
    if letter.stage == "publish" and letter.source in SOURCES:
        return SOURCES[letter.source].topic
    return None


def not_replayable(letter: DeadLetter) -> str | None:
    """Why a letter cannot be replayed, or None."""
    if letter.truncated:
        return f"truncated: it keeps {len(letter.original())} of the record's {letter.raw_bytes} bytes"
    if raw_topic(letter) is None:
        return f"not a raw record (stage {letter.stage}, from {letter.position or 'nowhere'})"
    return None


@dataclass
class ReplayReport:
    replayed: list[DeadLetter]
    already: list[DeadLetter]
    refused: list[tuple[DeadLetter, str]]
    failed: list[tuple[DeadLetter, str]]


def replay(settings: Settings, found: list[DeadLetter], client: Any, writer: Any, *, dry_run: bool = False,
           producer: Any = None) -> ReplayReport:
    """Re-publish each letter of ``found`` not replayed before to its raw topic, then record it in
    ``dlq_replays`` (``writer``: a ClickHouse client that may insert)."""
    from streams.publish import Publisher

    done = replayed_ids(client, [x.letter_id for x in found])
    report = ReplayReport([], [x for x in found if x.letter_id in done], [], [])
    todo: list[tuple[DeadLetter, str]] = []
    for letter in found:
        if letter.letter_id in done:
            continue
        why = not_replayable(letter)
        if why:
            report.refused.append((letter, why))
        else:
            todo.append((letter, raw_topic(letter) or ""))
    if dry_run or not todo:
        report.replayed = [x for x, _ in todo]
        return report
    publisher = Publisher(settings, producer=producer)
    delivered: dict[str, tuple[str, int, int]] = {}

    def on_delivery(letter: DeadLetter, err: Any, message: Any) -> None:
        if err is None:
            delivered[letter.letter_id] = (message.topic(), message.partition(), message.offset())
        else:
            report.failed.append((letter, err.str()))

    for letter, topic in todo:
        data = letter.original()
        source = letter.source if letter.source in SOURCES else None
        key = _entity_key(publisher, data, source)
        headers: list[tuple[str, str | bytes | None]] = [(REPLAY_HEADER, letter.letter_id.encode())]
        if source:
            headers.append((topics.SOURCE_HEADER, source.encode()))
        try:
            publisher.producer.produce(topic, data, key, headers=headers,
                                       on_delivery=partial(on_delivery, letter))
        except KafkaException as exc:
            report.failed.append((letter, f"{topic} refused it: {exc.args[0]}"))
        except BufferError:
            publisher.producer.flush(120)
            todo.append((letter, topic))  # queued again once the producer's queue drained
            continue
        publisher.producer.poll(0)
    remaining = publisher.producer.flush(120)
    rows = []
    for letter, _ in todo:
        if letter.letter_id in delivered:
            topic, partition, offset = delivered[letter.letter_id]
            rows.append([letter.letter_id, letter.source, topic, partition, offset, letter.reason])
            report.replayed.append(letter)
        elif remaining:
            report.failed.append((letter, "not delivered within 120 s"))
    if rows:
        writer.insert("dlq_replays", rows, column_names=["letter_id", "source", "topic", "partition", "offset",
                                                          "reason"])
    return report


def _entity_key(publisher: Any, data: bytes, source: str | None) -> bytes | None:
    """The record's entity id as its key (raw topics are keyed by entity), when it normalizes here."""
    from schemas.codec import RecordError
    from schemas.sources import normalize_bytes

    try:
        return normalize_bytes(data, source, limits=publisher.limits, prompt_chars=0).entity_id.encode()
    except RecordError:
        return None


def where(position: dict[str, Any]) -> str:
    from streams.publish import where as position_text

    return position_text(position)


# -- commands


@dlq_app.command("list")
def list_(
    ctx: typer.Context, since: Since = "1d", until: Until = "now", source: SourceOpt = "", stage: StageOpt = "",
    reason: ReasonOpt = "",
    output_format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Dead letters per source, stage and reason in a window, with how many are truncated and replayed."""
    if output_format not in ("table", "json", "csv"):
        msg = f"unknown format {output_format!r}: table, json or csv"
        raise _fail(msg, 2)
    client = _client(settings_of(ctx), readonly=True)
    try:
        columns, rows = counts(client, _filters(since, until, source, stage, reason))
    finally:
        client.close()
    typer.echo(render(columns, rows, output_format), nl=False)
    if output_format == "table":
        typer.echo(f"{sum(r[3] for r in rows)} dead letters; `aiwarden dlq export` writes them as JSON lines",
                   err=True)


@dlq_app.command()
def show(
    ctx: typer.Context, letter_id: Annotated[str, typer.Argument(metavar="ID", help="The letter's id (dlq export).")],
    raw: Annotated[bool, typer.Option("--raw", help="Write only the original bytes to stdout.")] = False,
) -> None:
    """One dead letter: its reason, where it came from and the original bytes (decoded where possible)."""
    client = _client(settings_of(ctx), readonly=True)
    try:
        found = letters(client, _filters("1970-01-01 00:00:00", "now", "", "", ""), 1, [letter_id])
        replayed = replayed_ids(client, [letter_id])
    finally:
        client.close()
    if not found:
        msg = f"no dead letter {letter_id!r} in ClickHouse"
        raise _fail(msg)
    letter = found[0]
    data = letter.original()
    if raw:
        sys.stdout.buffer.write(data)
        return
    lines = [
        f"letter      {letter.letter_id}",
        f"time        {datetime.fromtimestamp(letter.time_ms / 1000, UTC).isoformat(timespec='milliseconds')}",
        f"reason      {letter.reason}",
        f"source      {letter.source}",
        f"stage       {letter.stage}",
        f"from        {where(letter.position)}",
        f"original    {letter.raw_bytes} bytes, sha256 {letter.raw_sha256 or '-'}",
        f"kept        {'the first ' + str(len(data)) + ' bytes (truncated)' if letter.truncated else 'all of it'}",
        f"replay      {'replayed' if replayed else (not_replayable(letter) or 'replayable')}",
        "",
    ]
    typer.echo("\n".join(lines))
    try:
        typer.echo(data.decode("utf-8"))
    except UnicodeDecodeError:
        typer.echo(f"(not UTF-8; {letter.raw_encoding}:)")
        typer.echo(data.decode("latin-1").encode("unicode_escape").decode("ascii"))


@dlq_app.command("replay")
def replay_command(
    ctx: typer.Context, since: Since = "1d", until: Until = "now", source: SourceOpt = "", stage: StageOpt = "",
    reason: ReasonOpt = "",
    letter_ids: Annotated[list[str] | None, typer.Option("--id", help="Only these letters (repeatable).")] = None,
    limit: Annotated[int, typer.Option(help="Most letters replayed in one run.")] = 100_000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed; publish nothing.")] = False,
) -> None:
    """Re-publish dead-lettered raw records to the topic they came from, once per letter."""
    from streams.cli import resolved_or_exit

    settings = resolved_or_exit(settings_of(ctx))
    client = _client(settings, readonly=True)
    writer = _client(settings, readonly=False)
    try:
        found = letters(client, _filters(since, until, source, stage, reason), limit, letter_ids or None)
        report = replay(settings, found, client, writer, dry_run=dry_run)
    finally:
        client.close()
        writer.close()
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {len(report.replayed)}; already replayed {len(report.already)}; "
               f"not replayable {len(report.refused)}; failed {len(report.failed)}")
    for letter, why in [*report.refused, *report.failed]:
        typer.echo(f"  {letter.letter_id} {where(letter.position)}: {why}", err=True)
    if report.failed:
        raise typer.Exit(1)


@dlq_app.command()
def export(
    ctx: typer.Context, since: Since = "1d", until: Until = "now", source: SourceOpt = "", stage: StageOpt = "",
    reason: ReasonOpt = "",
    output_format: Annotated[str, typer.Option("--format", help="jsonl (one letter per line).")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    limit: Annotated[int, typer.Option(help="Most letters written.")] = 100_000,
) -> None:
    """Dead letters as JSON lines (reason, position, original bytes, length, SHA-256), e.g. for a vendor."""
    if output_format != "jsonl":
        msg = f"unknown format {output_format!r}: jsonl"
        raise _fail(msg, 2)
    client = _client(settings_of(ctx), readonly=True)
    try:
        found = letters(client, _filters(since, until, source, stage, reason), limit)
    finally:
        client.close()
    lines = _jsonl(found)
    if output is None:
        for line in lines:
            sys.stdout.buffer.write(line)
    else:
        with output.open("wb") as handle:
            handle.writelines(lines)
        typer.echo(f"{len(found)} dead letters written to {output}", err=True)


def _jsonl(found: list[DeadLetter]) -> Iterator[bytes]:
    for letter in found:
        yield orjson.dumps(letter.to_dict()) + b"\n"
