"""``aiwarden ingest`` (``ingest token``) and ``aiwarden collect s3-sqs``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from infra.settings import Settings

ingest_app = typer.Typer(no_args_is_help=False)
console = Console(stderr=True)


def _kafka_settings(ctx: typer.Context) -> Settings:
    """The settings with Kafka resolved (a local broker when none is set), the broker and topics checked."""
    from streams.cli import resolved_or_exit
    from streams.publish import PublishError, check_broker

    settings = ctx.obj
    if not isinstance(settings, Settings):
        msg = "settings were not loaded"
        raise TypeError(msg)
    settings = resolved_or_exit(settings, ("kafka",))
    try:
        check_broker(settings)
    except PublishError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    return settings


@ingest_app.callback(invoke_without_command=True)
def ingest(ctx: typer.Context) -> None:
    """Serve the HTTP endpoints (/k8s-audit, /falco, /litellm, /v1/traces, /v1/logs) until stopped."""
    if ctx.invoked_subcommand is not None:
        return
    from streams.ingest.server import run

    settings = _kafka_settings(ctx)
    try:
        run(settings, ready=lambda url: console.print(f"aiwarden ingest listening on {url}"))
    except (OSError, ValueError) as exc:
        console.print(f"[bold red]error:[/] cannot serve: {exc}")
        raise typer.Exit(1) from None


@ingest_app.command()
def token() -> None:
    """Print a new bearer token and its SHA-256 digest (the digest goes into AIWARDEN_INGEST__TOKENS)."""
    from streams.ingest.auth import new_token

    secret, digest = new_token()
    typer.echo(f"token:  {secret}")
    typer.echo(f"sha256: {digest}")
    console.print(
        "Give the token to the sender (Authorization: Bearer <token>); put the digest in AIWARDEN_INGEST__TOKENS, "
        "e.g. AIWARDEN_INGEST__TOKENS='{\"falco\": [\"<sha256>\"]}'. The token is not stored anywhere."
    )


collect_app = typer.Typer(no_args_is_help=True)
SQS_SOURCES = {"cloudtrail": "cloudtrail", "bedrock": "bedrock"}


@collect_app.command("s3-sqs")
def s3_sqs(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option(help="SQS queue URL receiving the S3 object-created notifications.")],
    source: Annotated[str, typer.Option(help="cloudtrail|bedrock: the format of the log files.")],
    region: Annotated[str | None, typer.Option(help="AWS region (default: from the queue URL).")] = None,
    wait: Annotated[int, typer.Option(help="SQS long-poll wait in seconds (0-20).", min=0, max=20)] = 20,
    once: Annotated[bool, typer.Option(help="Stop when the queue has no message left.")] = False,
) -> None:
    """Publish CloudTrail / Bedrock log files from S3, announced through SQS (directly or via SNS).

    AWS credentials and endpoints come from boto3's own chain (environment, profile, instance role;
    AWS_ENDPOINT_URL for S3/SQS-compatible services)."""
    import boto3
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from streams.ingest.s3_sqs import Collector, region_of

    if source not in SQS_SOURCES:
        console.print(f"[bold red]error:[/] unknown source {source!r}; choose cloudtrail or bedrock")
        raise typer.Exit(2)
    settings = _kafka_settings(ctx)
    session = boto3.session.Session(region_name=region or region_of(queue))
    collector = Collector(
        settings, queue, SQS_SOURCES[source], sqs=session.client("sqs"), s3=session.client("s3"), wait_s=wait
    )
    columns = (SpinnerColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("waiting for notifications")

        def show(p: Any) -> None:
            bar.update(task, description=f"{p.messages} messages, {p.files} files, {p.records} records, "
                       f"{p.dead_lettered} dead-lettered, {p.failed_messages} failed (left to SQS)")

        try:
            while True:
                received = collector.poll_once(show)
                if once and received == 0:
                    break
        except KeyboardInterrupt:
            pass
    p = collector.progress
    console.print(
        f"collected: {p.messages} messages deleted, {p.files} files, {p.records} records published, "
        f"{p.dead_lettered} dead-lettered, {p.failed_messages} messages failed (left to the visibility timeout), "
        f"{p.skipped} notifications without objects"
    )
    if p.failed_messages:
        raise typer.Exit(1)
