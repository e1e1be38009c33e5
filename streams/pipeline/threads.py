"""What the pipeline engine and the ClickHouse sink share: a consumer loop in a thread of its own,
started and stopped by the Faust worker, whose librdkafka rebalance callbacks keep their exceptions
for the loop to raise."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)


def skip_error(message: Any, who: str) -> bool:
    """True for a consumed message that is an event, not a record (logged unless a partition's end);
    raises the fatal ones."""
    error = message.error()
    if error is None:
        return False
    if error.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's own code name
        log.warning("%s consume: %s", who, error)
        if error.fatal():
            raise KafkaException(error)
    return True


class ConsumerThread:
    """``run()`` in a daemon thread until ``stop``; ``_guard`` wraps rebalance callbacks."""

    thread_name = "aiwarden"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._callback_error: Exception | None = None

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # Rebalance callbacks run inside consume, on the loop's thread. An exception escaping a callback
    # comes out of librdkafka mangled (not an Exception): each keeps its own and the loop raises it
    # once consume returns.
    def _raise_callback_error(self) -> None:
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error

    def _guard(self, callback: Callable[[Any, list[TopicPartition]], None]) -> Callable[..., None]:
        def guarded(consumer: Any, partitions: list[TopicPartition]) -> None:
            if self._callback_error is not None:
                return
            try:
                callback(consumer, partitions)
            except Exception as exc:  # noqa: BLE001 - re-raised by the loop
                self._callback_error = exc

        return guarded
