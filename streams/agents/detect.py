"""``aiwarden.events`` → detectors → ``aiwarden.findings``, with per-entity state in Faust tables.

Events arrive keyed by their primary entity, so one worker owns an entity's state. Each detector's
state for a key lives in the ``detector-state`` table (changelog-backed: a restarted worker
recovers it). A state is copied per use (a few microseconds, next to Faust's tens per message)
and written back only when it changed, since each write is a changelog record. Class-level
anomaly models are checkpointed per partition into ``model-checkpoints`` every
``checkpoint_interval_s`` and restored at start, so a restart never means a cold model.
Findings go out keyed by their correlation anchor, so correlation state is per anchor too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

from detectors.base import Detector
from detectors.correlation import Correlator, anchor
from detectors.inventory import Inventory, InventoryChange
from detectors.registry import build_all, by_class
from infra.settings import Settings
from schemas.codec import encode
from schemas.envelope import Event
from schemas.findings import Finding
from streams import topics
from streams.agents.dead_letters import dead_letter

log = logging.getLogger(__name__)

DETECTOR_HEADER = "aiwarden-detector"


class ModelCheckpoints:
    """Checkpoints of the detectors' class-level models, one table entry per detector and partition."""

    def __init__(self, table: Any, detectors: list[Detector], interval_s: float) -> None:
        self.table = table
        self.models: dict[str, Any] = {
            d.id: getattr(d, "model") for d in detectors if getattr(d, "model", None) is not None  # noqa: B009
        }
        self.interval_s = interval_s
        self.last = time.monotonic()

    def restore(self) -> None:
        """Load the most-trained checkpoint of each model among the partitions this worker holds."""
        best: dict[str, tuple[int, str]] = {}
        for key, value in self.table.items():
            detector_id, _, _ = key.partition("|")
            n, blob = int(value["n"]), value["blob"]
            # Runs after every rebalance: never replace a model that has learned more since.
            if detector_id in self.models and n > max(self.models[detector_id].n, best.get(detector_id, (-1, ""))[0]):
                best[detector_id] = (n, blob)
        for detector_id, (n, blob) in best.items():
            try:
                self.models[detector_id].loads(bytes.fromhex(blob))
                log.info("restored %s model checkpoint (%d observations)", detector_id, n)
            except Exception as exc:  # noqa: BLE001 - a bad checkpoint must not stop detection
                log.warning("ignoring %s model checkpoint: %s", detector_id, exc)

    def maybe_save(self, partition: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return
        self.last = now
        for detector_id, model in self.models.items():
            self.table[f"{detector_id}|{partition}"] = {"n": model.n, "blob": model.dumps().hex()}


def load_state(stored: dict[str, Any] | None) -> tuple[dict[str, Any], bytes]:
    """A private copy of a table's state (detectors mutate it) and its serialized form, to tell
    whether anything changed. Table values are JSON on their changelog."""
    if not stored:
        return {}, b"{}"
    before = orjson.dumps(stored)
    return orjson.loads(before), before


def inventory_row(change: InventoryChange) -> dict[str, Any]:
    """The ``inventory`` table row for a change: the item as it is now, versioned by time."""
    item = change.item.to_dict()
    return {
        **item,
        "sanctioned": int(item["sanctioned"]),
        "public_exposure": int(item["public_exposure"]),
        "updated_ms": change.time_ms,
        "attributes": {"change": change.change, "detail": change.detail, "gpu": str(item.get("gpu", False)).lower(),
                       "callers": str(item.get("callers", 0))},
    }


def register(app: faust.App, settings: Settings) -> None:
    config = settings.detection
    detectors = build_all(config)
    dispatch = by_class(detectors)
    events = app.topic(topics.EVENTS, key_type=bytes, value_type=bytes, value_serializer="raw")
    findings_topic = app.topic(topics.FINDINGS, key_type=bytes, value_type=bytes, value_serializer="raw")
    state_table = app.Table("detector-state", default=None, key_type=str,
                            partitions=settings.kafka.partitions)
    model_table = app.Table("model-checkpoints", default=None, key_type=str,
                            partitions=settings.kafka.partitions)
    checkpoints = ModelCheckpoints(model_table, detectors, settings.worker.checkpoint_interval_s)
    app.aiwarden_models = checkpoints.models  # type: ignore[attr-defined]

    # Agents start before tables are recovered from their changelogs: restore once they are.
    @model_table.on_recover
    async def restore_models() -> None:
        checkpoints.restore()
    inventory = Inventory(config)
    inventory_topic = app.topic(topics.INVENTORY, key_type=bytes, value_type=bytes, value_serializer="raw")
    inventory_table = app.Table("inventory-state", default=None, key_type=str,
                                partitions=settings.kafka.partitions)
    dlq = app.topic(topics.DLQ, key_type=bytes, value_type=bytes, value_serializer="raw")

    rekey = app.topic(f"{settings.worker.app_id}-detect-rekey", key_type=bytes, value_type=bytes,
                      value_serializer="raw", internal=True, partitions=settings.kafka.partitions)
    by_id = {d.id: d for d in detectors}

    async def run_detector(detector: Detector, event: Event, key: str) -> None:
        slot = f"{detector.id}|{key}"
        state, before = load_state(state_table.get(slot))
        for finding in detector.detect(event, state):
            await findings_topic.send(key=anchor(finding).encode(), value=encode(finding))
        if orjson.dumps(state) != before:  # each write is a changelog record: only real changes
            state_table[slot] = state

    async def process(event: Event, raw: bytes) -> None:
        for asset_id in inventory.assets(event):
            state, before = load_state(inventory_table.get(asset_id))
            for change in inventory.observe(event, state, asset_id):
                await inventory_topic.send(key=asset_id.encode(), value=encode(inventory_row(change)))
            if orjson.dumps(state) != before:
                inventory_table[asset_id] = state
        for detector in dispatch.get(event.class_uid, ()):
            if detector.sources is not None and event.source not in detector.sources:
                continue
            key = detector.state_key(event)
            if key is None:
                continue
            if key == event.entity_id:
                await run_detector(detector, event, key)
            else:
                # State keyed on another entity (a bucket, an access key): repartition the event by
                # that key so the one worker owning the key sees every event about it.
                await rekey.send(key=key.encode(), value=raw, headers={DETECTOR_HEADER: detector.id.encode()})

    @app.agent(rekey, name="detect-rekeyed")
    async def detect_rekeyed(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            message = record.message
            headers = dict(message.headers or [])
            detector = by_id.get(headers.get(DETECTOR_HEADER, b"").decode())
            try:
                if detector is None:
                    msg = f"unknown detector in header {headers.get(DETECTOR_HEADER)!r}"
                    raise ValueError(msg)
                event = Event.from_dict(orjson.loads(record.value))
                await run_detector(detector, event, message.key.decode())
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the worker
                log.exception("rekeyed detection failed")
                await dead_letter(dlq, message, f"detection failed: {exc!r}", "events", "detect")

    @app.agent(events, name="detect")
    async def detect(stream: faust.StreamT[bytes]) -> None:
        async for event_record in stream.events():
            try:
                event = Event.from_dict(orjson.loads(event_record.value))
            except (TypeError, ValueError) as exc:  # written by something other than normalize
                await dead_letter(dlq, event_record.message, f"not an aiwarden event: {exc}", "events", "detect")
                continue
            try:
                await process(event, event_record.value)
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the worker
                log.exception("detection failed on event %s", event.event_id)
                await dead_letter(dlq, event_record.message, f"detection failed: {exc!r}", event.source, "detect")
            checkpoints.maybe_save(event_record.message.partition)


def register_correlation(app: faust.App, settings: Settings) -> None:
    """``aiwarden.findings`` (keyed by anchor) → one open alert per anchor → ``aiwarden.alerts``."""
    correlator = Correlator(settings.detection)
    findings = app.topic(topics.FINDINGS, key_type=bytes, value_type=bytes, value_serializer="raw")
    alerts = app.topic(topics.ALERTS, key_type=bytes, value_type=bytes, value_serializer="raw")
    table = app.Table("correlation-state", default=None, key_type=str,
                      partitions=settings.kafka.partitions)
    dlq = app.topic(topics.DLQ, key_type=bytes, value_type=bytes, value_serializer="raw")

    @app.agent(findings, name="correlate")
    async def correlate(stream: faust.StreamT[bytes]) -> None:
        async for record in stream.events():
            try:
                finding = Finding.from_dict(orjson.loads(record.value))
                key = anchor(finding)
                state, _ = load_state(table.get(key))
                alert = correlator.add(finding, state)
            except Exception as exc:  # noqa: BLE001 - one bad finding must not stop correlation
                log.exception("correlation failed")
                await dead_letter(dlq, record.message, f"correlation failed: {exc!r}", "findings", "correlate")
                continue
            table[key] = state
            if alert is not None:
                await alerts.send(key=alert.alert_id.encode(), value=encode(alert))
