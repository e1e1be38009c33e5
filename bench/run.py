"""`make bench`: benchmarks on the local real services; results to bench/results/<time>.json and the
measured table in BENCHMARKS.md (between its `bench:start` / `bench:end` markers)."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra import services
from infra.settings import Settings
from streams.setup import migrate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
ALL = ("pipeline", "containment", "sink", "simulator")  # the pipeline first, on empty topics


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
        rows.append(f"| one worker end to end, every detector on ({pipe['events']} events backlog) | "
                    f"{pipe['events_per_s']} events/s; peak RSS {pipe['worker_peak_rss_mib']} MiB; "
                    f"{pipe['findings']} findings, {pipe['alerts']} alerts{when(pipe)} |")
    if contain:
        rows.append(f"| publish → signed quarantine webhook received ({contain['runs']} compromises, one at a time) | "
                    f"p50 {contain['p50_s']} s, p99 {contain['p99_s']} s, max {contain['max_s']} s; "
                    f"{contain['delivered']} of {contain['runs']} delivered{when(contain)} |")
    head = (f"Run {results['time']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, {m['java']}, "
            f"Kafka {results['kafka']}, load average before the run {m['load_before']}.\n\n"
            "| benchmark | measured |\n|---|---|\n")
    return head + "\n".join(rows)


def with_latest(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` plus, for benchmarks this run skipped (``--only``), the newest earlier result."""
    merged = dict(results)
    for path in sorted(RESULTS.glob("*.json"), reverse=True):
        earlier = json.loads(path.read_text())
        for name in ALL:
            if name not in merged and name in earlier:
                merged[name] = {**earlier[name], "from": earlier["time"]}
    return merged


def update_benchmarks(results: dict[str, Any]) -> None:
    results = with_latest(results)
    text = BENCHMARKS.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    BENCHMARKS.write_text(f"{before}{start}\n{table(results)}\n{end}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated, of {', '.join(ALL)}")
    parser.add_argument("--rate", type=float, default=20_000, help="simulator target rate")
    parser.add_argument("--duration", type=float, default=60, help="simulator seconds")
    parser.add_argument("--pipeline-events", type=int, default=50_000)
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    base = Settings(state_dir=ROOT / ".aiwarden-bench")
    # Each run starts from empty topics and tables, so no benchmark drains another's leftovers.
    services.down(base)
    shutil.rmtree(base.state_dir, ignore_errors=True)
    results: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    settings = services.up(base)
    migrate(settings)
    results["kafka"] = settings.kafka.version
    try:
        if "pipeline" in chosen:
            from bench import pipeline_rate

            results["pipeline"] = pipeline_rate.run(settings, args.pipeline_events)
        if "containment" in chosen:
            from bench import containment_latency

            results["containment"] = containment_latency.run(settings)
        if "sink" in chosen:
            from bench import sink_rate

            results["sink"] = sink_rate.run(settings)
        if "simulator" in chosen:
            from bench import simulator_rate

            results["simulator"] = simulator_rate.run(settings, args.rate, args.duration)
    finally:
        services.down(base)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    update_benchmarks(results)
    print(json.dumps(results, indent=2))
    print(f"results: {out}; BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
