"""The ``aiwarden`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra import services
from infra.settings import Settings

if TYPE_CHECKING:
    from streams.publish import PublishSummary

app = typer.Typer(help="aiwarden: streaming detection for AI workload security.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    if not isinstance(settings, Settings):
        msg = "settings were not loaded"
        raise TypeError(msg)
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
        msg = f"invalid settings: {exc}"
        raise _fail(msg, 2) from None
    logging.basicConfig(level=ctx.obj.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def resolved_or_exit(settings: Settings, need: tuple[str, ...] = ("kafka", "clickhouse")) -> Settings:
    try:
        return services.resolved(settings, need)
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
def publish(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(
        help="falco|native|cloudtrail|k8s-audit|bedrock|gateway|otel-genai|trivy|trivy-operator|grype|cyclonedx")],
    paths: Annotated[list[str], typer.Argument(help="Files (plain or .gz), or - for stdin.")],
) -> None:
    """Publish raw records to the raw topics; bad records go to the DLQ with their reason. Scanner reports
    (trivy, trivy-operator, grype, cyclonedx) are whole JSON documents, published as one record per package."""
    from confluent_kafka import KafkaException
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from schemas.sources import CLI_NAMES
    from streams.publish import Publisher, PublishError, check_broker, iter_inputs

    if source not in CLI_NAMES:
        msg = f"unknown source {source!r}; choose one of {', '.join(CLI_NAMES)}"
        raise _fail(msg, 2)
    name = CLI_NAMES[source]
    settings = resolved_or_exit(_settings(ctx))
    try:
        check_broker(settings)
    except PublishError as exc:
        raise _fail(str(exc)) from None
    try:
        publisher = Publisher(settings)
    except KafkaException as exc:
        msg = f"cannot read the topics' limits from Kafka: {exc}"
        raise _fail(msg) from None
    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed} records"))
    unreadable: str | None = None
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("publishing")
        try:
            for data, position in iter_inputs(paths, name, sys.stdin.buffer):
                publisher.publish(data, name, position)
                progress.advance(task)
        except OSError as exc:
            unreadable = f"cannot read input: {exc}"
        except PublishError as exc:
            unreadable = str(exc)
        finally:  # what is queued (dead letters included) is delivered whatever stopped the loop
            summary = publisher.flush()
    _print_summary(summary)
    if unreadable:
        raise _fail(unreadable)
    if summary.failed:
        for line in summary.errors:
            console.print(f"  {line}", markup=False, soft_wrap=True, highlight=False)
        shown = f" (the first {len(summary.errors)} above)" if summary.failed > len(summary.errors) else " (above)"
        msg = f"{summary.failed} records failed{shown}; dead-lettered where aiwarden.dlq took them"
        raise _fail(msg)


def _print_summary(summary: PublishSummary) -> None:
    table = Table("topic", "records", title="published")
    for topic, count in sorted(summary.published.items()):
        table.add_row(topic, str(count))
    for source, count in sorted(summary.dead_lettered.items()):
        table.add_row(f"aiwarden.dlq ({source})", str(count))
    out.print(table)
    if summary.truncated_letters:
        out.print(f"{summary.truncated_letters} dead letters keep only the first part of their record "
                  "(their length and SHA-256 are kept): `aiwarden dlq list` shows them", soft_wrap=True)


@app.command()
def simulate(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option(help="Same seed, same events.")] = 7,
    duration: Annotated[float, typer.Option(help="Seconds of traffic.")] = 60.0,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 1000.0,
    scenarios: Annotated[str, typer.Option(help="Comma-separated attack scenarios (default: all).")] = "",
    labels: Annotated[Path, typer.Option(help="Where to write the attack labels (JSON lines).")] = Path(
        "labels.jsonl"
    ),
    start_ms: Annotated[int, typer.Option(help="Event time of the first record (epoch ms); 0 = now.")] = 0,
    paced: Annotated[bool, typer.Option(help="Hold --rate in wall-clock time; --no-paced publishes as fast as "
                                        "possible (event times still follow --rate).")] = True,
    other_estate: Annotated[bool, typer.Option(help="Another organisation and world per seed (names, accounts, "
                                               "roles; source mix, volumes, attack intensity, timing and dilution; "
                                               "every third seed Falco-only); its estate file is written next to "
                                               "--labels (.estate.yaml).")] = False,
) -> None:
    """Publish a simulated organisation's traffic with labelled attacks, paced at --rate."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from streams.publish import Publisher, PublishError, check_broker
    from streams.simulate import publish_simulation
    from streams.simulator import ALL_SCENARIOS, SimConfig

    chosen = tuple(s.strip() for s in scenarios.split(",") if s.strip()) or ALL_SCENARIOS
    unknown = [s for s in chosen if s not in ALL_SCENARIOS]
    if unknown:
        msg = f"unknown scenarios {unknown}; choose from {', '.join(ALL_SCENARIOS)}"
        raise _fail(msg, 2)
    settings = resolved_or_exit(_settings(ctx))
    try:
        check_broker(settings)
    except PublishError as exc:
        raise _fail(str(exc)) from None
    config = SimConfig(
        seed=seed, duration_s=duration, rate=rate, scenarios=chosen, start_ms=start_ms or int(time.time() * 1000),
        other_estate=other_estate,
    )
    total = round(duration * rate)
    columns = (
        TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn()
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("simulate", total=total)
        summary, achieved = publish_simulation(
            Publisher(settings), config, labels, on_progress=lambda n: progress.update(task, completed=n),
            paced=paced,
        )
    _print_summary(summary)
    console.print(f"achieved {achieved:.0f} events/s (target {rate:.0f}); labels in {labels}")
    if other_estate:
        import yaml

        from streams.simulator import Simulator

        estate_path = labels.with_suffix(".estate.yaml")
        estate_path.write_text(yaml.safe_dump(Simulator(config).estate(), sort_keys=False))
        console.print(f"this organisation's estate: AIWARDEN_CONFIG={estate_path}")
    if summary.failed:
        msg = f"{summary.failed} records were not delivered: {'; '.join(summary.errors)}"
        raise _fail(msg)


@app.command()
def inventory(
    ctx: typer.Context,
    output_format: Annotated[str, typer.Option("--format", help="table or cyclonedx (JSON, CycloneDX 1.6).")] = "table",
) -> None:
    """The AI inventory (AIBOM): workloads, models, API keys and cloud AI services seen so far."""
    import orjson

    from infra.clickhouse.client import connect
    from streams.aibom import to_cyclonedx
    from streams.inventory_report import load_inventory, load_packages

    if output_format not in ("table", "cyclonedx"):
        msg = f"unknown format {output_format!r}: table or cyclonedx"
        raise _fail(msg, 2)
    settings = resolved_or_exit(_settings(ctx), need=("clickhouse",))
    client = connect(settings)
    try:
        items = load_inventory(client, settings.clickhouse.database)
        workloads = [item.asset_id for item in items if item.kind == "workload"]
        packages = load_packages(client, settings.clickhouse.database, workloads)
    finally:
        client.close()
    if output_format == "cyclonedx":
        sys.stdout.write(orjson.dumps(to_cyclonedx(items, packages), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table("asset", "kind", "namespace", "runtimes / models", "sanctioned", "exposed",
                  "AI packages in use / installed", "vulnerabilities (in use)", "last seen",
                  title=f"AI inventory ({len(items)} assets)")
    for item in items:
        parts = ", ".join([*item.runtimes, *item.models])[:60]
        mine = [p for p in packages if p.workload == item.asset_id]
        ai = {(p.package, p.package_version): p.in_use for p in mine if p.ai_package}
        found = {(p.vulnerability_id, p.package): p.in_use for p in mine if p.vulnerability_id}
        table.add_row(item.asset_id[:60], item.kind, item.namespace, parts,
                      "yes" if item.sanctioned else "[red]no[/]", "[red]yes[/]" if item.public_exposure else "no",
                      f"{sum(ai.values())} / {len(ai)}" if ai else "",
                      f"{len(found)} ({sum(found.values())})" if found else "", _iso(item.last_seen))
    out.print(table)


@app.command()
def evaluate(
    ctx: typer.Context,
    labels: Annotated[Path, typer.Option(help="The labels file written by `aiwarden simulate`.")],
    benign_events: Annotated[int, typer.Option(help="Benign events published (for false alerts per 100k).")] = 0,
) -> None:
    """Recall, precision and time-to-detect per attack class, from the simulator's labels and the
    alerts in ClickHouse."""
    from infra.clickhouse.client import connect
    from streams.demo import fetch_alerts, print_quality
    from streams.simulator import read_labels

    attack_labels = read_labels(labels)
    if not attack_labels:
        msg = f"no labels in {labels}"
        raise _fail(msg, 2)
    settings = resolved_or_exit(_settings(ctx), need=("clickhouse",))
    window = {"start": min(x.start_ms for x in attack_labels) - 600_000, "end": max(x.end_ms for x in attack_labels)}
    client = connect(settings)
    try:
        alerts = fetch_alerts(client, settings.clickhouse.database, window)
    finally:
        client.close()
    print_quality(attack_labels, alerts, benign_events, out)


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


@app.command()
def demo(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Leave the services it started running.")] = False,
    duration: Annotated[float, typer.Option(help="Seconds of simulated traffic.")] = 20.0,
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 500.0,
    via_ingest: Annotated[bool, typer.Option(help="Send k8s audit, Falco and gateway traffic through "
                                             "`aiwarden ingest` over HTTP, as their senders would.")] = False,
) -> None:
    """Everything on the embedded defaults: services, schema, worker, traffic, results."""
    from streams.demo import run_demo

    sys.exit(run_demo(_settings(ctx), keep=keep, duration=duration, rate=rate, console=out, via_ingest=via_ingest))


def main() -> None:
    app()


def _mount_subcommands() -> None:
    from detectors.sigma.cli import sigma_app
    from streams.alerts_tail import alerts_app
    from streams.config_check import config_app
    from streams.containment.receiver import receiver_app
    from streams.dlq import dlq_app
    from streams.estate_learn import estate_app
    from streams.hunt import hunt_app
    from streams.ingest.cli import collect_app, ingest_app
    from streams.integrations.commands import export_command, security_lake_command
    from streams.soc.cli import actions_app, add_alert_commands, exceptions_app, tokens_app, users_app

    app.add_typer(hunt_app, name="hunt", help="Saved hunts and read-only SQL over ClickHouse.")
    app.add_typer(receiver_app, name="receiver", help="Reference receiver of signed containment webhooks.")
    add_alert_commands(alerts_app)
    alerts_app.command("export")(export_command)
    app.add_typer(alerts_app, name="alerts", help="The live alert stream and its triage.")
    app.add_typer(users_app, name="users", help="Console users and their roles (written to Kafka).")
    app.add_typer(tokens_app, name="tokens", help="API tokens for the CLI and scripts.")
    app.add_typer(actions_app, name="actions", help="Containment actions: approve, deny, release.")
    app.add_typer(exceptions_app, name="exceptions", help="Exceptions: findings recorded but raising no alert.")
    app.add_typer(sigma_app, name="sigma", help="Sigma rules: check, test on events, SQL, retro-hunts.")
    app.add_typer(dlq_app, name="dlq", help="Dead letters: counts, one letter, replay after a fix, export.")
    app.add_typer(ingest_app, name="ingest", help="HTTP endpoints for audit webhooks, Falco, OTLP GenAI, LiteLLM.")
    app.add_typer(collect_app, name="collect", help="Pull sources: CloudTrail / Bedrock logs from S3 via SQS.")
    app.command("security-lake")(security_lake_command)
    app.add_typer(config_app, name="config", help="Estate files (AIWARDEN_CONFIG): validate, show what they change.")
    app.add_typer(estate_app, name="estate", help="Learn an estate: a proposed estate file from what it does.")


_mount_subcommands()


if __name__ == "__main__":
    main()
