"""CPU cost per event of the detect side, apart from Kafka and Faust: ``Event.from_dict(orjson.loads(value))``,
then the inventory and every registered detector with per-key dict state, as
``streams.pipeline.detect.Detection.process`` does (``by_class`` dispatch, source filter, ``state_key``,
``detect`` on the key's state).

    .venv/bin/python -m bench.detect_cost                       # 30k simulated events, min of 5 repeats
    .venv/bin/python -m bench.detect_cost --from events.jsonl   # the same bytes for two trees (before / after)
    .venv/bin/python -m bench.detect_cost --events 60000 --per-detector
    .venv/bin/python -m bench.detect_cost --profile             # cProfile of one pass, top functions

Events come from the simulator (every scenario, seed 7, 250 records/s of event time) through the source
parsers, encoded once with ``schemas.codec.encode`` as the normalize stage writes them. Each repeat
starts from empty state and fresh detectors (fresh anomaly models), built before the clock starts, so
every repeat does the same work; the minimum is reported (the machines are shared). Timings are this
process's CPU time (``time.process_time``), so time spent descheduled by other load does not count.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from detectors.config import DetectionConfig
from detectors.inventory import Inventory
from detectors.registry import DETECTORS, build_all, by_class
from schemas.codec import encode
from schemas.envelope import Event
from streams.simulator.estate import detection_config


def simulated(events: int, seed: int = 7, rate: float = 250.0) -> list[bytes]:
    """``events`` simulated records (all scenarios) normalized and encoded, as on ``aiwarden.events``.

    ``rate`` records per second of event time: at 250/s, 30k events span two 60 s windows, so every
    active API key closes a window (scored and learned by the anomaly models) once."""
    from schemas.sources import SOURCES
    from streams.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed, duration_s=max(1.0, events / rate), rate=rate))
    return [encode(SOURCES[r.source].normalize(r.record)) for r in sim.records()][:events]


class Replay:
    """Inventory and detectors with fresh dict state (built before the clock starts)."""

    def __init__(self, config: DetectionConfig, only: list[str] | None = None, inventory: bool = True) -> None:
        self.detectors = build_all(config, only)
        self.dispatch = by_class(self.detectors)
        self.inventory = Inventory(config) if inventory else None

    def run(self, events: list[Event]) -> tuple[int, int]:
        """One pass like ``Detection.process`` with dict state; (findings, inventory changes)."""
        dispatch, inventory = self.dispatch, self.inventory
        states: dict[str, dict[str, Any]] = {}
        assets: dict[str, dict[str, Any]] = {}
        findings = changes = 0
        for event in events:
            if inventory is not None:
                for asset_id in inventory.assets(event):
                    state = assets.get(asset_id)
                    if state is None:
                        state = assets[asset_id] = {}
                    changes += len(inventory.observe(event, state, asset_id))
            source = event.source
            for detector in dispatch.get(event.class_uid, ()):
                if detector.sources is not None and source not in detector.sources:
                    continue
                key = detector.state_key(event)
                if key is None:
                    continue
                slot = f"{detector.id}|{key}"
                state = states.get(slot)
                if state is None:
                    state = states[slot] = {}
                findings += len(detector.detect(event, state))
        return findings, changes


def best_us(make: Callable[[], Callable[[], Any]], count: int, repeats: int) -> float:
    """Minimum over ``repeats`` of the µs per event of ``make()()`` over ``count`` events (``make`` untimed)."""
    best = float("inf")
    for _ in range(repeats):
        run = make()
        started = time.process_time()
        run()
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=250.0, help="simulated records per second of event time")
    parser.add_argument("--from", dest="source", help="replay encoded events from this file (one a line) instead")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-detector", action="store_true", help="also time each detector alone")
    parser.add_argument("--profile", action="store_true", help="cProfile one pass and print the top functions")
    args = parser.parse_args()

    config = detection_config()  # the simulator's estate
    if args.source:
        with open(args.source, "rb") as f:
            raw = f.read().splitlines()[: args.events]
    else:
        raw = simulated(args.events, args.seed, args.rate)
    n = len(raw)
    events = [Event.from_dict(orjson.loads(value)) for value in raw]
    Replay(config).run(events)  # warm the per-process caches (Policy caches are shared per config)

    if args.profile:
        replay = Replay(config)
        profiler = cProfile.Profile()
        profiler.enable()
        replay.run(events)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())
        return

    def decode_all() -> None:
        for value in raw:
            Event.from_dict(orjson.loads(value))

    def loads_all() -> None:
        for value in raw:
            orjson.loads(value)

    loads_us = best_us(lambda: loads_all, n, args.repeats)
    decode_us = best_us(lambda: decode_all, n, args.repeats)
    inventory_us = best_us(lambda: partial(Replay(config, only=[]).run, events), n, args.repeats)
    total_us = best_us(lambda: partial(Replay(config).run, events), n, args.repeats)
    findings, changes = Replay(config).run(events)
    print(f"{n} events ({findings} findings, {changes} inventory changes), min of {args.repeats} repeats:")
    print(f"  orjson.loads                       {loads_us:6.2f} µs/event")
    print(f"  Event.from_dict(orjson.loads(v))   {decode_us:6.2f} µs/event")
    print(f"  inventory alone                    {inventory_us:6.2f} µs/event")
    print(f"  inventory + {len(build_all(config))} detectors            {total_us:6.2f} µs/event")
    if args.per_detector:
        for name in DETECTORS:
            alone = best_us(lambda d=name: partial(Replay(config, [d], inventory=False).run, events), n, args.repeats)
            print(f"    {name:28s} {alone:6.2f} µs/event (alone, with the dispatch loop)")


if __name__ == "__main__":
    main()
