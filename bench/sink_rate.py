"""How fast does the ClickHouse sink insert? Prefills aiwarden.events with N normalized events, then
runs one ClickHouseSink (in process, in its own thread as in the worker, its own consumer group,
aiwarden.events only) until it has inserted all N, and reports the sustained rate, the batches and
the insert latencies, the CPU seconds of the sink's process and of the services (per 100k rows too,
from /proc: less sensitive to a loaded machine than the rate), and checks the rows in ClickHouse.

The events are a fixed pool of simulator events, encoded once, each copy given a unique event id
(a per-run prefix and a counter), so that producing N of them costs little. The sink's group starts
at the end offsets from before the prefill, so it reads exactly these N records.

    python -m bench.sink_rate --rows 200000     # starts the bench services, stops them after
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from itertools import islice
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from bench.common import cpu_seconds
from infra import services
from infra.clickhouse.client import connect
from infra.kafka.clients import confluent_config
from infra.settings import Settings
from schemas.codec import encode
from schemas.sources import SOURCES
from streams import topics
from streams.pipeline.sink import ClickHouseSink
from streams.simulator import SimConfig, Simulator

ROOT = Path(__file__).resolve().parents[1]
POOL_SIZE = 2_000
PLACEHOLDER = "@@aiwarden-bench-event-id-0000@@"  # 32 characters, like a real event id
COORDINATOR_ERRORS = frozenset(
    {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS}
)


class TimedSink(ClickHouseSink):
    """The sink, with the duration, size and thread CPU of every insert and the thread CPU of its consumer
    loop recorded (sink.py itself unchanged). Inserts run in several threads at once: ``list.append`` is
    atomic. The process's CPU less these is librdkafka's threads (C, without the GIL)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.inserts: list[tuple[float, float, int]] = []  # (start, end, rows), perf_counter seconds
        self.insert_cpu: list[float] = []  # thread CPU seconds of each insert (join, HTTP request)
        self.loop_cpu = 0.0  # thread CPU seconds of the consumer loop (consume, batching, commits)

    def _insert(self, table: str, lines: list[bytes], token: str | None) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        super()._insert(table, lines, token)
        self.insert_cpu.append(time.thread_time() - cpu)
        self.inserts.append((started, time.perf_counter(), len(lines)))

    def _step(self, consumer: Any) -> None:
        cpu = time.thread_time()
        super()._step(consumer)
        self.loop_cpu += time.thread_time() - cpu


def event_pool(size: int = POOL_SIZE) -> list[tuple[bytes, bytes, bytes]]:
    """``size`` encoded simulator events split around their event id: (before, after, key)."""
    start_ms = (int(time.time()) - 3600) * 1000
    simulator = Simulator(SimConfig(seed=5, duration_s=max(2.0, size / 500), rate=500, start_ms=start_ms))
    pool = []
    for record in islice(simulator.records(), size):
        event = SOURCES[record.source].normalize(record.record)
        event.event_id = PLACEHOLDER
        before, after = encode(event).split(PLACEHOLDER.encode())
        pool.append((before, after, event.entity_id.encode()))
    return pool


def end_offsets(admin: AdminClient, topic: str) -> dict[int, int]:
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    futures = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions})
    return {tp.partition: future.result().offset for tp, future in futures.items()}


def prefill(settings: Settings, rows: int, prefix: str) -> float:
    """Produce ``rows`` events with ids ``prefix`` + a counter to aiwarden.events; returns the seconds taken."""
    pool = event_pool(min(POOL_SIZE, rows))
    producer = Producer(
        confluent_config(
            settings,
            **{
                "acks": "all",
                "compression.type": "lz4",
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
            },
        )
    )
    failed = 0

    def delivered(err: Any, _message: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    width = 32 - len(prefix)
    started = time.perf_counter()
    for i in range(rows):
        before, after, key = pool[i % len(pool)]
        value = before + f"{prefix}{i:0{width}x}".encode() + after
        while True:
            try:
                producer.produce(topics.EVENTS, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failed:
        msg = f"prefill: {remaining} events not delivered, {failed} failed"
        raise RuntimeError(msg)
    return time.perf_counter() - started


def start_group_at(settings: Settings, group: str, offsets: dict[int, int], timeout_s: float = 60.0) -> None:
    """Commit ``offsets`` on aiwarden.events for the (new, member-less) group before the sink joins it.

    Retried while the group coordinator is not ready (a freshly started broker creates and loads
    ``__consumer_offsets`` on the first group request)."""
    admin = AdminClient(confluent_config(settings))
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topics.EVENTS, p, o) for p, o in offsets.items()])]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = admin.alter_consumer_group_offsets(request, request_timeout=10)[group].result()
            errors = [tp.error for tp in result.topic_partitions if tp.error is not None]
        except KafkaException as exc:
            errors = [exc.args[0]]
        if not errors:
            return
        if time.monotonic() > deadline or not all(e.retriable() or e.code() in COORDINATOR_ERRORS for e in errors):
            msg = f"could not set the start offsets of {group}: {errors}"
            raise RuntimeError(msg)
        time.sleep(0.5)


