"""`make bench`: benchmarks on the local real services; results to bench/results and BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import platform
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


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    return {"cpu": cpu, "cores": len([1 for line in Path("/proc/cpuinfo").read_text().splitlines()
                                      if line.startswith("processor")]),
            "python": platform.python_version(), "java": java[0] if java else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--duration", type=float, default=60)
    args = parser.parse_args()
    base = Settings(state_dir=ROOT / ".aiwarden-bench")
    settings = services.up(base)
    migrate(settings)
    try:
        from bench import simulator_rate

        results = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "kafka": settings.kafka.version,
            "simulator": simulator_rate.run(settings, args.rate, args.duration),
        }
    finally:
        services.down(base)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
