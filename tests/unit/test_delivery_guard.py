"""The guards against records read but never processed around a rebalance (streams/delivery_guard.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import faust
import pytest
from faust.types import TP

from streams import delivery_guard
from streams.delivery_guard import GapWatch, held_gaps
from streams.metrics import value

pytestmark = pytest.mark.unit

RAW = TP("aiwarden.raw.runtime", 3)
EVENTS = TP("aiwarden.events", 0)


@dataclass(frozen=True)
class Msg:
    tp: TP
    offset: int


@dataclass
class FakeConsumer:
    """Faust's consumer bookkeeping the guard reads, and the seek it asks for."""

    _acked: dict[TP, list[int]] = field(default_factory=lambda: defaultdict(list))
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)
    _unacked_messages: set[Msg] = field(default_factory=set)
    flow_active: bool = True
    sought: list[dict[TP, int]] = field(default_factory=list)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.append(dict(partitions))

    def stop_flow(self) -> None:
        self.flow_active = False

    def resume_flow(self) -> None:
        self.flow_active = True


@dataclass
class FakeApp:
    consumer: FakeConsumer
    rebalancing: bool = False


def consumer_with_gap(live: tuple[int, ...] = ()) -> FakeConsumer:
    """Committed at 14043, offsets 14046-14740 acknowledged: 14043-14045 missing."""
    consumer = FakeConsumer()
    consumer._committed_offset[RAW] = 14043
    consumer._acked[RAW] = list(range(14046, 14741))
    consumer._unacked_messages = {Msg(RAW, o) for o in live}
    return consumer


def test_a_gap_no_live_message_holds_is_reported() -> None:
    assert held_gaps(consumer_with_gap()) == {RAW: (14043, 14046)}


def test_a_gap_still_being_processed_is_not_reported() -> None:
    assert held_gaps(consumer_with_gap(live=(14044,))) == {}
    assert held_gaps(consumer_with_gap(live=(14741,))) == {RAW: (14043, 14046)}  # after the gap: no help


def test_no_gap_and_the_head_offset_alone_are_not_reported() -> None:
    consumer = FakeConsumer()
    consumer._committed_offset.update({RAW: 10, EVENTS: 10})
    consumer._acked[RAW] = [10, 11, 12]
    consumer._acked[EVENTS] = [11, 12]  # Faust commits past one missing head offset itself
    assert held_gaps(consumer) == {}
    consumer._committed_offset[RAW] = None  # nothing committed yet: Faust commits what is acked
    consumer._acked[RAW] = [40, 41]
    assert held_gaps(consumer) == {}


def test_a_gap_seen_twice_is_reread_from_the_committed_offset() -> None:
    consumer = consumer_with_gap()
    watch = GapWatch(FakeApp(consumer))  # type: ignore[arg-type]
    before = value("aiwarden_partitions_reread_total", topic=RAW.topic)
    assert asyncio.run(watch.check()) == {}  # first sighting: maybe in flight, wait
    assert consumer.sought == []
    assert asyncio.run(watch.check()) == {RAW: (14043, 14046)}
    assert consumer.sought == [{RAW: 14043}]
    assert value("aiwarden_partitions_reread_total", topic=RAW.topic) == before + 1
    assert asyncio.run(watch.check()) == {}  # re-sighted afresh after the seek, not sought again at once


def test_a_gap_that_moves_between_checks_is_not_reread() -> None:
    consumer = consumer_with_gap()
    watch = GapWatch(FakeApp(consumer))  # type: ignore[arg-type]
    asyncio.run(watch.check())
    consumer._committed_offset[RAW] = 14044  # progress: the commit moved
    consumer._acked[RAW] = list(range(14047, 14741))
    assert asyncio.run(watch.check()) == {}
    assert consumer.sought == []


@pytest.mark.parametrize("state", ["rebalancing", "flow stopped"])
def test_no_rereading_while_faust_itself_moves_partitions(state: str) -> None:
    consumer = consumer_with_gap()
    app = FakeApp(consumer)
    watch = GapWatch(app)  # type: ignore[arg-type]
    asyncio.run(watch.check())
    if state == "rebalancing":
        app.rebalancing = True
    else:
        consumer.flow_active = False
    assert asyncio.run(watch.check()) == {}
    assert consumer.sought == [] and watch.seen == {}


def test_faust_clears_stream_queues_when_flow_resumes() -> None:
    """The behaviour the seek guard exists for: resume() drops what a stream queue holds, even when
    flow was already active. If a Faust upgrade changes this, revisit streams/delivery_guard.py."""

    async def scenario() -> int:
        app = faust.App("guard-test", broker="kafka://127.0.0.1:1")  # on this loop: closed with it
        queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
        app.flow_control.resume()
        queue.put_nowait("a record")
        app.flow_control.resume()
        return queue.qsize()

    assert asyncio.run(scenario()) == 0


def test_the_seek_guard_holds_flow_until_faust_resumes_it() -> None:
    async def scenario() -> list[bool]:
        app = faust.App("guard-test", broker="kafka://127.0.0.1:1")
        app.consumer = FakeConsumer()  # type: ignore[assignment]  # Faust's own starts a thread with its loop
        delivery_guard.install(app, check_s=15.0)
        app.flow_control.resume()
        app.consumer.resume_flow()
        await app.on_rebalance_complete.send()
        held = [app.flow_control.is_active(), app.consumer.flow_active]
        app.flow_control.resume()  # what Faust does after its seek
        app.consumer.resume_flow()
        return [*held, app.flow_control.is_active(), app.consumer.flow_active]

    assert asyncio.run(scenario()) == [False, False, True, True]
