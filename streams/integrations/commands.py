"""The command-line entry points of the integrations (``aiwarden alerts export``, ``aiwarden security-lake``),
importing what they need only when run: the CLI starts fast."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

FORMATS = ("ocsf", "jsonl")


def export_command(
    ctx: typer.Context,
    output_format: Annotated[str, typer.Option("--format", help="ocsf (OCSF 1.5.0 Detection Findings) or jsonl "
                                               "(aiwarden's alert records), one JSON object a line.")] = "ocsf",
    since: Annotated[str, typer.Option(help="Alerts active this long ago or later (30s, 10m, 2h, 1d, 1w).")] = "1d",
) -> None:
    """Export alerts from ClickHouse (latest version of each; read-only) for a SIEM or a data lake."""
    from infra.clickhouse.client import connect
    from streams.alerts_tail import parse_since
    from streams.hunt import HuntError, clickhouse_settings, settings_of
    from streams.integrations.export import iter_alerts, write_alerts

    if output_format not in FORMATS:
        msg = f"--format {output_format!r}: choose one of {', '.join(FORMATS)}"
        raise typer.BadParameter(msg)
    since_ms = parse_since(since)
    try:
        settings = clickhouse_settings(settings_of(ctx))
        client = connect(settings, readonly=True)
    except Exception as exc:  # noqa: BLE001 - no ClickHouse: say so plainly
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        count = write_alerts(iter_alerts(client, settings.clickhouse.database, since_ms), output_format, sys.stdout)
    except HuntError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()
    typer.echo(f"exported {count} alerts ({output_format})", err=True)


def security_lake_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="Exit once everything on aiwarden.ocsf is written and committed.")]
    = False,
) -> None:
    """Write the OCSF Detection Findings of aiwarden.ocsf to Amazon Security Lake (custom source, Parquet)."""
    from infra import services
    from streams.hunt import settings_of
    from streams.integrations.security_lake import LakeError, run, s3_client

    try:
        settings = services.resolved(settings_of(ctx), need=("kafka",))
        client = s3_client(settings.security_lake)
    except (services.ServiceError, LakeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        written = run(settings, until_idle=once, client=client)
    except KeyboardInterrupt:
        return
    except LakeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{len(written)} objects written to s3://{settings.security_lake.bucket}/", err=True)
