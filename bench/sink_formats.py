"""What does an insert cost ClickHouse, per format and batch size? Inserts the same simulated events
(~2.2 KB JSON rows, each with a unique id) straight into ``aiwarden.events``, without Kafka, and
reports per variant the median over ``--rounds`` of: the ClickHouse server's CPU seconds per 100k
rows (from /proc, during the inserts and including the 10 s after them, when the parts they made
are merged), this process's CPU seconds per 100k rows (the conversion a worker would pay), and rows/s.
The variants run interleaved, round after round, so a loaded machine weighs on all of them alike.

- ``json``: what the sink sends: the records joined as ``JSONEachRow`` (ClickHouse parses them).
- ``arrow``: the records parsed in this process by ``pyarrow.json`` with an explicit schema built
  from the table's columns, sent as ``ArrowStream``. pyarrow's JSON reader cannot produce a Map, so
  the Map column (``extra``) is left out: this variant is a bound on what Arrow would save.

    python -m bench.sink_formats --rows 100000 --rounds 3    # starts the bench services, stops them after
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import cpu_seconds
from bench.sink_rate import ROOT, event_pool
from infra import services
from infra.clickhouse.client import connect
from infra.settings import Settings
from streams.pipeline.sink import INSERT_SETTINGS

Insert = Callable[[Any, list[bytes], str], None]
SCALARS = {"String": "string", "Int64": "int64", "UInt64": "uint64", "UInt32": "uint32", "UInt16": "uint16",
           "UInt8": "uint8", "Float32": "float32", "Float64": "float64"}


def arrow_type(clickhouse_type: str) -> Any:
    """The Arrow type pyarrow.json reads a column of ``clickhouse_type`` as; None when it cannot (Map)."""
    import pyarrow as pa

    kind = clickhouse_type
    if kind.startswith("LowCardinality("):
        kind = kind[len("LowCardinality("):-1]
    if kind.startswith("Array("):
        item = arrow_type(kind[len("Array("):-1])
        return None if item is None else pa.list_(item)
    return getattr(pa, SCALARS[kind])() if kind in SCALARS else None


def json_insert(client: Any, lines: list[bytes], token: str) -> None:
    client.raw_insert("aiwarden.events", insert_block=memoryview(b"\n".join(lines)),
                      settings={**INSERT_SETTINGS, "insert_deduplication_token": token}, fmt="JSONEachRow")


def arrow_insert(client: Any) -> Insert:
    import pyarrow as pa
    import pyarrow.json as pj

    columns = client.query("SELECT name, type FROM system.columns WHERE database = 'aiwarden' AND table = 'events' "
                           "AND default_kind = '' ORDER BY position").result_rows
    fields = [pa.field(name, kind) for name, t in columns if (kind := arrow_type(t)) is not None]
    options = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
    read = pj.ReadOptions(block_size=64 << 20, use_threads=False)

    def insert(client: Any, lines: list[bytes], token: str) -> None:
        table = pj.read_json(io.BytesIO(b"\n".join(lines)), parse_options=options, read_options=read)
        body = pa.BufferOutputStream()
        with pa.ipc.new_stream(body, table.schema) as writer:
            writer.write_table(table)
        client.raw_insert("aiwarden.events", column_names=table.column_names, insert_block=memoryview(body.getvalue()),
                          settings={"insert_deduplication_token": token, "async_insert": 0}, fmt="ArrowStream")

    return insert


def unique_rows(pool: list[tuple[bytes, bytes, bytes]], rows: int, prefix: str) -> list[bytes]:
    """``rows`` events from ``pool`` (see ``bench.sink_rate.event_pool``), ids ``prefix`` + a counter."""
    lines = []
    for i in range(rows):
        before, after, _ = pool[i % len(pool)]
        lines.append(before + f"{prefix}{i:024x}".encode() + after)
    return lines


def run(settings: Settings, rows: int = 100_000, rounds: int = 3, settle_s: float = 10.0) -> dict[str, Any]:
    pid = next(s.pid() for s in services.local_services(Settings(state_dir=settings.state_dir))
               if s.name == "clickhouse")
    client = connect(settings)
    pool = event_pool(2_000)
    variants: dict[str, tuple[Insert, int]] = {
        "json 10k": (json_insert, 10_000), "json 25k": (json_insert, 25_000), "json 50k": (json_insert, 50_000),
        "arrow 10k (no Map column)": (arrow_insert(client), 10_000),
    }
    samples: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in variants}
    try:
        for _ in range(rounds):
            for name, (insert, batch) in variants.items():
                prefix = uuid.uuid4().hex[:8]
                data = unique_rows(pool, rows, prefix)
                server, own, started = cpu_seconds(pid) or 0.0, time.process_time(), time.perf_counter()
                for i in range(0, rows, batch):
                    insert(client, data[i:i + batch], f"{prefix}-{i}")
                wall, own = time.perf_counter() - started, time.process_time() - own
                during = (cpu_seconds(pid) or 0.0) - server
                time.sleep(settle_s)  # merges of the parts just written
                total = (cpu_seconds(pid) or 0.0) - server
                samples[name].append((during, total, own, rows / wall))
    finally:
        client.close()
    per_100k = 100_000 / rows
    return {name: {
        "server_cpu_s_per_100k": round(statistics.median(s[0] for s in runs) * per_100k, 2),
        "server_cpu_s_per_100k_with_merges": round(statistics.median(s[1] for s in runs) * per_100k, 2),
        "client_cpu_s_per_100k": round(statistics.median(s[2] for s in runs) * per_100k, 2),
        "rows_per_s": round(statistics.median(s[3] for s in runs)),
    } for name, runs in samples.items()}


def main() -> None:
    import os

    from streams.setup import migrate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Settings(state_dir=ROOT / ".aiwarden-bench")
    settings = services.up(base)
    try:
        migrate(settings)
        load = os.getloadavg()
        result = run(settings, args.rows, args.rounds)
    finally:
        services.down(base)
    print(json.dumps({"rows": args.rows, "rounds": args.rounds, "load_before": [round(x, 2) for x in load],
                      "load_after": [round(x, 2) for x in os.getloadavg()], "variants": result}, indent=2))


if __name__ == "__main__":
    main()
