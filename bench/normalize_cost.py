"""CPU cost per record of the normalize path: ``normalize_bytes`` (decode within limits, route,
normalize) and ``encode`` of the envelope, per source, over simulator records in the vendors' formats.

    python -m bench.normalize_cost [--records 400] [--repeats 5]

Prints µs per record (the minimum of ``repeats`` timeit runs, each over every record of the source)
for ``decode_record`` alone, ``normalize_bytes``, ``encode`` and the two together. No broker needed.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from schemas.codec import DEFAULT_LIMITS, decode_record, encode
from schemas.sources import SOURCES, normalize_bytes
from streams.simulator import SimConfig, Simulator


def records_by_source(per_source: int, seed: int = 7) -> dict[str, list[bytes]]:
    """Up to ``per_source`` raw simulator records (as published: ``encode(record)``) of each source."""
    found: dict[str, list[bytes]] = {name: [] for name in SOURCES}
    for record in Simulator(SimConfig(seed=seed, duration_s=120, rate=500)).records():
        bucket = found[record.source]
        if len(bucket) < per_source:
            bucket.append(encode(record.record))
    return found


def per_record_us(work: Callable[[], object], count: int, repeats: int) -> float:
    """µs per record: the fastest of ``repeats`` runs of ``work`` (one pass over ``count`` records)."""
    return min(timeit.repeat(work, number=1, repeat=repeats)) / count * 1e6


def measure(per_source: int = 400, repeats: int = 5) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for source, raws in records_by_source(per_source).items():
        if not raws:
            continue
        events = [normalize_bytes(data, source) for data in raws]
        count = len(raws)

        def decode_only(raws: list[bytes] = raws) -> None:
            for data in raws:
                decode_record(data, DEFAULT_LIMITS)

        def normalize_only(raws: list[bytes] = raws, source: str = source) -> None:
            for data in raws:
                normalize_bytes(data, source)

        def encode_only(events: list[object] = events) -> None:  # type: ignore[assignment]
            for event in events:
                encode(event)

        def both(raws: list[bytes] = raws, source: str = source) -> None:
            for data in raws:
                encode(normalize_bytes(data, source))

        results[source] = {
            "records": count,
            "decode_record": per_record_us(decode_only, count, repeats),
            "normalize_bytes": per_record_us(normalize_only, count, repeats),
            "encode": per_record_us(encode_only, count, repeats),
            "total": per_record_us(both, count, repeats),
            "bytes": sum(map(len, raws)) / count,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400, help="records per source")
    parser.add_argument("--repeats", type=int, default=5, help="timeit repeats (the minimum is kept)")
    args = parser.parse_args()
    results = measure(args.records, args.repeats)
    print(
        f"{'source':<10} {'records':>7} {'bytes':>6} {'decode_record':>13} {'normalize_bytes':>15} "
        f"{'encode':>7} {'total':>7}   (µs per record, min of {args.repeats})"
    )
    for source, row in results.items():
        print(
            f"{source:<10} {row['records']:>7} {row['bytes']:>6.0f} {row['decode_record']:>13.2f} "
            f"{row['normalize_bytes']:>15.2f} {row['encode']:>7.2f} {row['total']:>7.2f}"
        )


if __name__ == "__main__":
    main()
