"""Memory per entity: detector and inventory state with 10k, 100k and 1M entities.

In process (no Kafka): a pool of simulator events (all six sources) is normalized once; the run
feeds ``events_per_entity`` × E events through every registered detector (``registry.detect_all``)
and the AI inventory, the events round-robin over E entities. Each entity keeps one kind for the
run (container 45%, principal 32%, API key 23%, as in the simulator) and takes its events from
the pool events of that kind with its identity fields rewritten (``container:bench-N`` with a
matching container id and pod, ``principal:bench-N``, ``apikey:bench-N``); event times advance by
1 ms per event. Measured after the run:

* the state of every key as the worker's tables store it: ``orjson.dumps(state)`` bytes (states
  that stayed empty are never written by the worker and are not counted), summed per state key
  (an entity, or a bucket / access key some detectors key on): mean, p99 and max;
* this process's RSS growth over the run divided by the number of keys (states held as dicts, as
  the worker's in-memory tables hold them).

Through a real worker (``worker_entities`` > 0): a simulated world of about that many entities
(world size = entities / 3; events = 4 × entities) is drained by one worker; its RSS after the
group join and after the drain, and its table sizes (``/aiwarden/state``), are reported.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections import defaultdict
from itertools import islice
from typing import Any

import httpx
import orjson

from bench.common import app_id_of, end_offsets, free_port, rss_mib, spread, start_worker, wait_drained
from detectors.inventory import Inventory
from detectors.registry import build_all, by_class, detect_all
from infra.clickhouse.client import connect
from infra.settings import Settings
from schemas import entities as ent
from schemas.envelope import Event
from schemas.sources import SOURCES
from streams import topics
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import SimConfig, Simulator

POOL = 20_000
KIND_SHARES = (("container", 45), ("principal", 32), ("apikey", 23))


def event_pool(size: int = POOL) -> dict[str, list[Event]]:
    """Normalized simulator events by the kind of their primary entity."""
    sim = Simulator(SimConfig(seed=9, duration_s=max(1.0, size / 1000), rate=1000))
    pool: dict[str, list[Event]] = defaultdict(list)
    for record in islice(sim.records(), size):
        event = SOURCES[record.source].normalize(record.record)
        kind = ent.kind_of(event.entity_id)
        if kind in dict(KIND_SHARES):
            pool[kind].append(event)
    return pool


def kind_of(n: int) -> str:
    bucket = n % 100
    for kind, share in KIND_SHARES:
        if bucket < share:
            return kind
        bucket -= share
    return KIND_SHARES[-1][0]


def as_entity(event: Event, rest: list[str], n: int, kind: str, time_ms: int) -> Event:
    """``event`` made about entity number ``n`` of ``kind`` (in place: a copy of a slots dataclass
    costs more than the detectors; nothing keeps the event after detection). ``rest`` is the
    event's own entities after its primary one."""
    event.time_ms = time_ms
    if kind == "container":
        event.container_id = f"b{n:011d}"
        if event.pod:
            event.pod = f"bench-{n}"
        event.entity_id = ent.container(event.container_id)
    elif kind == "principal":
        event.principal = f"bench-{n}"
        event.entity_id = ent.principal(event.principal)
    else:
        event.api_key_id = f"bench-{n}"
        event.entity_id = ent.apikey(event.api_key_id)
    event.entities = [event.entity_id, *rest]
    return event


