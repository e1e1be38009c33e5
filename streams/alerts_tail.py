"""``aiwarden alerts tail``: the live alert stream on a terminal (colour) or as JSON lines (piped).

It only watches: no consumer group, nothing committed, so any number of analysts can tail at once.
Correlation re-sends an alert each time it grows (a higher ``version``); the terminal view marks
those as updates.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from infra.settings import Settings
from streams import topics
from streams.console.feed import decode_alert
from streams.console.filters import AlertFilter, FilterError
from streams.hunt import DURATION, UNIT_SECONDS

alerts_app = typer.Typer(no_args_is_help=True)

STYLES = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}


def read_alerts(
    settings: Settings, *, since_ms: int | None = None, from_beginning: bool = False, poll_s: float = 0.5,
) -> Iterator[dict[str, Any] | None]:
    """Alerts from ``aiwarden.alerts`` as they arrive (``None`` on each quiet poll), starting at the
    end, at ``since_ms`` (record time) or at the beginning."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    from infra.kafka.clients import confluent_config, partition_ids

    consumer = Consumer(confluent_config(settings, **{
        "group.id": "aiwarden-alerts-tail", "enable.auto.commit": False, "enable.partition.eof": False,
    }))
    try:
        partitions = [TopicPartition(topics.ALERTS, p) for p in partition_ids(consumer, topics.ALERTS)]
        if since_ms is not None:
            partitions = consumer.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, since_ms) for tp in partitions], timeout=15
            )
            partitions = [tp if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition, OFFSET_END)
                          for tp in partitions]
        else:
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            partitions = [TopicPartition(tp.topic, tp.partition, start) for tp in partitions]
        consumer.assign(partitions)
        while True:
            messages = consumer.consume(500, timeout=poll_s)
            if not messages:
                yield None
            for message in messages:
                if message.error() is not None:
                    continue  # partition EOF and transient errors: the client retries by itself
                alert = decode_alert(message.value(), message.partition() or 0, message.offset() or 0)
                if alert is not None:
                    yield alert
    finally:
        consumer.close()


def render(console: Console, alert: dict[str, Any]) -> None:
    severity = str(alert.get("severity", "info"))
    stamp = time.strftime("%H:%M:%S", time.gmtime(int(alert.get("last_seen", 0)) / 1000))
    if alert.get("status") == "merged":
        update = f" [dim]⤷ merged into {escape(str(alert.get('merged_into', '')))}[/]"
    else:
        update = " [dim]↻ update[/]" if int(alert.get("version", 1)) > 1 else ""
    techniques = " ".join([*alert.get("atlas_techniques", ()), *alert.get("attack_techniques", ())])
    console.print(
        f"[dim]{stamp}Z[/] [{STYLES.get(severity, '')}]{severity.upper():>8}[/] "
        f"[bold]{float(alert.get('risk_score', 0)):>3.0f}[/] {escape(str(alert.get('primary_entity', '')))}{update}\n"
        f"          {escape(str(alert.get('summary', '')))}\n"
        f"          [dim]{escape(', '.join(alert.get('detectors', ())))} · {escape(techniques)} · "
        f"{alert.get('alert_id', '')}[/]",
        soft_wrap=True,
    )


def parse_since(text: str) -> int:
    """``10m`` / ``2h`` / ``1d`` ago, as epoch ms."""
    match = DURATION.fullmatch(text.strip())
    if not match:
        msg = f"--since {text!r}: use a duration such as 30s, 10m, 2h or 1d"
        raise typer.BadParameter(msg)
    return int(time.time() * 1000) - int(match.group(1)) * UNIT_SECONDS[match.group(2)] * 1000


@alerts_app.command("tail")
def tail(
    ctx: typer.Context,
    min_severity: Annotated[str, typer.Option(help="Only alerts at or above: info, low, medium, high, critical.")]
    = "info",
    detector: Annotated[list[str] | None, typer.Option(help="Only alerts raised by this detector (repeatable).")]
    = None,
    entity: Annotated[str | None, typer.Option(help="Only alerts involving this entity id (e.g. pod:ns/name).")]
    = None,
    json_lines: Annotated[bool | None, typer.Option("--json/--no-json",
                                                   help="JSON lines (default when stdout is not a terminal).")]
    = None,
    since: Annotated[str | None, typer.Option(help="Start this long ago (30s, 10m, 2h, 1d) instead of now.")]
    = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest alert Kafka keeps.")] = False,
    count: Annotated[int, typer.Option(help="Exit after this many alerts (0: run until Ctrl-C).")] = 0,
    timeout: Annotated[float, typer.Option(help="Exit after this many seconds (0: no limit).")] = 0.0,
) -> None:
    """Follow alerts as correlation raises them: colour on a terminal, JSON lines when piped."""
    from infra import services
    from streams.hunt import settings_of

    try:
        alert_filter = AlertFilter.of(min_severity, detector or (), entity)
    except FilterError as exc:
        raise typer.BadParameter(str(exc), param_hint="--min-severity") from None
    since_ms = parse_since(since) if since else None
    settings = settings_of(ctx)
    try:
        settings = services.resolved(settings, need=("kafka",))
    except services.ServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    as_json = json_lines if json_lines is not None else not sys.stdout.isatty()
    console = Console(highlight=False)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    shown = 0
    try:
        for alert in read_alerts(settings, since_ms=since_ms, from_beginning=from_beginning):
            if alert is not None and alert_filter.matches(alert):
                if as_json:
                    sys.stdout.write(orjson.dumps(alert).decode() + "\n")
                    sys.stdout.flush()
                else:
                    render(console, alert)
                shown += 1
                if count and shown >= count:
                    break
            if deadline is not None and time.monotonic() > deadline:
                break
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
