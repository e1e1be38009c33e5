"""``aiwarden.events`` → inventory and detectors → ``aiwarden.findings``, with per-entity state.

Events arrive keyed by their primary entity, so one worker owns an entity's state. Each
detector's state for a key lives in the ``detector-state`` store (partitioned like
``aiwarden.events``, changelog-backed: a restarted worker recovers it). A detector whose state is
keyed on another entity (a bucket, an access key) gets its events through the re-key topic,
keyed by that entity, and keeps its state in ``rekeyed-state``. Class-level anomaly models are
checkpointed per partition into ``model-checkpoints`` every ``checkpoint_interval_s`` and
restored on assignment, so a restart never means a cold model. Findings go out keyed by their
correlation anchor, so correlation state is per anchor too.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from detectors.base import Detector
from detectors.config import DetectionConfig
from detectors.correlation import anchor
from detectors.inventory import Inventory, InventoryChange
from detectors.registry import build_all, by_class
from detectors.sigma.detector import SigmaDetections
from infra.estate import EstateWatcher
from infra.settings import Settings, estate_settings
from schemas.codec import encode
from schemas.envelope import Event
from schemas.findings import Finding
from streams import topics
from streams.metrics import ESTATE_RELOADS, FINDINGS
from streams.pipeline.records import Out, OversizedOutput, count_into, dead_letter, observe_latency
from streams.pipeline.state import StateSpoiled

log = logging.getLogger(__name__)

DETECTOR_HEADER = "aiwarden-detector"
SIGMA_RULE_HEADER = "aiwarden-sigma-rule"  # the rule a re-keyed event matched, for Sigma correlations
LEARNING = "learning"  # the exception id of findings held back by learning mode


def rekey_topic(settings: Settings) -> str:
    """The internal topic events go through when a detector keeps state on another entity."""
    return rekey_topic_of(settings.worker.app_id)


def rekey_topic_of(app_id: str) -> str:
    return f"{app_id}-detect-rekey"


def _detection_of(path: Path) -> DetectionConfig:
    """An estate file's detection settings, refused (``ConfigurationError``) if a detector cannot be built."""
    config = estate_settings(path).detection
    build_all(config)
    return config


def estate_watcher(settings: Settings) -> EstateWatcher[DetectionConfig] | None:
    """Watches the estate file (``AIWARDEN_CONFIG``) for the detect stage; ``None`` without one."""
    if settings.config is None:
        return None
    return EstateWatcher(
        settings.config, _detection_of, settings.detection,
        settings.worker.estate_reload_interval_s, name="detect", prefix="AIWARDEN_DETECTION__",
        on_result=lambda outcome: ESTATE_RELOADS.labels("detect", outcome).inc(),
    )


class ModelCheckpoints:
    """Checkpoints of the detectors' class-level models, one store entry per detector and partition."""

    def __init__(self, store: Any, detectors: list[Detector], interval_s: float) -> None:
        self.store = store
        self.models: dict[str, Any] = {
            d.id: getattr(d, "model") for d in detectors if getattr(d, "model", None) is not None  # noqa: B009
        }
        self.interval_s = interval_s
        self.last = time.monotonic()
        self.saved: dict[str, int] = {}  # observations per model at its last checkpoint

    def restore(self) -> None:
        """Load the most-trained checkpoint of each model among the partitions this worker holds."""
        best: dict[str, tuple[int, str]] = {}
        for key, value in self.store.items():
            detector_id, _, _ = key.partition("|")
            n, blob = int(value["n"]), value["blob"]
            # Runs after every assignment: never replace a model that has learned more since.
            if detector_id in self.models and n > max(self.models[detector_id].n, best.get(detector_id, (-1, ""))[0]):
                best[detector_id] = (n, blob)
        for detector_id, (n, blob) in best.items():
            try:
                self.models[detector_id].loads(bytes.fromhex(blob))
                log.info("restored %s model checkpoint (%d observations)", detector_id, n)
            except Exception as exc:  # noqa: BLE001 - a bad checkpoint must not stop detection
                log.warning("ignoring %s model checkpoint: %s", detector_id, exc)

    def maybe_save(self, partitions: Iterable[int]) -> bool:
        """Every ``interval_s``: checkpoint each model that learned since its last checkpoint under each
        of ``partitions``; whether anything was written."""
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return False
        self.last = now
        partitions = list(partitions)
        written = False
        for detector_id, model in self.models.items():
            if not partitions or self.saved.get(detector_id) == model.n:
                continue
            value = {"n": model.n, "blob": model.dumps().hex()}
            for partition in partitions:
                self.store.set(f"{detector_id}|{partition}", partition, value)
            self.saved[detector_id] = model.n
            written = True
        return written


