"""Latency under load: publish → alert on ``aiwarden.alerts``, → alert row visible in ClickHouse,
→ signed quarantine webhook received.

One worker runs with containment on (dry run off, a policy that quarantines on model_server_shell)
against the reference receiver in this process. A steady background stream of benign simulated
records (event time = now) is published at ``rate`` per second from a thread, by event time. After a
warm-up, ``attacks`` model-server compromises (the simulator's model_server_shell records, each on
a pod not attacked before in the run) are published one at a time; the clock of each starts when
its first record is handed to the producer (an upper bound: the shell is not the first record)
and stops:

* alert: when a record on ``aiwarden.alerts`` naming the pod is consumed (a consumer thread,
  assigned at the topic's end, ``read_committed``: the alert's transaction has committed);
* ClickHouse: when a poll (every 50 ms, so up to 50 ms late) finds an alert row naming the pod;
* webhook: when the receiver prints the quarantine for the pod.

Attacks stop after ``budget_s`` (a worker far behind would otherwise take 30 s per attack); the
``n`` of each measure says how many were seen. The default rate is half the sustained rate last
measured (``pipeline`` result), else 300/s. The worker's lag after the warm-up and at the end says
whether it kept up with the background stream.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench.common import (
    SECRET,
    Arrivals,
    app_id_of,
    containment_env,
    make_attack,
    pipeline_lag,
    publish_records,
    spread,
    start_worker,
    wait_ready,
)
from infra.clickhouse.client import connect
from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.sources import SOURCES
from streams import topics
from streams.containment.receiver import Receiver
from streams.publish import Publisher
from streams.simulator import SimConfig, Simulator

DEFAULT_RATE = 300.0


def default_rate(given: float | None, results: dict[str, Any], results_dir: Path) -> tuple[float, str]:
    """(rate, where it comes from): the given rate, else half the newest sustained rate measured."""
    if given:
        return given, "given"
    candidates = [results] + [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"), reverse=True)]
    for found in candidates:
        sustained = (found.get("pipeline") or {}).get("sustained_events_per_s")
        if sustained:
            return round(sustained / 2), f"half the sustained {sustained}/s of run {found.get('time')}"
    return DEFAULT_RATE, "default: no sustained rate measured yet"


class Seen:
    """First time (perf_counter) each watched pod is seen by one observer."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.watch: set[str] = set()
        self.lock = threading.Lock()

    def see(self, entities: list[str]) -> None:
        now = time.perf_counter()
        with self.lock:
            for entity in entities:
                if entity in self.watch:
                    self.times.setdefault(entity, now)


def background(settings: Settings, rate: float, stop: threading.Event, counter: list[int]) -> None:
    """Benign simulated records at ``rate``/s, published when wall time reaches their event time."""
    start_ms = int(time.time() * 1000)
    sim = Simulator(SimConfig(seed=77, duration_s=3600, rate=rate, scenarios=(), start_ms=start_ms))
    publisher = Publisher(settings, **{"linger.ms": 5})
    for record in sim.records():
        if stop.is_set():
            break
        ahead = record.time_ms / 1000 - time.time()
        if ahead > 0:
            time.sleep(ahead)
        publisher.publish_record(record.source, record.record, SOURCES[record.source].primary_key(record.record))
        counter[0] += 1
    publisher.flush()


def watch_alerts(settings: Settings, seen: Seen, stop: threading.Event, ready: threading.Event) -> None:
    # read_committed, as every aiwarden consumer: an alert counts once its transaction committed.
    consumer = Consumer(confluent_config(settings, **{"group.id": "bench-latency", "enable.auto.commit": False,
                                                      "fetch.wait.max.ms": 10, "isolation.level": "read_committed"}))
    try:
        partitions = consumer.list_topics(topics.ALERTS, timeout=10).topics[topics.ALERTS].partitions
        consumer.assign([TopicPartition(topics.ALERTS, p, OFFSET_END) for p in partitions])
        ready.set()
        while not stop.is_set():
            message = consumer.poll(0.05)
            if message is not None and message.error() is None:
                seen.see(orjson.loads(message.value() or b"{}").get("entities", []))
    finally:
        consumer.close()


