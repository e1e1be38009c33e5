"""`make bench`: benchmarks on the local real services; results to bench/results/<time>.json and the
measured table in BENCHMARKS.md (between its `bench:start` / `bench:end` markers), with the goals of
the benchmark issue (issue 14's first bar) beside the measured values and the gap.

Every benchmark is a module with ``run(settings, …) -> dict`` of measured numbers, registered in
``ALL`` and ``runners``; ``--only`` picks some, ``--quick`` runs all at small sizes (results kept in
bench/results/quick/, BENCHMARKS.md untouched). One benchmark failing is recorded under ``errors``
and the others still run. Benchmarks a run skips show their newest earlier result, named by run.

    python -m bench.run --only limit,hunts --hunt-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import loadavg
from infra import services
from infra.settings import Settings
from streams.setup import migrate
from streams.simulator import estate as simulator_estate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
# The pipeline first, on empty topics; every later benchmark positions its own consumer groups.
ALL = ("pipeline", "limit", "scaling", "latency", "containment", "quality", "memory", "sink", "hunts", "simulator",
       "sigma", "ingest")
QUICK = {  # --quick: small sizes, a check that every benchmark works (minutes, not the real numbers)
    "pipeline_events": 5_000, "limit_events": 30_000, "scaling_events": 5_000, "latency_attacks": 5,
    "quality_events": 20_000, "memory_entities": "1000,10000", "memory_worker_entities": 2_000,
    "hunt_rows": 500_000, "containment_runs": 3, "duration": 10, "sigma_events": 5_000, "ingest_requests": 20,
}


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    return {
        "cpu": cpu,
        "cores": sum(1 for line in cpuinfo if line.startswith("processor")),
        "python": platform.python_version(),
        "java": java[0] if java else "?",
        "load_before": Path("/proc/loadavg").read_text().split()[0],
    }


def table(results: dict[str, Any]) -> str:
    m, rows = results["machine"], []
    sim, sink, pipe = results.get("simulator"), results.get("sink"), results.get("pipeline")
    contain = results.get("containment")
    def when(result: dict[str, Any]) -> str:
        return f" (run {result['from']})" if "from" in result else ""

    sigma = results.get("sigma")
    if sigma:
        rows.append(f"| Sigma stream matcher, {sigma['rules']} rules, {sigma['events']} simulated events (CPU) | "
                    f"{sigma['us_per_event']} µs/event ({sigma['events_per_s']}/s; budget {sigma['budget_us']} µs)"
                    f"{when(sigma)} |")
    if sim:
        rows.append(f"| simulator publish rate (target {sim['target_rate']:.0f}/s, {sim['duration_s']:.0f} s) | "
                    f"{sim['achieved_rate']:.0f}/s overall; {sim['seconds_within_5pct']} of {sim['seconds_measured']} "
                    f"whole seconds within ±5% (worst {sim['worst_second']}, best {sim['best_second']}); labels match: "
                    f"{sim['labels_match_published']}{when(sim)} |")
    if sink:
        latency = sink.get("insert_ms", {})
        rows.append(f"| ClickHouse sink insert rate ({sink.get('rows')} rows, {sink.get('inserts')} inserts) | "
                    f"{sink.get('rows_per_s')} rows/s (insert time only: {sink.get('insert_only_rows_per_s')} rows/s; "
                    f"insert p50/p99 {latency.get('median')}/{latency.get('p99')} ms){when(sink)} |")
    if pipe:
        steps = pipe.get("steps") or []
        step_cpu = ", ".join(f"{st['published_rate']}/s {_fmt(st.get('cpu_us_per_event'), ' µs')}"
                             f"{'' if st['held'] else ' (not held)'}" for st in steps)
        engine = pipe.get("engine") or {}
        rows.append(f"| one worker end to end, every detector on ({pipe['events']} events backlog) | "
                    f"{pipe['events_per_s']} events/s draining the backlog at "
                    f"{_fmt(pipe.get('cpu_us_per_event'), ' µs')} of worker CPU per event; highest sustained rate "
                    f"with lag bounded: {_fmt(pipe.get('sustained_events_per_s'), '/s')}"
                    + (" (every step held: a floor)" if pipe.get("sustained_is_a_floor") else "")
                    + (f" (steps, CPU per event: {step_cpu})" if steps else "")
                    + f"; peak RSS {pipe['worker_peak_rss_mib']} MiB; {pipe['findings']} findings, "
                    f"{pipe['alerts']} alerts; transactions {engine.get('transactions')}, aborted "
                    f"{engine.get('aborted')}{when(pipe)} |")
    if contain:
        rows.append(f"| publish → signed quarantine webhook received ({contain['runs']} compromises, one at a time) | "
                    f"p50 {contain['p50_s']} s, p99 {contain['p99_s']} s, max {contain['max_s']} s; "
                    f"{contain['delivered']} of {contain['runs']} delivered{when(contain)} |")
    rows += new_rows(results, when)
    head = (f"Run {results['time']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, {m['java']}, "
            f"Kafka {results['kafka']}, load average before the run {m['load_before']}.\n"
            + (f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}. " if "versions" in results
               else "")
            + "Each row names its run when it comes from an earlier one; load averages per benchmark are in "
            "the JSON.\n\n"
            "| benchmark | measured |\n|---|---|\n")
    return head + "\n".join(rows) + "\n\n" + goals(results)


def _fmt(value: Any, unit: str = "") -> str:
    return "not measured" if value is None else f"{value}{unit}"


def new_rows(results: dict[str, Any], when: Any) -> list[str]:
    """Rows of the benchmark issue's measurements (limit, scaling, latency, quality, memory, hunts)."""
    rows = []
    if limit := results.get("limit"):
        rows.append(f"| the limit: raw consume + orjson decode ({limit['events']} records, "
                    f"{limit.get('mean_record_bytes')} B mean) | aiokafka getmany {limit['aiokafka_per_s']}/s, "
                    f"confluent-kafka consume {limit['confluent_per_s']}/s (median of "
                    f"{len(limit['aiokafka_runs_per_s'])}); pipeline / limit "
                    f"({limit.get('limit_client', 'aiokafka')}): "
                    f"{_fmt(limit.get('e2e_ratio'))} ({limit.get('e2e_basis', 'pipeline')} rate of "
                    f"{limit.get('e2e_from', 'this run')}){when(limit)} |")
    if scaling := results.get("scaling"):
        one, two = scaling["one"], scaling["two"]

        def cpu(run: dict[str, Any]) -> str:
            return f"{_fmt(run.get('cpu_us_per_event'), ' µs')} CPU per event ({run.get('worker_cpu_s')} s per process)"

        rows.append(f"| scaling: one worker vs two ({scaling['events']} events backlog, "
                    f"{scaling['partitions']} partitions, {scaling['cores']} cores) | one "
                    f"{_fmt(one['events_per_s'], '/s')} at {cpu(one)}, two {_fmt(two['events_per_s'], '/s')} at "
                    f"{cpu(two)}: ratio {_fmt(scaling['ratio'])}, CPU per event two / one "
                    f"{_fmt(scaling.get('cpu_ratio'))}{when(scaling)} |")
    if lat := results.get("latency"):
        def p(name: str) -> str:
            d, sent = lat[name], lat.get("attacks_published", lat["attacks"])
            return f"p50 {_fmt(d['p50'], ' s')}, p99 {_fmt(d['p99'], ' s')} ({d['n']} of {sent})"
        rows.append(f"| latency at {lat['rate']}/s background ({lat['rate_from']}; published "
                    f"{_fmt(lat.get('background_rate'), '/s')}), {lat['attacks']} attacks | "
                    f"publish → alert on aiwarden.alerts {p('alert_s')}; → row in ClickHouse {p('clickhouse_s')}; "
                    f"→ webhook {p('webhook_s')}; worker lag after warm-up {lat.get('lag_after_warmup')}, at the end "
                    f"{lat['lag_at_end']} records{when(lat)} |")
    if quality := results.get("quality"):
        worst = min(quality["classes"].values(), key=lambda c: c["recall"], default=None)
        which = "every class" if worst is None or worst["recall"] >= 1 else worst["class"]
        rows.append(f"| detection quality ({quality['events']} simulated events, {quality['attacks']} attacks, "
                    f"{len(quality['classes'])} classes) | recall min {_fmt(worst and worst['recall'])} "
                    f"({which}), precision {quality['precision']}, "
                    f"{quality['false_alerts']} false alerts = {quality['false_per_100k']} per 100k benign; "
                    f"per class below{when(quality)} |")
    if memory := results.get("memory"):
        for size in memory["in_process"]:
            rows.append(f"| state per entity, in process, memory store ({size['entities']} entities, "
                        f"{size['events']} events) | mean {size['entity_bytes']['mean']} B, p99 "
                        f"{size['entity_bytes']['p99']} B, max {size['entity_bytes']['max']} B of JSON; RSS "
                        f"+{size['rss_delta_mib']} MiB = {size['rss_bytes_per_entity']} B per entity, "
                        f"{_fmt(size.get('rss_bytes_per_store_key'), ' B')} per store key; "
                        f"{size['seconds']} s{when(memory)} |")
        for real in memory.get("worker", []):
            disk = (f"; {real['disk_bytes']} B on disk = {_fmt(real.get('disk_bytes_per_state_key'), ' B')} per "
                    "state key" if real.get("disk_bytes") is not None else "")
            rows.append(f"| worker RSS through the pipeline, {real.get('store', 'memory')} store ({real['entities']} "
                        f"entities, {real['events']} events) | {real['rss_before_mib']} → "
                        f"{real['rss_after_mib']} MiB = "
                        f"{_fmt(real['rss_bytes_per_entity'], ' B')} per entity seen, "
                        f"{_fmt(real.get('rss_bytes_per_state_key'), ' B')} per state key"
                        f"{disk}; tables {real['tables']}{when(memory)} |")
    if hunts := results.get("hunts"):
        slow = ", ".join(f"{name} {h['median_s']} s ({h['rows_read']} rows read)"
                         for name, h in hunts["hunts"].items())
        rows.append(f"| saved hunts over {hunts['rows']} events (7 days), median of {hunts['repeats']} | "
                    f"fill {hunts['fill_s']} s ({hunts['fill_rows_per_s']} rows/s, server-side); {slow}{when(hunts)} |")
    return rows