def drive(sink: TimedSink, rows: int, timeout_s: float) -> float:
    """Run the sink (its own thread, as in the worker) until it has inserted ``rows``; returns when that
    happened (perf_counter)."""
    sink.start()
    deadline = time.perf_counter() + timeout_s
    try:
        while sink.inserted < rows:
            if not sink.alive:
                msg = "the sink stopped before inserting every row"
                raise RuntimeError(msg)
            if time.perf_counter() > deadline:
                msg = f"the sink inserted {sink.inserted} of {rows} rows in {timeout_s:.0f}s"
                raise TimeoutError(msg)
            time.sleep(0.01)
        return time.perf_counter()
    finally:
        sink.stop()


def service_pids(settings: Settings) -> dict[str, int | None]:
    """The pids of the local services (none when they are external)."""
    base = Settings(state_dir=settings.state_dir)
    return {service.name: service.pid() for service in services.local_services(base)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(settings: Settings, rows: int = 200_000, batch_rows: int | None = None) -> dict[str, Any]:
    """Prefill ``rows`` events, sink them with one in-process ClickHouseSink, report the rate."""
    app_id = f"bench-sink-{uuid.uuid4().hex[:8]}"
    prefix = f"b{uuid.uuid4().hex[:7]}"
    worker = settings.worker.model_copy(
        update={"app_id": app_id, **({"sink_batch_rows": batch_rows} if batch_rows else {})}
    )
    settings = settings.model_copy(update={"worker": worker})
    admin = AdminClient(confluent_config(settings))
    start_offsets = end_offsets(admin, topics.EVENTS)
    prefill_s = prefill(settings, rows, prefix)
    start_group_at(settings, f"{app_id}-sink", start_offsets)

    pids = service_pids(settings)
    cpu_before = {name: cpu_seconds(pid) for name, pid in {**pids, "bench": os.getpid()}.items()}
    load_before = os.getloadavg()
    sink = TimedSink(settings, topic_tables={topics.EVENTS: "events"})
    started = time.perf_counter()
    try:
        done = drive(sink, rows, timeout_s=max(300.0, rows / 500))
    finally:
        sink.close()
    load_after = os.getloadavg()
    cpu_used = {}
    for name, pid in {**pids, "bench": os.getpid()}.items():
        before, after = cpu_before[name], cpu_seconds(pid)
        cpu_used[name] = round(after - before, 1) if before is not None and after is not None else None

    inserts = sink.inserts
    first_insert = inserts[0][0]
    sustained_s = done - first_insert
    latencies_ms = [(end - start) * 1000 for start, end, _ in inserts]
    sizes = [n for _, _, n in inserts]

    client = connect(settings)
    try:
        raw, final = client.query(
            "SELECT (SELECT count() FROM aiwarden.events WHERE startsWith(event_id, {p:String})), "
            "(SELECT count() FROM aiwarden.events FINAL WHERE startsWith(event_id, {p:String}))",
            parameters={"p": prefix},
        ).result_rows[0]
    finally:
        client.close()

    return {
        "rows": rows,
        "inserted": sink.inserted,
        "batch_rows_setting": settings.worker.sink_batch_rows,
        "prefill_s": round(prefill_s, 2),
        "prefill_rows_per_s": round(rows / prefill_s),
        "start_to_first_insert_s": round(first_insert - started, 2),
        "sustained_s": round(sustained_s, 2),
        "rows_per_s": round(rows / sustained_s),
        "insert_only_rows_per_s": round(sum(sizes) / (sum(latencies_ms) / 1000)),
        "inserts": len(inserts),
        "rows_per_insert": {"mean": round(statistics.mean(sizes)), "min": min(sizes), "max": max(sizes)},
        "insert_ms": {
            "median": round(statistics.median(latencies_ms), 1),
            "p99": round(percentile(latencies_ms, 0.99), 1),
            "max": round(max(latencies_ms), 1),
        },
        "insert_share_of_time": round(sum(latencies_ms) / 1000 / sustained_s, 3),
        "clickhouse_rows": int(raw),
        "clickhouse_rows_final": int(final),
        "count_check": int(raw) == int(final) == rows,
        "machine": {
            "cores": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
            "cpu_s_during_sink": cpu_used,  # "bench" is the sink's process (its thread and insert threads)
            "cpu_s_per_100k_rows": {name: None if used is None else round(used * 100_000 / rows, 2)
                                    for name, used in cpu_used.items()},
            # Of the sink process's: its consumer loop's thread and its insert threads (Python, mostly
            # holding the GIL); the rest is librdkafka's threads (fetch, decompression) and the bench.
            "sink_threads_cpu_s_per_100k_rows": {
                "consumer_loop": round(sink.loop_cpu * 100_000 / rows, 2),
                "inserts": round(sum(sink.insert_cpu) * 100_000 / rows, 2),
            },
        },
    }


def main() -> None:
    from streams.setup import migrate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=None, help="sink batch size (default: the setting)")
    args = parser.parse_args()
    base = Settings(state_dir=ROOT / ".aiwarden-bench")
    settings = services.up(base)
    try:
        migrate(settings)
        result = run(settings, args.rows, args.batch_rows)
    finally:
        services.down(base)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