def watch_clickhouse(settings: Settings, seen: Seen, stop: threading.Event, since_ms: int) -> None:
    client = connect(settings)
    db = settings.clickhouse.database
    sql = (f"SELECT DISTINCT arrayJoin(entities) AS e FROM {db}.alerts "  # noqa: S608 - db from settings
           "WHERE last_seen >= {since:Int64} AND has({pods:Array(String)}, e)")
    try:
        while not stop.is_set():
            with seen.lock:
                pending = sorted(seen.watch - set(seen.times))
            if pending:
                rows = client.query(sql, parameters={"since": since_ms, "pods": pending}).result_rows
                seen.see([row[0] for row in rows])
            time.sleep(0.05)
    finally:
        client.close()


def run(settings: Settings, rate_and_origin: tuple[float, str] = (DEFAULT_RATE, "default"), attacks: int = 20,
        warmup_s: float = 20.0, budget_s: float = 240.0, log_dir: Path | None = None) -> dict[str, Any]:
    rate, origin = rate_and_origin
    since_ms = int(time.time() * 1000) - 60_000
    on_topic, in_clickhouse, arrivals = Seen(), Seen(), Arrivals()
    stop, ready = threading.Event(), threading.Event()
    published = [0]
    latencies: dict[str, list[float]] = {"alert_s": [], "clickhouse_s": [], "webhook_s": []}
    with Receiver(SECRET, 0, out=arrivals) as receiver:
        port = receiver.start_in_thread()
        worker = start_worker(settings, "bench-latency", log_dir,
                              **containment_env(log_dir or settings.state_dir, port))
        wait_ready([worker])  # the background starts on a ready worker, not on one still joining its groups
        threads = [
            threading.Thread(target=background, args=(settings, rate, stop, published), daemon=True),
            threading.Thread(target=watch_alerts, args=(settings, on_topic, stop, ready), daemon=True),
            threading.Thread(target=watch_clickhouse, args=(settings, in_clickhouse, stop, since_ms), daemon=True),
        ]
        background_started = time.monotonic()
        for thread in threads:
            thread.start()
        publisher = Publisher(settings, **{"linger.ms": 1})
        used: set[str] = set()
        lag = warm_lag = None
        try:
            ready.wait(30)
            time.sleep(warmup_s)  # steady background
            # Attacks start once the worker keeps up (lag under a second of background), or after 60 s more.
            settle_until = time.monotonic() + 60
            while (warm_lag := pipeline_lag(settings, app_id_of(worker))[0]) > rate and (
                    time.monotonic() < settle_until):
                time.sleep(1)
            seed, ends = 2000, time.monotonic() + budget_s
            for _ in range(attacks):
                if time.monotonic() > ends:  # a worker far behind: the attacks left are not measured
                    break
                pod, records, _ = make_attack(seed)
                while pod in used:
                    seed += 1
                    pod, records, _ = make_attack(seed)
                seed += 1
                used.add(pod)
                for seen in (on_topic, in_clickhouse):
                    with seen.lock:
                        seen.watch.add(pod)
                started = publish_records(publisher, records)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not (
                    pod in on_topic.times and pod in in_clickhouse.times and pod in arrivals.times
                ):
                    time.sleep(0.01)
                for name, times in (("alert_s", on_topic.times), ("clickhouse_s", in_clickhouse.times),
                                    ("webhook_s", arrivals.times)):
                    if pod in times:
                        latencies[name].append(times[pod] - started)
                time.sleep(1)
            lag = pipeline_lag(settings, app_id_of(worker))[0]
        finally:
            stop.set()
            background_s = time.monotonic() - background_started
            for thread in threads:
                thread.join(10)
            worker.stop()
    return {
        "rate": rate,
        "rate_from": origin,
        "background_published": published[0],
        "background_rate": round(published[0] / background_s) if background_s else None,
        "attacks": attacks,
        "attacks_published": len(used),
        "lag_after_warmup": warm_lag,
        "lag_at_end": lag,
        **{name: spread(values) for name, values in latencies.items()},
    }
