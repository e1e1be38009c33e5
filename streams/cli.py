"""The ``aiwarden`` command line."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra import services
from infra.settings import Settings

app = typer.Typer(help="aiwarden: streaming detection for AI workload security.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.callback()
def main_callback(ctx: typer.Context) -> None:
    """Settings come from AIWARDEN_* environment variables (see README)."""
    try:
        ctx.obj = Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the bad variable
        raise _fail(f"invalid settings: {exc}", 2) from None
    logging.basicConfig(level=ctx.obj.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def resolved_or_exit(settings: Settings) -> Settings:
    try:
        return services.resolved(settings)
    except services.ServiceError as exc:
        raise _fail(str(exc)) from None


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the local Kafka and ClickHouse (those not configured externally), topics and schema."""
    settings = _settings(ctx)
    try:
        with console.status("starting local services (first run fetches Kafka's jars with Maven)…"):
            resolved = services.up(settings)
        from streams.setup import migrate as run_migrate

        run_migrate(resolved)
    except Exception as exc:  # noqa: BLE001 - report any start failure plainly
        raise _fail(str(exc)) from None
    _print_status(settings)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the local services; nothing is left running."""
    stopped = services.down(_settings(ctx))
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status(ctx: typer.Context) -> None:
    """Each service with its address and health (exit 1 if one is unhealthy)."""
    if not _print_status(_settings(ctx)):
        raise typer.Exit(1)


def _print_status(settings: Settings) -> bool:
    table = Table("service", "address", "state", "pid", "detail")
    ok = True
    for st in services.status(settings):
        state = "[green]healthy[/]" if st.healthy else ("[yellow]unhealthy[/]" if st.running else "[red]down[/]")
        ok = ok and st.healthy
        table.add_row(st.name, st.address, state, str(st.pid or "-"), st.detail)
    out.print(table)
    return ok


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Create the Kafka topics and apply pending ClickHouse migrations (idempotent)."""
    from streams.setup import migrate as run_migrate

    try:
        created, applied = run_migrate(resolved_or_exit(_settings(ctx)))
    except Exception as exc:  # noqa: BLE001
        raise _fail(str(exc)) from None
    console.print(f"topics created: {len(created)}; migrations applied: {', '.join(applied) or 'none (up to date)'}")


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run a faust-streaming worker (normalize, detect, correlate, sink) until stopped."""
    import faust

    from streams.app import create_app

    settings = resolved_or_exit(_settings(ctx))
    faust_app = create_app(settings)
    faust.Worker(faust_app, loglevel=settings.log_level.lower()).execute_from_commandline()


@app.command()
def demo(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Leave the services it started running.")] = False,
    duration: Annotated[float, typer.Option(help="Seconds of simulated traffic.")] = 20.0,
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 500.0,
) -> None:
    """Everything on the embedded defaults: services, schema, worker, traffic, results."""
    from streams.demo import run_demo

    sys.exit(run_demo(_settings(ctx), keep=keep, duration=duration, rate=rate, console=out))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
