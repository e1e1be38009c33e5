"""``aiwarden.events`` → detectors → ``aiwarden.findings``, with per-entity state in Faust tables.

Events arrive keyed by their primary entity, so one worker owns an entity's state. Each detector's
state for a key lives in the ``detector-state`` table (changelog-backed: a restarted worker
recovers it). Events are taken in batches; a key's state is loaded once per batch, copied
(detectors mutate it) and written back once at the end of the batch, only if it changed, since
each write is a changelog record (``streams.agents.batching``). Class-level
anomaly models are checkpointed per partition into ``model-checkpoints`` every
``checkpoint_interval_s`` and restored at start, so a restart never means a cold model.
Findings go out keyed by their correlation anchor, so correlation state is per anchor too.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
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
from streams.agents.batching import TableBatch, batches, count_into, observe_latency, table_put
from streams.agents.dead_letters import dead_letter
from streams.metrics import ALERTS, FINDINGS

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

    async def maybe_save(self, partitions: Iterable[int]) -> None:
        """Every ``interval_s``: checkpoint each model under each of ``partitions`` (a batch's)."""
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return
        self.last = now
        for detector_id, model in self.models.items():
            value = None
            for partition in partitions:
                value = value or {"n": model.n, "blob": model.dumps().hex()}
                await table_put(self.table, partition, f"{detector_id}|{partition}", value)


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


class Detection:
    """The detect agents' work on one batch of events, apart from Faust (unit-testable): inventory
    and detectors over per-batch table state, outputs sent as they come, states flushed per batch.
    ``findings``, ``inventory``, ``rekey`` and ``dlq`` are topics (anything with an async ``send``);
    ``states``, ``assets`` and ``models`` are Faust tables."""

    def __init__(self, settings: Settings, *, findings: Any, inventory: Any, rekey: Any, dlq: Any, states: Any,
                 assets: Any, models: Any) -> None:
        config = settings.detection
        self.detectors = build_all(config)
        self.dispatch = by_class(self.detectors)
        self.by_id = {d.id: d for d in self.detectors}
        self.inventory = Inventory(config)
        self.findings, self.inventory_topic, self.rekey, self.dlq = findings, inventory, rekey, dlq
        self.states, self.assets = states, assets
        self.checkpoints = ModelCheckpoints(models, self.detectors, settings.worker.checkpoint_interval_s)

    async def run_detector(self, detector: Detector, event: Event, key: str, partition: int, states: TableBatch,
                           found: Counter[str]) -> None:
        with states.guarded(f"{detector.id}|{key}", partition) as state:
            results = list(detector.detect(event, state))
        for finding in results:
            await self.findings.send(key=anchor(finding).encode(), value=encode(finding))
        found[detector.id] += len(results)

    async def process(self, event: Event, raw: bytes, partition: int, states: TableBatch, assets: TableBatch,
                      found: Counter[str]) -> None:
        for asset_id in self.inventory.assets(event):
            with assets.guarded(asset_id, partition) as state:
                changes = list(self.inventory.observe(event, state, asset_id))
            for change in changes:
                await self.inventory_topic.send(key=asset_id.encode(), value=encode(inventory_row(change)))
        for detector in self.dispatch.get(event.class_uid, ()):
            if detector.sources is not None and event.source not in detector.sources:
                continue
            key = detector.state_key(event)
            if key is None:
                continue
            if key == event.entity_id:
                await self.run_detector(detector, event, key, partition, states, found)
            else:
                # State keyed on another entity (a bucket, an access key): repartition the event by
                # that key so the one worker owning the key sees every event about it.
                await self.rekey.send(key=key.encode(), value=raw, headers={DETECTOR_HEADER: detector.id.encode()})

    async def events_batch(self, batch: Sequence[Any]) -> None:
        """One batch from ``aiwarden.events`` (Faust events: ``.value``, ``.message``)."""
        states, assets, found = TableBatch(self.states), TableBatch(self.assets), Counter[str]()
        for record in batch:
            message = record.message
            try:
                event = Event.from_dict(orjson.loads(record.value))
            except (TypeError, ValueError) as exc:  # written by something other than normalize
                await dead_letter(self.dlq, message, f"not an aiwarden event: {exc}", "events", "detect")
                continue
            try:
                await self.process(event, record.value, message.partition, states, assets, found)
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the worker
                log.exception("detection failed on event %s", event.event_id)
                await dead_letter(self.dlq, message, f"detection failed: {exc!r}", event.source, "detect")
        await self.end_batch(batch, found, states, assets)

    async def rekeyed_batch(self, batch: Sequence[Any]) -> None:
        """One batch from the re-key topic: events keyed by one detector's state key."""
        states, found = TableBatch(self.states), Counter[str]()
        for record in batch:
            message = record.message
            headers = dict(message.headers or [])
            detector = self.by_id.get(headers.get(DETECTOR_HEADER, b"").decode())
            try:
                if detector is None:
                    msg = f"unknown detector in header {headers.get(DETECTOR_HEADER)!r}"
                    raise ValueError(msg)
                event = Event.from_dict(orjson.loads(record.value))
                key = (message.key or b"").decode()
                await self.run_detector(detector, event, key, message.partition, states, found)
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the worker
                log.exception("rekeyed detection failed")
                await dead_letter(self.dlq, message, f"detection failed: {exc!r}", "events", "detect")
        await self.end_batch(batch, found, states)

    async def end_batch(self, batch: Sequence[Any], found: Counter[str], *tables: TableBatch) -> None:
        """After a batch: each changed state written once, models checkpointed when due, metrics."""
        for table in tables:
            await table.flush()
        await self.checkpoints.maybe_save(sorted({record.message.partition for record in batch}))
        count_into(FINDINGS, found)
        observe_latency("detect", [record.message for record in batch])


def register(app: faust.App, settings: Settings) -> None:
    partitions = settings.kafka.partitions

    def table(name: str) -> Any:
        return app.Table(name, default=None, key_type=str, partitions=partitions)

    def topic(name: str, **options: Any) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw", **options)

    models = app.Table("model-checkpoints", default=None, key_type=str, partitions=partitions)
    rekey = topic(f"{settings.worker.app_id}-detect-rekey", internal=True, partitions=partitions)
    detection = Detection(
        settings, findings=topic(topics.FINDINGS), inventory=topic(topics.INVENTORY), rekey=rekey,
        dlq=topic(topics.DLQ), states=table("detector-state"), assets=table("inventory-state"), models=models,
    )
    app.aiwarden_models = detection.checkpoints.models  # type: ignore[attr-defined]

    # Agents start before tables are recovered from their changelogs: restore once they are.
    @models.on_recover
    async def restore_models() -> None:
        detection.checkpoints.restore()

    @app.agent(rekey, name="detect-rekeyed")
    async def detect_rekeyed(stream: faust.StreamT[bytes]) -> None:
        async for batch in batches(stream):
            await detection.rekeyed_batch(batch)

    @app.agent(topic(topics.EVENTS), name="detect")
    async def detect(stream: faust.StreamT[bytes]) -> None:
        async for batch in batches(stream):
            await detection.events_batch(batch)


class Correlation:
    """The correlate agent's work on one batch of findings, apart from Faust (unit-testable)."""

    def __init__(self, settings: Settings, *, alerts: Any, dlq: Any, states: Any) -> None:
        self.correlator = Correlator(settings.detection)
        self.alerts, self.dlq, self.states = alerts, dlq, states

    async def findings_batch(self, batch: Sequence[Any]) -> None:
        states, leading = TableBatch(self.states), Counter[str]()
        for record in batch:
            try:
                finding = Finding.from_dict(orjson.loads(record.value))
                with states.guarded(anchor(finding), record.message.partition) as state:
                    alert = self.correlator.add(finding, state)
            except Exception as exc:  # noqa: BLE001 - one bad finding must not stop correlation
                log.exception("correlation failed")
                await dead_letter(self.dlq, record.message, f"correlation failed: {exc!r}", "findings", "correlate")
                continue
            if alert is not None:
                leading[alert.detectors[0] if alert.detectors else "unknown"] += 1
                await self.alerts.send(key=alert.alert_id.encode(), value=encode(alert))
        await states.flush()
        count_into(ALERTS, leading)
        observe_latency("correlate", [record.message for record in batch])


def register_correlation(app: faust.App, settings: Settings) -> None:
    """``aiwarden.findings`` (keyed by anchor) → one open alert per anchor → ``aiwarden.alerts``."""

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw")

    correlation = Correlation(
        settings, alerts=topic(topics.ALERTS), dlq=topic(topics.DLQ),
        states=app.Table("correlation-state", default=None, key_type=str, partitions=settings.kafka.partitions),
    )

    @app.agent(topic(topics.FINDINGS), name="correlate")
    async def correlate(stream: faust.StreamT[bytes]) -> None:
        async for batch in batches(stream):
            await correlation.findings_batch(batch)