def goals(results: dict[str, Any]) -> str:
    """The benchmark issue's first-bar goals beside the measured values and the gap; never filled in by hand."""
    pipe, lat, sink = results.get("pipeline") or {}, results.get("latency") or {}, results.get("sink") or {}
    contain, memory = results.get("containment") or {}, results.get("memory") or {}
    scaling, quality = results.get("scaling") or {}, results.get("quality") or {}
    sizes = memory.get("in_process", [])
    largest = max(sizes, key=lambda size: size["entities"], default=None)
    disk = next((w for w in memory.get("worker", []) if w.get("store") == "rocksdb"), None)
    recalls = {name: c["recall"] for name, c in quality.get("classes", {}).items()}
    webhook = lat.get("webhook_s", {}).get("p99")
    if webhook is None and contain.get("p99_s") is not None:
        webhook = f"{contain['p99_s']} s unloaded (containment bench), under load not measured"
    at_rate = f" s at {lat['rate']}/s ({lat.get('rate_from')})" if "rate" in lat else " s"
    rss_unit = largest and (f" B at {largest['entities']} entities (in process, memory store)"
                            + (f"; rocksdb worker at {disk['entities']} entities: {disk['rss_bytes_per_entity']} B "
                               f"RSS per entity, {disk.get('disk_bytes_per_state_key')} B on disk per state key"
                               if disk else ""))
    rows = [
        ("one worker sustained ≥ 10,000 events/s, every detector on", 10_000,
         pipe.get("sustained_events_per_s"), "ge", "/s", pipe),
        ("CPU per event, all worker processes (/proc, backlog drain) ≤ 100 µs", 100, pipe.get("cpu_us_per_event"),
         "le", " µs", pipe),
        ("p99 publish → alert at half the sustained rate ≤ 1 s", 1.0, lat.get("alert_s", {}).get("p99"), "le",
         at_rate, lat),
        ("p99 publish → signed webhook at half the sustained rate ≤ 2 s", 2.0, webhook, "le", at_rate, lat),
        ("two workers vs one ≥ 1.8×", 1.8, scaling.get("ratio"), "ge", "×", scaling),
        ("… with CPU per event flat (two / one ≤ 1.1×)", 1.1, scaling.get("cpu_ratio"), "le", "×", scaling),
        ("ClickHouse sink ≥ 100k rows/s", 100_000, sink.get("rows_per_s"), "ge", " rows/s", sink),
        ("worker RSS per entity at 1M entities ≤ 2 KiB (or bounded with the disk store)", 2048,
         largest and largest["rss_bytes_per_entity"], "le", rss_unit, memory),
        ("detection recall 1.0 per class (worst class)", 1.0, min(recalls.values()) if recalls else None, "ge", "",
         quality),
        ("0 false alerts", 0, quality.get("false_alerts"), "le", "", quality),
    ]
    if quality.get("per_seed"):  # issue 20's bar, on the worst of ≥ 5 varied seeds
        per_attack = [c["alerts_per_attack"] for c in quality["classes"].values() if c.get("alerts_per_attack")]
        rows += [
            ("worst seed: recall ≥ 0.95 in every class", 0.95, min(recalls.values()) if recalls else None, "ge", "",
             quality),
            ("worst seed: ≤ 1 false alert per 100k benign events", 1.0, quality.get("false_per_100k"), "le", "",
             quality),
            ("worst seed: ≤ 1.2 alerts per attack in every class", 1.2, max(per_attack) if per_attack else None, "le",
             "", quality),
        ]
    lines = ["| goal | measured | met | gap |", "|---|---|---|---|"]
    for goal, target, value, sense, unit, source in rows:
        if "from" in source and value is not None:
            unit = f"{unit} (run {source['from']})"
        if value is None:
            lines.append(f"| {goal} | not measured | ? | ? |")
            continue
        if isinstance(value, str):
            lines.append(f"| {goal} | {value} | ? | ? |")
            continue
        met = value >= target if sense == "ge" else value <= target
        if met:
            gap = "none"
        elif sense == "ge":
            gap = f"{target / value:.1f}× short" if value else "nothing measured above 0"
        else:
            gap = f"{value / target:.1f}× over" if target else f"{value} over"
        lines.append(f"| {goal} | {value}{unit} | {'yes' if met else 'no'} | {gap} |")
    if quality.get("classes"):
        seeds = " (worst seed)" if quality.get("per_seed") else ""
        lines += ["", f"| attack class | attacks | detected | recall{seeds} | alerts | alerts per attack{seeds} | "
                  "time to detect p50 / max (event time) |", "|---|---|---|---|---|---|---|"]
        for name, c in sorted(quality["classes"].items()):
            worst = (f" (seed {c['recall_worst_seed']})" if c.get("recall_worst_seed") is not None and c["recall"] < 1
                     else "")
            per_attack = c.get("alerts_per_attack")
            lines.append(f"| {name} | {c['attacks']} | {c['detected']} | {c['recall']}{worst} | {c['alerts']} | "
                         f"{_fmt(per_attack)} | {_fmt(c['detect_s_p50'], ' s')} / {_fmt(c['detect_s_max'], ' s')} |")
    if quality.get("per_seed"):
        lines += ["", "| seed (another organisation each) | runtime sensors | events | attacks (diluted or hidden) | "
                  "worst class recall | false alerts | false per 100k benign | most alerts per attack |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in quality["per_seed"]:
            mark = " (worst)" if row["seed"] == quality.get("worst_seed") else ""
            worst_class = f" ({row['recall_min_class']})" if row["recall_min"] < 1 else ""
            sensors = "Falco only" if row.get("falco_only") else "Falco + native agent"
            lines.append(f"| {row['seed']}{mark} | {sensors} | {row['events']} | {row['attacks']} "
                         f"({row.get('hidden_attacks', 0)}) | {row['recall_min']}{worst_class} | "
                         f"{row['false_alerts']} | {row['false_per_100k']} | {row['alerts_per_attack_max']} |")
    return "\n".join(lines)


def limit_ratio(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with the limit's ``e2e_ratio``: the pipeline's rate (sustained when measured, else the
    backlog drain) over the limit's, both of ``results`` (one run, or merged from earlier ones)."""
    limit, pipe = results.get("limit"), results.get("pipeline")
    if not (limit and pipe):
        return results
    sustained = pipe.get("sustained_events_per_s")
    e2e = sustained or pipe.get("events_per_s")
    limit_rate = limit.get("limit_per_s")
    return {**results, "limit": {
        **limit, "e2e_ratio": round(e2e / limit_rate, 4) if e2e and limit_rate else None,
        "e2e_basis": "sustained" if sustained else "backlog drain", "e2e_from": pipe.get("from", "this run")}}


def with_latest(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` plus, for benchmarks this run skipped (``--only``), the newest earlier result."""
    merged = dict(results)
    for path in sorted(RESULTS.glob("*.json"), reverse=True):
        earlier = json.loads(path.read_text())
        for name in ALL:
            if name not in merged and name in earlier:
                merged[name] = {**earlier[name], "from": earlier["time"]}
    return limit_ratio(merged)


def update_benchmarks(results: dict[str, Any]) -> None:
    results = with_latest(results)
    text = BENCHMARKS.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    BENCHMARKS.write_text(f"{before}{start}\n{table(results)}\n{end}{after}")


def runners(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Callable[[Settings], dict[str, Any]]]:
    """Each benchmark by name: a function of the bench services' settings returning its numbers."""
    from bench import (
        containment_latency,
        hunt_latency,
        ingest_rate,
        latency,
        limit_rate,
        memory_scale,
        pipeline_rate,
        quality,
        scaling,
        sigma_match,
        simulator_rate,
        sink_rate,
    )

    entities = [int(n) for n in str(args.memory_entities).split(",") if n.strip()]
    return {
        "pipeline": lambda s: pipeline_rate.run(s, args.pipeline_events),
        "limit": lambda s: limit_rate.run(s, args.limit_events),
        "scaling": lambda s: scaling.run(s, args.scaling_events),
        "latency": lambda s: latency.run(s, latency.default_rate(args.latency_rate, results, RESULTS),
                                         args.latency_attacks),
        "containment": lambda s: containment_latency.run(s, args.containment_runs),
        "quality": lambda s: (quality.run_seeds(s, args.quality_seeds, args.quality_events)
                              if args.quality_seeds > 1 else quality.run(s, args.quality_events)),
        "memory": lambda s: memory_scale.run(s, entities, args.memory_worker_entities),
        "sink": lambda s: sink_rate.run(s),
        "hunts": lambda s: hunt_latency.run(s, args.hunt_rows),
        "simulator": lambda s: simulator_rate.run(s, args.rate, args.duration),
        "sigma": lambda s: sigma_match.run(args.sigma_rules, args.sigma_events),
        "ingest": lambda s: ingest_rate.run(s, args.ingest_requests),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated, of {', '.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that every benchmark works")
    parser.add_argument("--state-dir", default=str(ROOT / ".aiwarden-bench"), help="services' state (wiped)")
    parser.add_argument("--rate", type=float, default=20_000, help="simulator target rate")
    parser.add_argument("--duration", type=float, default=60, help="simulator seconds")
    parser.add_argument("--pipeline-events", type=int, default=100_000)
    parser.add_argument("--limit-events", type=int, default=300_000)
    parser.add_argument("--scaling-events", type=int, default=100_000)
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="background events/s; default half the last sustained rate measured, else 300")
    parser.add_argument("--latency-attacks", type=int, default=20)
    parser.add_argument("--containment-runs", type=int, default=10)
    parser.add_argument("--quality-events", type=int, default=300_000)
    parser.add_argument("--quality-seeds", type=int, default=1,
                        help="> 1: one quality run per seed, each another organisation; worst seed reported")
    parser.add_argument("--memory-entities", default="10000,100000,1000000", help="in-process entity counts")
    parser.add_argument("--memory-worker-entities", type=int, default=10_000, help="through a real worker; 0: skip")
    parser.add_argument("--hunt-rows", type=int, default=10_000_000)
    parser.add_argument("--sigma-rules", type=int, default=200, help="Sigma rules loaded (pack + generated)")
    parser.add_argument("--sigma-events", type=int, default=30_000)
    parser.add_argument("--ingest-requests", type=int, default=200, help="posts of 400 records per kind")
    args = parser.parse_args()
    if args.quick:
        for name, value in QUICK.items():
            if parser.get_default(name) == getattr(args, name):
                setattr(args, name, value)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(ALL)}")
    base = simulator_estate.apply(Settings(state_dir=Path(args.state_dir)))  # benchmarks judge the simulator
    # Each run starts from empty topics and tables, so no benchmark drains another's leftovers.
    services.down(base)
    shutil.rmtree(base.state_dir, ignore_errors=True)
    results: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    settings = services.up(base)
    migrate(settings)
    results["kafka"] = settings.kafka.version
    results["versions"] = versions()
    table_of = runners(args, results)
    try:
        for name in (n for n in ALL if n in chosen):  # always in ALL's order
            load, started = loadavg(), time.monotonic()
            print(f"--- {name} (load {load})", flush=True)
            try:
                outcome = table_of[name](settings)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others
                traceback.print_exc()
                results.setdefault("errors", {})[name] = repr(exc)
                continue
            results[name] = {**outcome, "load_before": load, "load_after": loadavg(),
                             "bench_s": round(time.monotonic() - started, 1)}
            print(json.dumps(results[name])[:2000], flush=True)
    finally:
        services.down(base)
    results = limit_ratio(results)  # the pipeline over the limit of this run
    # Quick runs are checks, not measurements: kept apart, never merged into BENCHMARKS.md.
    folder = RESULTS / "quick" if args.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    if args.quick:
        print(table(results))
        print(f"results: {out} (quick: BENCHMARKS.md unchanged)")
    else:
        update_benchmarks(results)
        print(f"results: {out}; BENCHMARKS.md updated")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("faust-streaming", "aiokafka", "confluent-kafka", "orjson", "river", "chdb-core", "clickhouse-connect")
    return {name: version(name) for name in names}


if __name__ == "__main__":
    main()
