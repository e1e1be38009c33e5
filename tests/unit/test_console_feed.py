"""The alert feed's fan-out, cursors and filters, without Kafka (the Kafka side is an integration test)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from rich.console import Console

from infra.settings import Settings
from streams.alerts_tail import render
from streams.console.feed import HEARTBEAT, AlertFeed, CursorError, FeedItem, Overflow, encode_cursor, parse_cursor
from streams.console.filters import AlertFilter, FilterError
from streams.console.views import sse_frame

pytestmark = pytest.mark.unit


def alert(n: int, severity: str = "high", detectors: tuple[str, ...] = ("cryptominer",), entity: str = "pod:a/b",
          version: int = 1) -> dict[str, Any]:
    return {"alert_id": f"a{n}", "severity": severity, "detectors": list(detectors), "primary_entity": entity,
            "entities": [entity, "namespace:a"], "version": version}


def feed_with(*alerts: tuple[int, int, dict[str, Any]], **kwargs: Any) -> AlertFeed:
    feed = AlertFeed(Settings(), **kwargs)
    for partition, offset, value in alerts:
        feed._append(partition, offset, orjson.dumps(value))
    feed.ready.set()
    return feed


async def take(feed: AlertFeed, n: int, cursor: dict[int, int] | None = None, backlog: int = 50,
               heartbeat_s: float = 5.0) -> list[FeedItem | None]:
    got: list[FeedItem | None] = []
    async for item in feed.follow(cursor, backlog, heartbeat_s):
        got.append(item)
        if len(got) == n:
            break
    return got


def test_cursor_round_trip_and_errors() -> None:
    assert parse_cursor(encode_cursor({2: 7, 0: 12})) == {0: 12, 2: 7}
    assert encode_cursor({2: 7, 0: 12}) == "0:12,2:7"
    assert parse_cursor("") == {}
    for bad in ("garbage", "0:x", "a:1", "0:1,2", "-1:3"):
        with pytest.raises(CursorError, match="partition:offset"):
            parse_cursor(bad)


def test_each_item_carries_the_position_after_it() -> None:
    feed = feed_with((0, 0, alert(1)), (1, 0, alert(2)), (0, 1, alert(3)))
    assert [item.cursor for item in feed.buffer] == ["0:1", "0:1,1:1", "0:2,1:1"]
    assert feed.position == {0: 2, 1: 1}


def test_undecodable_records_are_skipped_and_counted() -> None:
    feed = feed_with((0, 0, alert(1)))
    feed._append(0, 1, b"{not json")
    feed._append(0, 2, b'{"no": "alert id"}')
    feed._append(0, 3, orjson.dumps(alert(4)))
    assert feed.skipped == 2
    assert [item.alert["alert_id"] for item in feed.buffer] == ["a1", "a4"]
    assert feed.position == {0: 4}


def test_new_follower_gets_the_backlog_then_live_alerts() -> None:
    async def scenario() -> list[str]:
        feed = feed_with(*((0, i, alert(i)) for i in range(5)))
        task = asyncio.create_task(take(feed, 3, backlog=2))
        await asyncio.sleep(0.05)
        feed._append(0, 5, orjson.dumps(alert(5)))
        return [item.alert["alert_id"] for item in await task if item is not None]

    assert asyncio.run(scenario()) == ["a3", "a4", "a5"]


def test_resume_from_a_cursor_sends_exactly_what_was_missed() -> None:
    async def scenario() -> list[str]:
        feed = feed_with((0, 0, alert(0)), (1, 0, alert(1)), (0, 1, alert(2)), (1, 1, alert(3)), (0, 2, alert(4)))
        seen = feed.buffer[1].cursor  # the client had a0 and a1
        task = asyncio.create_task(take(feed, 4, parse_cursor(seen)))
        await asyncio.sleep(0.05)
        feed._append(1, 2, orjson.dumps(alert(5)))
        return [item.alert["alert_id"] for item in await task if item is not None]

    assert asyncio.run(scenario()) == ["a2", "a3", "a4", "a5"]


def test_an_alert_arriving_while_the_backlog_is_sent_is_sent_once() -> None:
    async def scenario() -> list[str]:
        feed = feed_with((0, 0, alert(0)))
        follower = feed.follow(None, 10, 5.0)
        first = await follower.__anext__()  # registered, backlog being sent
        feed._append(0, 1, orjson.dumps(alert(1)))  # now in the buffer AND the follower's queue
        second = await follower.__anext__()
        feed._append(0, 2, orjson.dumps(alert(2)))
        third = await follower.__anext__()
        await follower.aclose()
        return [item.alert["alert_id"] for item in (first, second, third) if item is not None]

    assert asyncio.run(scenario()) == ["a0", "a1", "a2"]


def test_quiet_feed_yields_heartbeats() -> None:
    feed = feed_with()
    assert asyncio.run(take(feed, 2, heartbeat_s=0.01)) == [HEARTBEAT, HEARTBEAT]


def test_a_follower_that_falls_behind_is_told_to_reconnect() -> None:
    async def scenario() -> None:
        feed = feed_with(queue_size=2)
        follower = feed.follow(None, 0, 5.0)
        pending = asyncio.ensure_future(follower.__anext__())
        await asyncio.sleep(0.01)
        for i in range(4):  # the follower is not reading: its queue of 2 fills
            feed._append(0, i, orjson.dumps(alert(i)))
        assert not feed.followers
        await pending  # the one the follower was waiting for
        with pytest.raises(Overflow):
            for _ in range(3):
                await follower.__anext__()

    asyncio.run(scenario())


def test_filters() -> None:
    assert AlertFilter().matches(alert(1, severity="info"))
    assert not AlertFilter.of("high").matches(alert(1, severity="medium"))
    assert AlertFilter.of("HIGH").matches(alert(1, severity="critical"))
    assert AlertFilter.of(detectors=["cryptominer,model_extraction"]).matches(alert(1))
    assert not AlertFilter.of(detectors=["model_extraction"]).matches(alert(1))
    assert AlertFilter.of(entity="namespace:a").matches(alert(1))
    assert not AlertFilter.of(entity="pod:other").matches(alert(1))
    with pytest.raises(FilterError, match="unknown severity 'urgent'"):
        AlertFilter.of("urgent")


def test_sse_frames() -> None:
    assert sse_frame("0:1", "alert", b'{"a":1}') == b'id: 0:1\nevent: alert\ndata: {"a":1}\n\n'
    assert sse_frame(None, "overflow", b"{}") == b"event: overflow\ndata: {}\n\n"


def test_alerts_tail_says_what_a_merged_alert_joined() -> None:
    console = Console(record=True, width=200, color_system=None)
    base = {"severity": "high", "risk_score": 70, "primary_entity": "pod:ml/a", "summary": "s", "last_seen": 0}
    render(console, base | {"version": 1, "status": "open"})
    render(console, base | {"version": 2, "status": "open"})
    render(console, base | {"version": 3, "status": "merged", "merged_into": "alert-42"})
    lines = [line for line in console.export_text().splitlines() if "pod:ml/a" in line]
    assert "update" not in lines[0] and "↻ update" in lines[1]
    assert "merged into alert-42" in lines[2] and "update" not in lines[2]
