"""Memory per entity: detector and inventory state with 10k, 100k and 1M entities.

In process (no Kafka): a pool of simulator events (all six sources) is normalized once; the run
feeds ``events_per_entity`` × E events through every registered detector (``registry.detect_all``)
and the AI inventory, the events round-robin over E entities, with their state in the worker's own
stores (``streams.pipeline.state``: a write-back cache over committed JSON bytes in a dict, the
``memory`` store; keys ``<detector>|<key>`` and asset ids), committed every ``COMMIT_EVENTS``
events as the engine commits every 100 ms. Each entity keeps one kind for the
run (container 45%, principal 32%, API key 23%, as in the simulator) and takes its events from
the pool events of that kind with its identity fields rewritten (``container:bench-N`` with a
matching container id and pod, ``principal:bench-N``, ``apikey:bench-N``); event times advance by
1 ms per event. Measured after the run:

* the committed value of every store key (JSON bytes; states that stayed empty are never written
  and are not counted), summed per entity key (an entity, or a bucket / access key some detectors
  key on): mean, p99 and max;
* the RSS growth over the run (each size in a fresh process) divided by the number of entity keys
  and by the number of store keys.

Through a real worker (``worker_entities`` > 0), once with each state store (``memory``, and
``rocksdb``: committed state on disk): a simulated world of about that many entities (world size =
entities / 3; events = 4 × entities) is drained by one worker; its RSS after the group join and
after the drain, per entity seen and per store key (``/aiwarden/state``), and for ``rocksdb`` the
bytes its stores take on disk.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import httpx

from bench.common import app_id_of, free_port, rss_mib, spread, start_worker, viewer_headers, wait_drained
from detectors.inventory import Inventory
from detectors.registry import build_all, by_class, detect_all
from infra.clickhouse.client import connect
from infra.settings import Settings
from schemas import entities as ent
from schemas.envelope import Event
from schemas.sources import SOURCES
from streams.pipeline.state import MemoryBackend, StorePartition
from streams.publish import Publisher
from streams.simulate import publish_simulation
from streams.simulator import SimConfig, Simulator

POOL = 20_000
COMMIT_EVENTS = 1000  # events per store commit (the engine commits every 100 ms: ~1000 at 10k/s)
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


class StoreStates(MutableMapping[tuple[str, str], dict[str, Any]]):
    """``registry.detect_all``'s ``(detector id, key) → state`` over a store partition, keyed as the
    worker keys it (``<detector id>|<key>``)."""

    def __init__(self, part: StorePartition) -> None:
        self.part = part

    def __getitem__(self, slot: tuple[str, str]) -> dict[str, Any]:
        return self.part.get(f"{slot[0]}|{slot[1]}")

    def __setitem__(self, slot: tuple[str, str], value: dict[str, Any]) -> None:
        self.part.set(f"{slot[0]}|{slot[1]}", value)

    def __delitem__(self, slot: tuple[str, str]) -> None:
        self.part.set(f"{slot[0]}|{slot[1]}", {})

    def __iter__(self) -> Iterator[tuple[str, str]]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.part)


def commit(*parts: StorePartition) -> None:
    for part in parts:
        part.commit(part.changes())


def in_process(entities: int, events_per_entity: int, pool: dict[str, list[Event]]) -> dict[str, Any]:
    from streams.simulator.estate import detection_config

    config = detection_config()  # the simulator's estate
    dispatch = by_class(build_all(config))
    inventory = Inventory(config)
    detector_part, asset_part = StorePartition(MemoryBackend()), StorePartition(MemoryBackend())
    states = StoreStates(detector_part)
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
            inventory.observe(event, asset_part.get(asset_id), asset_id)
        if j % COMMIT_EVENTS == COMMIT_EVENTS - 1:
            commit(detector_part, asset_part)
    commit(detector_part, asset_part)
    elapsed = time.perf_counter() - started
    gc.collect()
    rss_after = rss_mib()
    per_key: dict[str, int] = defaultdict(int)
    per_detector: dict[str, list[int]] = defaultdict(list)
    for store_key, value in detector_part.backend.items():
        detector_id, _, key = store_key.partition("|")
        per_key[key] += len(value)
        per_detector[detector_id].append(len(value))
    for asset_id, value in asset_part.backend.items():
        per_key[asset_id] += len(value)
        per_detector["inventory"].append(len(value))
    keys, store_keys = len(per_key), len(detector_part) + len(asset_part)
    grown = (rss_after - rss_before) * 2**20
    result = {
        "entities": entities,
        "events": total,
        "state_keys": keys,
        "store_keys": store_keys,
        "entity_bytes": spread(per_key.values(), 0),
        "per_detector_bytes": {d: {"keys": len(v), "mean": round(sum(v) / len(v)), "max": max(v)}
                               for d, v in sorted(per_detector.items())},
        "rss_delta_mib": round(rss_after - rss_before),
        "rss_bytes_per_entity": round(grown / keys) if keys else None,
        "rss_bytes_per_store_key": round(grown / store_keys) if store_keys else None,
        "seconds": round(elapsed, 1),
        "us_per_event": round(elapsed / total * 1e6, 1),
    }
    detector_part.backend.close()
    asset_part.backend.close()
    gc.collect()
    return result


def measure(entities: int, events_per_entity: int) -> dict[str, Any]:
    return in_process(entities, events_per_entity, event_pool())


def in_fresh_process(entities: int, events_per_entity: int) -> dict[str, Any]:
    """``in_process`` in a new interpreter: RSS growth means nothing in a process whose heap earlier
    benchmarks grew and freed (new state would fill the freed memory without growing RSS)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        return executor.submit(measure, entities, events_per_entity).result()


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def through_worker(settings: Settings, entities: int, store: str = "memory", days_back: int = 4) -> dict[str, Any]:
    """RSS of one real worker (state store ``store``) before and after draining a world of about
    ``entities`` entities."""
    port = free_port()
    signed_in = viewer_headers(settings)
    worker = start_worker(settings, f"bench-memory-{store}", AIWARDEN_WORKER__WEB_PORT=str(port),
                          AIWARDEN_WORKER__STATE_STORE=store)
    app_id = app_id_of(worker)
    try:
        if not worker.wait_for_log("Ready", 120):
            time.sleep(20)
        rss_before = rss_mib(worker.proc.pid) if worker.proc else 0.0
        events = entities * 4
        start_ms = (int(time.time()) - days_back * 86_400) // 60 * 60_000 + uuid.uuid4().int % 59_000
        config = SimConfig(seed=12, duration_s=events / 1000, rate=1000, start_ms=start_ms,
                           world_size=max(200, entities // 3))
        summary, _ = publish_simulation(Publisher(settings), config, paced=False)
        published = sum(summary.published.values())
        drained = wait_drained(settings, app_id, published, workers=[worker])
        rss_after = rss_mib(worker.proc.pid) if worker.proc else 0.0
        state = httpx.get(f"http://127.0.0.1:{port}/aiwarden/state", headers=signed_in, timeout=10).json()
        on_disk = disk_bytes(settings.state_dir.resolve() / "worker" / app_id)
    finally:
        worker.stop()
    stores = state.get("pipeline", {}).get("stores", {})
    keys = sum(stores.values())
    client = connect(settings)
    try:
        seen = int(client.query(
            f"SELECT uniqExact(entity_id) FROM {settings.clickhouse.database}.events "  # noqa: S608 - from settings
            "WHERE time_ms >= {start:Int64} AND time_ms < {end:Int64}",
            parameters={"start": start_ms, "end": start_ms + events + 1000},
        ).result_rows[0][0])
    finally:
        client.close()
    grown = (rss_after - rss_before) * 2**20
    return {
        "store": store,
        "entities": seen,
        "events": published,
        "drain_events_per_s": drained["events_per_s"],
        "rss_before_mib": round(rss_before),
        "rss_after_mib": round(rss_after),
        "rss_bytes_per_entity": round(grown / seen) if seen else None,
        "state_keys": keys,
        "rss_bytes_per_state_key": round(grown / keys) if keys else None,
        "disk_bytes": on_disk if store == "rocksdb" else None,
        "disk_bytes_per_state_key": round(on_disk / keys) if store == "rocksdb" and keys else None,
        "tables": state.get("tables", {}),
    }


def run(settings: Settings | None, sizes: list[int] | None = None, worker_entities: int = 10_000,
        events_per_entity: int = 3) -> dict[str, Any]:
    result: dict[str, Any] = {
        "events_per_entity": events_per_entity,
        "in_process": [in_fresh_process(n, events_per_entity) for n in (sizes or [10_000, 100_000, 1_000_000])],
    }
    if worker_entities and settings is not None:
        result["worker"] = [through_worker(settings, worker_entities, store, days_back)
                            for days_back, store in ((4, "memory"), (5, "rocksdb"))]
    return result
