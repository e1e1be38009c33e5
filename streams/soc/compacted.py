"""A whole compacted topic held in memory and kept current: every worker reads the same records.

A daemon thread reads every partition from the beginning (no consumer group: it only watches,
``read_committed``) and hands each record to ``apply(key, value)``; ``caught_up`` is set once
it reached the end offsets it saw at start. Used for accounts, exceptions and pending approvals,
which are small (thousands of keys) and change rarely, so each worker keeps all of them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, TopicPartition

from infra.kafka.clients import confluent_config, partition_ids
from infra.settings import Settings

log = logging.getLogger(__name__)


class TopicView:
    """Reads ``topic`` whole, then follows it, calling ``apply`` for each record (in its thread)."""

    def __init__(self, settings: Settings, topic: str, apply: Callable[[bytes, bytes | None], None]) -> None:
        self.settings, self.topic, self.apply = settings, topic, apply
        self.caught_up = threading.Event()
        self.skipped = 0  # records apply refused (logged with their position)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TopicView:
        self._thread = threading.Thread(target=self._run, name=f"view-{self.topic}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    async def run_until_cancelled(self) -> None:
        """Start, then stop when the awaiting task is cancelled (as a Faust app task)."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._read()
            except Exception:  # noqa: BLE001 - the broker may be restarting: read again
                log.exception("reading %s failed; retrying in 5 s", self.topic)
                self._stop.wait(5)

    def _read(self) -> None:
        consumer = Consumer(confluent_config(
            self.settings, **{"group.id": f"view-{uuid.uuid4().hex}", "enable.auto.commit": False,
                              "isolation.level": "read_committed", "auto.offset.reset": "earliest"}))
        try:
            ids = partition_ids(consumer, self.topic)
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=15)[1] for p in ids}
            consumer.assign([TopicPartition(self.topic, p, -2) for p in ids])  # -2: the beginning
            position = dict.fromkeys(ids, 0)
            if all(end == 0 for end in ends.values()):
                self.caught_up.set()
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=0.5):
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("%s: %s", self.topic, error)
                        continue
                    position[message.partition() or 0] = (message.offset() or 0) + 1
                    try:
                        self.apply(message.key() or b"", message.value())
                    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the view
                        self.skipped += 1
                        log.warning("skipping record on %s partition %d offset %d: %s", self.topic,
                                    message.partition(), message.offset(), exc)
                if not self.caught_up.is_set():
                    # transaction markers are never delivered: the consumer's position tells the true end
                    for tp in consumer.position([TopicPartition(self.topic, p) for p in ids]):
                        if tp.offset >= 0:
                            position[tp.partition] = max(position[tp.partition], tp.offset)
                    if all(position[p] >= ends[p] for p in ids):
                        self.caught_up.set()
        finally:
            consumer.close()


def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes | None]], timeout_s: float = 30) -> None:
    """Write ``(key, value)`` records and wait until the broker has them (for the CLI and tests)."""
    from confluent_kafka import Producer

    producer = Producer(confluent_config(settings, **{"acks": "all", "enable.idempotence": True}))
    failures: list[str] = []

    def report(err: KafkaError | None, _message: object) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=report)
    left = producer.flush(timeout_s)
    if left or failures:
        msg = f"writing to {topic} failed: {failures[:3] or f'{left} records not acknowledged'}"
        raise RuntimeError(msg)
