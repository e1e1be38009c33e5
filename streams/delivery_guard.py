"""Guards against records the worker reads but never processes (a Faust race at the end of a rebalance).

The race (faust-streaming 0.15.3): when a rebalance's recovery ends, Faust resumes the stream
partitions, awaits a seek to the committed offsets, then calls ``flow_control.resume()``, which
clears every stream queue. Flow is already active by then (recovery resumed it to read the
changelogs), so records fetched during the seek reach the agents' queues and are cleared: never
processed, never acknowledged. Faust's offset tracking then sometimes commits past them (while
the seek has not yet told it the committed offset, it has nothing to compare acknowledgements
with): lost for good; otherwise it holds the partition's commit at the gap forever while later
records are processed.
Found as a stalled partition after a worker restart (``tests/integration/test_faults.py``, kill
-9); a worker restarted onto a 9,000-record backlog lost 80 events in one restart of three, 8 of
them held.

Two guards:

- ``hold_flow_during_seek`` is connected to Faust's ``on_rebalance_complete`` signal, which is
  sent just before that sequence: it suspends flow, so nothing is delivered until Faust resumes
  it after the seek (records fetched meanwhile are dropped by Faust and re-read from the
  committed offset).
- ``GapWatch`` (a worker task), a safety net for held gaps only: it checks every
  ``worker.stall_check_s`` for a partition whose commit is held by offsets that no live message
  holds any more, logs it, counts it and seeks the partition back to its committed offset so the
  records are read again (at least once: records after them are processed a second time).

The watch reads Faust's consumer bookkeeping (``_acked``, ``_committed_offset``,
``_unacked_messages``): tied to the pinned Faust version, like ``batching.table_put``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import faust

from streams.metrics import PARTITIONS_REREAD

log = logging.getLogger(__name__)

Gap = tuple[int, int]  # (committed offset, first acknowledged offset after it)


async def hold_flow_during_seek(sender: faust.App, **_: Any) -> None:
    """Stop delivering records until Faust resumes flow after seeking to the committed offsets."""
    sender.flow_control.suspend()
    sender.consumer.stop_flow()


def held_gaps(consumer: Any) -> dict[Any, Gap]:
    """Partitions whose commit is held by offsets no live message holds: ``{tp: (committed, first
    acknowledged)}``. Faust commits past a single missing offset at the head, so a gap counts from two."""
    live: dict[Any, set[int]] = {}
    for message in list(consumer._unacked_messages):  # noqa: SLF001 - see the module docstring
        live.setdefault(message.tp, set()).add(message.offset)
    gaps: dict[Any, Gap] = {}
    for tp, acked in list(consumer._acked.items()):  # noqa: SLF001
        committed = consumer._committed_offset.get(tp)  # noqa: SLF001
        if not acked or committed is None:
            continue
        first = min(acked)
        if first - committed > 1 and not any(committed <= o < first for o in live.get(tp, ())):
            gaps[tp] = (committed, first)
    return gaps


class GapWatch:
    """Re-reads a partition whose commit has been held by lost records for two checks in a row."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.seen: dict[Any, Gap] = {}

    async def check(self) -> dict[Any, Gap]:
        """One check; returns the partitions it sought back (their gaps)."""
        consumer: Any = self.app.consumer
        if self.app.rebalancing or not consumer.flow_active:
            self.seen.clear()
            return {}
        gaps = held_gaps(consumer)
        stuck = {tp: gap for tp, gap in gaps.items() if self.seen.get(tp) == gap}
        self.seen = {tp: gap for tp, gap in gaps.items() if tp not in stuck}
        for tp, (committed, first) in stuck.items():
            log.warning(
                "partition %s:%d: offsets %d-%d were read but never processed; its commit was held at %d. "
                "Re-reading the partition from %d (records after them are processed again).",
                tp.topic, tp.partition, committed, first - 1, committed, committed,
            )
            PARTITIONS_REREAD.labels(tp.topic).inc()
            await consumer.seek_wait({tp: committed})
        return stuck


def install(app: faust.App, check_s: float) -> None:
    """Connect the seek guard and start the gap watch on ``app``."""
    app.on_rebalance_complete.connect(cast(Any, hold_flow_during_seek))  # mode types a union mypy cannot match
    watch = GapWatch(app)

    @app.timer(interval=check_s)  # type: ignore[untyped-decorator]
    async def watch_held_commits() -> None:
        await watch.check()
