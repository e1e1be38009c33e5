"""Profile one worker while it drains a simulated backlog (py-spy, sampling, no code changes).

    .venv/bin/python -m bench.profile_worker --events 30000 --seconds 30

Starts the local services in ``.aiwarden-profile/`` (stopped at the end), publishes the backlog,
starts one ``aiwarden worker``, waits for its first event in ClickHouse (and ``--delay`` seconds
more: the raw backlog is normalized first, detection catches up after), then samples it with
``py-spy record`` for ``--seconds`` and prints where the time goes: the share of samples whose stack
contains each of a few known frames (inclusive), and the top functions by own (leaf) samples.
``--gil`` samples only the thread holding the GIL (CPU spent in Python; without it, threads waiting
in locks and runnable threads on a loaded machine count too). The hot path is the pipeline engine's
thread (``streams/pipeline/engine.py``: confluent-kafka consume, ``Engine._handle`` → the stages in
``streams/pipeline/*.py``, ``Engine.produce``, ``Engine.commit``); the sink (a thread of its own) and the
rest of Faust share the process. Without ``--native`` the time inside confluent-kafka's C calls is charged to the line
that calls them, which the consume and produce markers name. The collapsed stacks are kept in
``.aiwarden-profile/profile-<time>.txt`` for a flame graph.
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from infra import services
from infra.clickhouse.client import connect
from infra.settings import Settings
from streams.pipeline.engine import Engine
from streams.publish import Publisher
from streams.setup import migrate
from streams.simulate import publish_simulation
from streams.simulator import SimConfig
from streams.simulator import estate as simulator_estate
from streams.worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]

def _line_of(function: Any, text: str) -> str:
    """``(file:line)`` of the first line of ``function`` containing ``text``: how py-spy names time spent in a
    C call (confluent-kafka's consume and produce) made on that line, without --native."""
    lines, first = inspect.getsourcelines(function)
    number = first + next(i for i, line in enumerate(lines) if text in line)
    return f"({Path(inspect.getfile(function)).resolve().relative_to(ROOT)}:{number})"


# Frames (substrings of py-spy's "function (file:line)") whose inclusive share is reported; a label
# counts a sample whose stack contains any of its markers.
MARKERS: dict[str, tuple[str, ...]] = {
    "pipeline engine loop (Engine._run_once)": ("Engine._run_once",),
    "  confluent consume (C, in _run_once)": (_line_of(Engine._run_once, "consumer.consume("),
                                              "Consumer_consume"),
    "  batch dispatch (Engine._handle)": ("Engine._handle",),
    "    normalize stage (streams/pipeline/normalize.py)": ("Normalization.raw_batch",),
    "      parse: normalize_bytes": ("normalize_bytes",),
    "    detect stage (streams/pipeline/detect.py)": ("Detection.events_batch",),
    "      detectors' detect()": ("(detectors/",),
    "      re-keyed detection": ("Detection.rekeyed_batch",),
    "    correlate stage (streams/pipeline/correlate.py)": ("Correlation.findings_batch",),
    "    state: store get/guard/changes (streams/pipeline/state.py)": ("(streams/pipeline/state.py",),
    "  produce into the transaction (Engine.produce)": ("Engine.produce",),
    "    confluent produce (C, in Engine.produce)": (_line_of(Engine.produce, "self._producer.produce("),
                                                     "Producer_produce"),
    "  commit (changelog, offsets, commit_transaction)": ("Engine.commit",),
    "    commit_transaction (waits for the broker)": ("Engine._commit_transaction",),
    "ClickHouse sink (streams/pipeline/sink.py, its thread and insert threads)": ("(streams/pipeline/sink.py",),
    "aiokafka fetcher (the console feed's consumer)": ("aiokafka/consumer/fetcher.py",),
    "Faust event loop idle (select)": ("EpollSelector.select",),
}


def summarize(collapsed: Path, top: int = 25) -> str:
    stacks: list[tuple[list[str], int]] = []
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(n for _, n in stacks) or 1
    out = [f"{total} samples"]
    for label, markers in MARKERS.items():
        n = sum(c for frames, c in stacks if any(marker in f for f in frames for marker in markers))
        out.append(f"  {100 * n / total:5.1f}%  {label}")
    leaf: Counter[str] = Counter()
    for frames, c in stacks:
        leaf[frames[-1]] += c
    out.append("top own time:")
    out.extend(f"  {100 * c / total:5.1f}%  {name}" for name, c in leaf.most_common(top))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--delay", type=float, default=0, help="seconds to wait after the first event")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil (only the thread holding the GIL)")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    args = parser.parse_args()
    base = simulator_estate.apply(Settings(state_dir=ROOT / ".aiwarden-profile"))
    services.down(base)
    shutil.rmtree(base.state_dir, ignore_errors=True)
    settings = services.up(base)
    worker = None
    try:
        migrate(settings)
        start_ms = (int(time.time()) - 86_400) // 60 * 60_000
        config = SimConfig(seed=5, duration_s=args.events / 1000, rate=1000, start_ms=start_ms)
        publish_simulation(Publisher(settings), config, paced=False)
        app_id = f"profile-{uuid.uuid4().hex[:6]}"
        worker = WorkerProcess(settings, settings.state_dir / f"{app_id}.log", AIWARDEN_WORKER__APP_ID=app_id).start()
        client = connect(settings)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if int(client.query("SELECT count() FROM aiwarden.events").result_rows[0][0]):
                break
            time.sleep(0.5)
        client.close()
        time.sleep(args.delay)
        assert worker.proc is not None
        out = base.state_dir / f"profile-{time.strftime('%Y%m%dT%H%M%S')}.txt"
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(worker.proc.pid),
               "--duration", str(int(args.seconds)), "--format", "raw", "--rate", "200", "-o", str(out)]
        spy += ["--gil"] if args.gil else []
        spy += ["--native"] if args.native else []
        subprocess.run(spy, check=True, capture_output=True)  # noqa: S603
        print(summarize(out))
        print(f"collapsed stacks: {out}")
    finally:
        if worker is not None:
            worker.stop()
        services.down(base)


if __name__ == "__main__":
    main()