def in_process(entities: int, events_per_entity: int, pool: dict[str, list[Event]]) -> dict[str, Any]:
    from detectors.config import DetectionConfig

    config = DetectionConfig()
    dispatch = by_class(build_all(config))
    inventory = Inventory(config)
    states: dict[tuple[str, str], dict[str, Any]] = {}
    assets: dict[str, dict[str, Any]] = {}
    gc.collect()
    rss_before = rss_mib()
    started = time.perf_counter()
    start_ms = 1_790_000_000_000
    total = entities * events_per_entity
    rests = {kind: [e.entities[1:] for e in events] for kind, events in pool.items()}
    for j in range(total):
        n = j % entities
        kind = kind_of(n)
        i = (j // entities * 7919 + n) % len(pool[kind])
        event = as_entity(pool[kind][i], rests[kind][i], n, kind, start_ms + j)
        detect_all(dispatch, event, states)
        for asset_id in inventory.assets(event):
            inventory.observe(event, assets.setdefault(asset_id, {}), asset_id)
    elapsed = time.perf_counter() - started
    gc.collect()
    rss_after = rss_mib()
    per_key: dict[str, int] = defaultdict(int)
    per_detector: dict[str, list[int]] = defaultdict(list)
    for (detector_id, key), state in states.items():
        if state:
            size = len(orjson.dumps(state))
            per_key[key] += size
            per_detector[detector_id].append(size)
    for asset_id, state in assets.items():
        if state:
            size = len(orjson.dumps(state))
            per_key[asset_id] += size
            per_detector["inventory"].append(size)
    keys = len(per_key)
    result = {
        "entities": entities,
        "events": total,
        "state_keys": keys,
        "entity_bytes": spread(per_key.values(), 0),
        "per_detector_bytes": {d: {"keys": len(v), "mean": round(sum(v) / len(v)), "max": max(v)}
                               for d, v in sorted(per_detector.items())},
        "rss_delta_mib": round(rss_after - rss_before),
        "rss_bytes_per_entity": round((rss_after - rss_before) * 2**20 / keys) if keys else None,
        "seconds": round(elapsed, 1),
        "us_per_event": round(elapsed / total * 1e6, 1),
    }
    states.clear()
    assets.clear()
    gc.collect()
    return result


def through_worker(settings: Settings, entities: int) -> dict[str, Any]:
    """RSS of one real worker before and after draining a world of about ``entities`` entities."""
    raw_from = end_offsets(settings, topics.RAW_TOPICS)
    port = free_port()
    worker = start_worker(settings, "bench-memory", raw_from=end_offsets(settings, topics.RAW_TOPICS),
                          AIWARDEN_WORKER__WEB_PORT=str(port))
    try:
        if not worker.wait_for_log("Ready", 120):
            time.sleep(20)
        rss_before = rss_mib(worker.proc.pid) if worker.proc else 0.0
        events = entities * 4
        start_ms = (int(time.time()) - 4 * 86_400) // 60 * 60_000 + uuid.uuid4().int % 59_000
        config = SimConfig(seed=12, duration_s=events / 1000, rate=1000, start_ms=start_ms,
                           world_size=max(200, entities // 3))
        summary, _ = publish_simulation(Publisher(settings), config, paced=False)
        published = sum(summary.published.values())
        del raw_from
        drained = wait_drained(settings, app_id_of(worker), published, workers=[worker])
        rss_after = rss_mib(worker.proc.pid) if worker.proc else 0.0
        tables = httpx.get(f"http://127.0.0.1:{port}/aiwarden/state", timeout=10).json().get("tables", {})
    finally:
        worker.stop()
    keys = sum(n for name, n in tables.items() if name in ("detector-state", "inventory-state"))
    client = connect(settings)
    try:
        seen = int(client.query(
            f"SELECT uniqExact(entity_id) FROM {settings.clickhouse.database}.events "  # noqa: S608 - from settings
            "WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64}",
            parameters={"start": start_ms, "end": start_ms + events + 1000},
        ).result_rows[0][0])
    finally:
        client.close()
    return {
        "entities": seen,
        "events": published,
        "drain_events_per_s": drained["events_per_s"],
        "rss_before_mib": round(rss_before),
        "rss_after_mib": round(rss_after),
        "rss_bytes_per_entity": round((rss_after - rss_before) * 2**20 / seen) if seen else None,
        "rss_bytes_per_state_key": round((rss_after - rss_before) * 2**20 / keys) if keys else None,
        "tables": tables,
    }


def run(settings: Settings | None, sizes: list[int] | None = None, worker_entities: int = 10_000,
        events_per_entity: int = 3) -> dict[str, Any]:
    pool = event_pool()
    result: dict[str, Any] = {
        "events_per_entity": events_per_entity,
        "in_process": [in_process(n, events_per_entity, pool) for n in (sizes or [10_000, 100_000, 1_000_000])],
    }
    if worker_entities and settings is not None:
        result["worker"] = [through_worker(settings, worker_entities)]
    return result
