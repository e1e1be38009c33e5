"""`aiwarden demo`: the whole pipeline on the embedded defaults, start to finish."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from infra import services
from infra.clickhouse.client import connect
from infra.settings import Settings
from streams.evaluate import evaluate
from streams.ingest.auth import new_token
from streams.ingest.process import IngestProcess
from streams.ingest.sender import IngestSender
from streams.publish import Publisher, check_broker
from streams.setup import migrate
from streams.simulate import publish_simulation
from streams.simulator import AttackLabel, SimConfig, read_labels
from streams.simulator import estate as simulator_estate
from streams.worker_process import WorkerProcess

WINDOW = "time_ms >= {start:Int64} AND time_ms < {end:Int64}"

# Records a careless or hostile producer might send: they must land in the DLQ, not vanish.
BAD_RECORDS = (
    (b'{"rule": "Terminal shell in container", "output_fields": ', "falco"),
    (b'{"schemaType": "ModelInvocationLog", "timestamp": 12, "modelId": []}', "bedrock"),
    (b"\xff\xfe not even text", "gateway"),
)


def run_demo(settings: Settings, *, keep: bool, duration: float, rate: float, console: Console,
             via_ingest: bool = False) -> int:
    settings = simulator_estate.apply(settings)  # the demo judges the simulator's estate, from its own file
    local = services.local_services(settings)
    already = {s.name for s in local if s.status().running}
    console.rule("[bold]aiwarden demo")
    console.print(f"  estate: {simulator_estate.ESTATE_FILE.relative_to(simulator_estate.ESTATE_FILE.parents[2])}")
    with console.status("starting local Apache Kafka and ClickHouse…"):
        resolved = services.up(settings)
    for st in services.status(settings):
        console.print(f"  {st.name:<11} {st.address}  {'healthy' if st.healthy else 'UNHEALTHY'}")
    created, applied = migrate(resolved)
    console.print(f"  topics created: {len(created)}, ClickHouse migrations applied: {len(applied)}")
    check_broker(resolved)

    log_path = Path(resolved.state_dir).resolve() / "demo-worker.log"
    port = resolved.worker.web_port or services.free_port()
    worker = WorkerProcess(resolved, log_path, AIWARDEN_WORKER__WEB_PORT=str(port)).start()
    console.print(f"  worker started (pid {worker.proc.pid if worker.proc else '?'}, log {log_path})")
    console.print(f"  SOC console while the demo runs: http://127.0.0.1:{port}/")
    _print_sign_in(resolved, console)
    ingest = None
    try:
        if via_ingest:
            ingest = _start_ingest(resolved, console)
        return _run(resolved, worker, duration, rate, console, ingest)
    finally:
        if ingest is not None:
            ingest[0].stop()
        worker.stop()
        if not keep:
            stopped = [s.name for s in reversed(local) if s.name not in already and s.stop()]
            console.print(f"stopped: {', '.join(stopped) or 'nothing (services were already running)'}")
        else:
            console.print("services left running (--keep); `aiwarden down` stops them")


def _print_sign_in(settings: Settings, console: Console) -> None:
    from streams.soc.cli import ensure_admin

    password = ensure_admin(settings)
    path = settings.state_dir.resolve() / "admin-password"
    if password is not None:  # printed this once; the file keeps it for the operator
        console.print(f"  sign in as [bold]admin[/] with password [bold]{password}[/] (also in {path}); "
                      "add people with `aiwarden users add NAME --role analyst`")
    else:
        console.print(f"  sign in with your console account (the first admin's password is in {path})")


def _start_ingest(settings: Settings, console: Console) -> tuple[IngestProcess, str]:
    """``aiwarden ingest`` on a free port with a fresh token for the endpoints the demo posts to."""
    token, digest = new_token()
    tokens = orjson.dumps({name: [digest] for name in ("k8s-audit", "falco", "litellm")}).decode()
    log_path = Path(settings.state_dir).resolve() / "demo-ingest.log"
    ingest = IngestProcess(settings, log_path, AIWARDEN_INGEST__TOKENS=tokens).start()
    console.print(f"  aiwarden ingest started ({ingest.url}, log {log_path})")
    return ingest, token


def _run(settings: Settings, worker: WorkerProcess, duration: float, rate: float, console: Console,
         ingest: tuple[IngestProcess, str] | None = None) -> int:
    start_ms = int(time.time()) * 1000  # whole second: some sources log second-precision times
    config = SimConfig(seed=7, duration_s=duration, rate=rate, start_ms=start_ms)
    publisher = Publisher(settings)
    for data, source in BAD_RECORDS:
        publisher.publish(data, source, {"file": "demo", "line": 0})
    total = round(duration * rate)
    sink: Publisher | IngestSender = publisher
    how = "with confluent-kafka"
    if ingest is not None:
        sink = IngestSender(ingest[0].url, ingest[1], publisher)
        how = "through aiwarden ingest (k8s audit, Falco, gateway; CloudTrail, Bedrock, native to Kafka)"
    console.rule(f"publishing {total} simulated events ({rate:.0f}/s, {duration:.0f}s) {how}")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("publishing", total=total)
        summary, achieved = publish_simulation(
            sink, config, settings.state_dir / "demo-labels.jsonl",
            on_progress=lambda n: progress.update(task, completed=n),
        )
    console.print(f"  published {sum(summary.published.values())} at {achieved:.0f}/s; "
                  f"dead-lettered at publish: {sum(summary.dead_lettered.values())}; failed: {summary.failed}")
    expected = sum(summary.published.values())
    end_ms = start_ms + int(duration * 1000) + 1

    client = connect(settings)
    db = settings.clickhouse.database
    window = {"start": start_ms, "end": end_ms}
    query = f"SELECT count() FROM {db}.events FINAL WHERE {WINDOW}"  # noqa: S608 - db from settings
    deadline = time.monotonic() + 120
    landed = 0
    with console.status("waiting for events to go Kafka → Faust → ClickHouse…"):
        while time.monotonic() < deadline:
            landed = int(client.query(query, parameters=window).result_rows[0][0])
            if landed >= expected:
                break
            if not worker.running:
                console.print(f"[red]worker exited:[/]\n{worker.log_tail()}")
                return 1
            time.sleep(1)
    _print_results(client, db, window, console)
    ok = landed == expected
    colour = "green" if ok else "red"
    console.print(f"[{colour}]{landed} of {expected} published events are in ClickHouse[/]")
    detected = _print_detections(client, db, window, settings.state_dir / "demo-labels.jsonl", expected, console)
    client.close()
    return 0 if ok and detected else 1


def fetch_alerts(client: Client, db: str, window: dict[str, int]) -> list[dict[str, Any]]:
    return list(
        client.query(
            "SELECT alert_id, first_seen, last_seen, severity, risk_score, detectors, entities, summary, "  # noqa: S608
            f"attack_techniques, atlas_techniques, maturity FROM {db}.alerts FINAL "
            "WHERE last_seen >= {start:Int64} AND first_seen < {end:Int64} + 600000 AND status != 'merged' "
            "ORDER BY risk_score DESC",
            parameters=window,
        ).named_results()
    )


def _print_detections(
    client: Client, db: str, window: dict[str, int], labels_path: Path, published: int, console: Console
) -> bool:
    """The alerts raised on the simulated attacks, and recall / precision per attack class."""
    labels = read_labels(labels_path)
    with console.status("waiting for detections to settle…"):
        # Settled: the alerts (and their versions) unchanged for 10 s, or 90 s at most.
        seen, stable, alerts = None, 0, []
        for _ in range(45):
            alerts = fetch_alerts(client, db, window)
            current = sorted((a["alert_id"], a["last_seen"]) for a in alerts)
            stable = stable + 1 if current == seen else 0
            if alerts and stable >= 5:
                break
            seen = current
            time.sleep(2)
    table = Table(title=f"alerts ({len(alerts)})")
    table.add_column("sev", min_width=8)
    table.add_column("risk", min_width=4)
    table.add_column("detectors", max_width=22)
    table.add_column("summary", overflow="ellipsis", no_wrap=True, max_width=max(20, console.width - 50))
    colours = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "white"}
    for alert in alerts[:15]:
        severity = alert["severity"]
        table.add_row(f"[{colours.get(severity, 'white')}]{severity}[/]", f"{alert['risk_score']:.0f}",
                      ",".join(alert["detectors"])[:30], alert["summary"][:110])
    console.print(table)
    attack_events = sum(label.events for label in labels)
    print_quality(labels, alerts, max(0, published - attack_events), console)
    return bool(alerts)


def print_quality(labels: list[AttackLabel], alerts: list[dict[str, Any]], benign: int, console: Console) -> None:
    quality = evaluate(labels, alerts, benign)
    scores = Table("attack class", "attacks", "detected", "recall", "time to detect (event time)",
                   title="detection quality against the simulator's labels")
    for scenario, q in sorted(quality.classes.items()):
        delay = f"{min(q.detect_ms) / 1000:.0f}s" if q.detect_ms else "-"
        colour = "green" if q.recall >= 0.95 else "red"
        scores.add_row(scenario, str(q.attacks), str(q.detected), f"[{colour}]{q.recall:.2f}[/]", delay)
    console.print(scores)
    console.print(f"alerts: {quality.total_alerts}, false: {quality.false_alerts} "
                  f"({quality.false_per_100k:.1f} per 100k benign events), precision {quality.precision:.2f}")
    for summary in quality.false_alert_examples[:5]:
        console.print(f"  false alert: {summary}")


def _print_results(client: Client, db: str, window: dict[str, int], console: Console) -> None:
    # Table names come from the settings; every value is bound server-side.
    table = Table("source", "events", "entities", title="events in ClickHouse, by source")
    rows = client.query(
        f"SELECT source, count(), uniqExact(entity_id) FROM {db}.events FINAL "  # noqa: S608
        f"WHERE {WINDOW} GROUP BY source ORDER BY source",
        parameters=window,
    ).result_rows
    for source, count, entities in rows:
        table.add_row(source, str(count), str(entities))
    console.print(table)
    sample = Table("time", "source", "entity", title="a few of them")
    sample.add_column("what", no_wrap=True, overflow="ellipsis")
    for row in client.query(
        "SELECT time, source, entity_id, multiIf(model_id != '', concat(api_operation, ' ', model_id), "  # noqa: S608
        "process_name != '', concat(process_name, ' ', left(process_cmdline, 40)), "
        "api_operation != '', concat(api_service, ':', api_operation), activity) "
        f"FROM {db}.events WHERE {WINDOW} ORDER BY time DESC LIMIT 8",
        parameters=window,
    ).result_rows:
        sample.add_row(str(row[0])[11:23], row[1], row[2][:48], row[3][:60])
    console.print(sample)
    letters = Table("source", "stage", "reason", title="dead letters (bad input, kept with its reason)")
    for source, stage, reason in client.query(
        f"SELECT source, stage, reason FROM {db}.dead_letters "  # noqa: S608
        "WHERE time_ms >= {start:Int64} - 60000 ORDER BY time DESC LIMIT 5",
        parameters=window,
    ).result_rows:
        letters.add_row(source, stage, reason[:90])
    console.print(letters)