def _detect_all(state: dict[str, Any], detector: Detector, event: Event) -> list[Any]:
    return list(detector.detect(event, state))


def _observe(state: dict[str, Any], detector: Detector, event: Event) -> Any:  # base.Observed
    return detector.observe(event, state)


def _observe_all(state: dict[str, Any], inventory: Inventory, event: Event, asset_id: str) -> list[InventoryChange]:
    return list(inventory.observe(event, state, asset_id))


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
    """The detect stage: inventory and detectors over per-partition state stores.
    ``states``, ``rekeyed``, ``assets`` and ``models`` are stores (``apply``/``set``/``items``)."""

    def __init__(self, settings: Settings, out: Out, *, states: Any, rekeyed: Any, assets: Any,
                 models: Any) -> None:
        self.configure(settings.detection)
        self.estate = estate_watcher(settings)
        self.out = out
        self.rekey = rekey_topic(settings)
        self.states, self.rekeyed, self.assets = states, rekeyed, assets
        self.checkpoints = ModelCheckpoints(models, self.detectors, settings.worker.checkpoint_interval_s)
        self.sigma = SigmaDetections.from_settings(settings)

    def configure(self, config: DetectionConfig) -> None:
        """Detectors and inventory built from ``config``. On a reload the anomaly models carry over (their
        shape settings apply at the next start) and per-entity state stays in the stores."""
        detectors = build_all(config)
        for detector in detectors:
            model = getattr(getattr(self, "by_id", {}).get(detector.id), "model", None)
            if model is not None and getattr(detector, "model", None) is not None:
                detector.model = model  # type: ignore[attr-defined]
        self.detectors, self.dispatch = detectors, by_class(detectors)
        self.by_id = {d.id: d for d in detectors}
        self.inventory = Inventory(config)
        self.learning_until_ms, self.learning = config.learning_until_ms, frozenset(config.learning_detectors)
        unknown = sorted(self.learning - set(self.by_id))
        if unknown:
            log.warning("learning_detectors names no such detector: %s (known: %s)", ", ".join(unknown),
                        ", ".join(self.by_id))

    def emit(self, finding: Finding) -> None:
        """A finding to correlation; in learning mode an allowlist rule's is only recorded (no alert)."""
        if finding.time_ms < self.learning_until_ms and finding.detector in self.learning:
            row = {"finding_id": finding.finding_id, "exception_id": LEARNING, "detector": finding.detector,
                   "entity_id": finding.entity_id, "time_ms": finding.time_ms}
            self.out.send(topics.SUPPRESSED, finding.finding_id.encode(), orjson.dumps(row))
            return
        self.out.send(topics.FINDINGS, anchor(finding).encode(), encode(finding))

    def maybe_reload_estate(self) -> None:
        """Between batches, on the engine thread: a changed, valid estate file rebuilds the detectors."""
        if self.estate is not None and (config := self.estate.poll()) is not None:
            self.configure(config)

    def run_detector(self, detector: Detector, event: Event, key: str, partition: int, states: Any,
                     found: Counter[str]) -> None:
        results = states.apply(f"{detector.id}|{key}", partition, _detect_all, detector, event)
        for finding in results:
            self.emit(finding)
        found[detector.id] += len(results)

    def process(self, event: Event, raw: bytes, partition: int, found: Counter[str]) -> None:
        for asset_id in self.inventory.assets(event):
            changes = self.assets.apply(asset_id, partition, _observe_all, self.inventory, event, asset_id)
            for change in changes:
                self.out.send(topics.INVENTORY, asset_id.encode(), encode(inventory_row(change)))
        workload = self.inventory.workload_of(event)
        context: dict[str, str] = {}
        if workload:  # what the inventory knows of the workload travels with the event to the detectors
            known = self.assets.get(workload, partition)
            if known:
                context = self.inventory.context(workload, known)
                event.extra.update(context)
        for detector in self.dispatch.get(event.class_uid, ()):
            if detector.sources is not None and event.source not in detector.sources:
                continue
            key = detector.state_key(event)
            if key is None:
                continue
            if key == event.entity_id and not detector.joins:
                self.run_detector(detector, event, key, partition, self.states, found)
            else:
                # State keyed on another entity (a bucket, an access key): repartition the event by
                # that key so the one worker owning the key sees every event about it, with its context.
                payload = encode(event) if context else raw
                self.out.send(self.rekey, key.encode(), payload, [(DETECTOR_HEADER, detector.id.encode())])
        for rule in self.sigma.match(event):  # one dispatch per event; state only on a match
            if rule.standalone:
                findings = self.states.apply(f"{rule.detector_id}|{event.entity_id}", partition, self.sigma.detect,
                                             rule, event)
                for finding in findings:
                    self.out.send(topics.FINDINGS, anchor(finding).encode(), encode(finding))
                found[rule.detector_id] += len(findings)
            for correlation in self.sigma.feeds.get(rule.id, ()):
                # one worker owns each correlation group: re-key by it
                key = f"{correlation.id}|{correlation.group_key(rule, event)}"
                self.out.send(self.rekey, key.encode(), raw, [(DETECTOR_HEADER, correlation.detector_id.encode()),
                                                              (SIGMA_RULE_HEADER, rule.id.encode())])

    def events_batch(self, batch: Sequence[Any]) -> None:
        """One batch from ``aiwarden.events``."""
        self.sigma.maybe_reload()
        self.maybe_reload_estate()
        found: Counter[str] = Counter()
        for message in batch:
            raw = message.value()
            partition = message.partition()
            try:
                event = Event.from_dict(orjson.loads(raw))
            except (TypeError, ValueError) as exc:  # written by something other than normalize
                dead_letter(self.out, topics.DLQ, message, f"not an aiwarden event: {exc}", "events", "detect")
                continue
            try:
                self.process(event, raw, partition, found)
            except StateSpoiled:  # the engine aborts and processes the records again
                raise
            except OversizedOutput as exc:
                dead_letter(self.out, topics.DLQ, message, str(exc), event.source, "detect")
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the worker
                log.exception("detection failed on event %s", event.event_id)
                dead_letter(self.out, topics.DLQ, message, f"detection failed: {exc!r}", event.source, "detect")
        count_into(FINDINGS, found)
        observe_latency("detect", batch)

    def sigma_correlation(self, message: Any, name: str, rule_id: str, found: Counter[str]) -> None:
        """A re-keyed event for a Sigma correlation: its group's state, in the re-keyed store."""
        correlation, rule = self.sigma.correlations.get(name), self.sigma.rules.get(rule_id)
        if correlation is None or rule is None:
            msg = f"Sigma correlation {name} or rule {rule_id} is no longer loaded"
            raise ValueError(msg)
        event = Event.from_dict(orjson.loads(message.value()))
        key = (message.key() or b"").decode()
        group = key.partition("|")[2]
        findings = self.rekeyed.apply(f"{name}|{group}", message.partition(), self.sigma.correlate, correlation, rule,
                                      event, group)
        for finding in findings:
            self.out.send(topics.FINDINGS, anchor(finding).encode(), encode(finding))
        found[name] += len(findings)

    def rekeyed_batch(self, batch: Sequence[Any]) -> None:
        """One batch from the re-key topic: events keyed by one detector's state key."""
        self.maybe_reload_estate()
        found: Counter[str] = Counter()
        for message in batch:
            headers = dict(message.headers() or [])
            name = headers.get(DETECTOR_HEADER, b"").decode()
            detector = self.by_id.get(name)
            try:
                if detector is None and name.startswith("sigma:"):
                    self.sigma_correlation(message, name, headers.get(SIGMA_RULE_HEADER, b"").decode(), found)
                    continue
                if detector is None:
                    msg = f"unknown detector in header {headers.get(DETECTOR_HEADER)!r}"
                    raise ValueError(msg)
                event = Event.from_dict(orjson.loads(message.value()))
                key = (message.key() or b"").decode()
                run = self.run_join if detector.joins else self.run_detector
                run(detector, event, key, message.partition(), self.rekeyed, found)
            except StateSpoiled:  # the engine aborts and processes the records again
                raise
            except OversizedOutput as exc:
                dead_letter(self.out, topics.DLQ, message, str(exc), "events", "detect")
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the worker
                log.exception("rekeyed detection failed")
                dead_letter(self.out, topics.DLQ, message, f"detection failed: {exc!r}", "events", "detect")
        count_into(FINDINGS, found)
        observe_latency("detect", batch)

    def run_join(self, detector: Detector, event: Event, key: str, partition: int, states: Any,
                 found: Counter[str]) -> None:
        """A join detector: its findings, its events forwarded to its other keys, its table rows."""
        observed = states.apply(f"{detector.id}|{key}", partition, _observe, detector, event)
        for finding in observed.findings:
            self.emit(finding)
        for other_key, forwarded in observed.forwards:
            self.out.send(self.rekey, other_key.encode(), encode(forwarded), [(DETECTOR_HEADER, detector.id.encode())])
        for row in observed.rows:
            self.out.send(topics.VULNERABILITIES, row.workload.encode(), encode(row.to_dict()))
        found[detector.id] += len(observed.findings)
