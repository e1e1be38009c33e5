"""OCSF Detection Findings from ``aiwarden.ocsf`` to Amazon Security Lake, as a custom source.

Security Lake wants, for a custom source: Parquet objects holding one OCSF class each, under
``<prefix>/region=<region>/accountId=<account id>/eventDay=<YYYYMMDD>/`` of the lake's bucket (``prefix`` is
``ext/<source name>``, as Security Lake creates it), written every 5 minutes to a day. ``aiwarden
security-lake`` runs ``LakeWriter`` in a consumer group of its own (``<app id>-security-lake``, read_committed):
it buffers records, writes one object per event day and Kafka partition when ``flush_records`` records are
buffered or ``flush_interval_s`` has passed, and commits its offsets only after every object is written.

An object's name is its Kafka position (``<topic>-<partition>-<first offset>-<last offset>.parquet``): a writer
that died between upload and commit writes its batch again, starting at the same first offset. Records are
at least once in the lake; ``metadata.uid`` (``<alert id>:<version>``) tells a re-sent record apart. A record
that is not a Detection Finding goes to ``aiwarden.dlq`` with its reason. While S3 refuses writes the writer
pauses its partitions and retries with backoff, so nothing is committed that is not in the lake.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from infra.settings import SecurityLakeSettings, Settings
from streams import topics
from streams.integrations.ocsf import CLASS_UID

log = logging.getLogger(__name__)

_ref = pa.struct([("uid", pa.string()), ("name", pa.string()), ("src_url", pa.string())])
_product = pa.struct([("name", pa.string()), ("vendor_name", pa.string()), ("version", pa.string())])
_analytic = pa.struct([("uid", pa.string()), ("name", pa.string()), ("type_id", pa.int32()), ("type", pa.string())])

# The Arrow schema of the records ``streams.integrations.ocsf.detection_finding`` and ``triage_finding`` write
# (every attribute they set; a test round-trips records through it). Times are OCSF timestamp_t: epoch ms.
SCHEMA = pa.schema([
    ("class_uid", pa.int32()), ("class_name", pa.string()), ("category_uid", pa.int32()),
    ("category_name", pa.string()), ("activity_id", pa.int32()), ("activity_name", pa.string()),
    ("type_uid", pa.int64()), ("type_name", pa.string()), ("time", pa.int64()), ("start_time", pa.int64()),
    ("end_time", pa.int64()), ("severity_id", pa.int32()), ("severity", pa.string()), ("status_id", pa.int32()),
    ("status", pa.string()), ("status_detail", pa.string()), ("message", pa.string()), ("is_alert", pa.bool_()),
    ("confidence_id", pa.int32()),
    ("confidence", pa.string()), ("risk_score", pa.int32()), ("risk_level_id", pa.int32()),
    ("risk_level", pa.string()),
    ("metadata", pa.struct([
        ("version", pa.string()), ("product", _product), ("uid", pa.string()), ("correlation_uid", pa.string()),
        ("logged_time", pa.int64()), ("profiles", pa.list_(pa.string())),
    ])),
    ("finding_info", pa.struct([
        ("uid", pa.string()), ("title", pa.string()), ("desc", pa.string()), ("created_time", pa.int64()),
        ("modified_time", pa.int64()), ("first_seen_time", pa.int64()), ("last_seen_time", pa.int64()),
        ("types", pa.list_(pa.string())), ("product", _product),
        ("attacks", pa.list_(pa.struct([
            ("version", pa.string()), ("technique", _ref), ("sub_technique", _ref), ("tactic", _ref),
            ("tactics", pa.list_(_ref)),
        ]))),
        ("related_events", pa.list_(pa.struct([("uid", pa.string())]))), ("related_events_count", pa.int32()),
        ("analytic", _analytic), ("related_analytics", pa.list_(_analytic)),
        ("tags", pa.list_(pa.struct([("name", pa.string()), ("value", pa.string())]))),
    ])),
    ("resources", pa.list_(pa.struct([
        ("uid", pa.string()), ("name", pa.string()), ("type", pa.string()), ("namespace", pa.string()),
        ("hostname", pa.string()), ("ip", pa.string()),
    ]))),
    ("actor", pa.struct([("user", pa.struct([
        ("uid", pa.string()), ("name", pa.string()), ("credential_uid", pa.string()),
        ("account", pa.struct([("uid", pa.string()), ("type_id", pa.int32()), ("type", pa.string())])),
    ]))])),
    ("unmapped", pa.struct([
        ("alert_version", pa.string()), ("maturity", pa.string()), ("primary_entity", pa.string()),
        ("finding_ids", pa.string()), ("triage_status", pa.string()), ("triage_resolution", pa.string()),
        ("triage_actor", pa.string()),
    ])),
])


ONCE_ATTEMPTS = 5  # with --once, write attempts before giving up (a service keeps retrying)


class LakeError(RuntimeError):
    """The writer cannot run as configured (names the setting)."""


def event_day(time_ms: int) -> str:
    """``YYYYMMDD`` (UTC) of an OCSF ``time``."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y%m%d")


def partition_prefix(lake: SecurityLakeSettings, day: str) -> str:
    """``<prefix>/region=…/accountId=…/eventDay=…/``: where Security Lake reads a custom source's objects."""
    return f"{lake.prefix.strip('/')}/region={lake.region}/accountId={lake.account_id}/eventDay={day}/"


def to_parquet(records: list[dict[str, Any]]) -> bytes:
    """Records (one OCSF class) as a Parquet file, sorted by ``time``."""
    table = pa.Table.from_pylist(sorted(records, key=lambda r: int(r["time"])), schema=SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def s3_client(lake: SecurityLakeSettings) -> Any:
    """A boto3 S3 client for the lake (explicit credentials if set, else boto3's default chain)."""
    import boto3

    for name in ("bucket", "region", "account_id"):
        if not getattr(lake, name):
            msg = f"AIWARDEN_SECURITY_LAKE__{name.upper()} is not set"
            raise LakeError(msg)
    return boto3.client(
        "s3", region_name=lake.region, endpoint_url=lake.endpoint_url,
        aws_access_key_id=lake.access_key_id,
        aws_secret_access_key=lake.secret_access_key.get_secret_value() if lake.secret_access_key else None,
        aws_session_token=lake.session_token.get_secret_value() if lake.session_token else None,
    )


@dataclass
class Batch:
    """Records of one Kafka partition and event day, with the offsets they came from."""

    records: list[dict[str, Any]] = field(default_factory=list)
    first: int = -1
    last: int = -1


class LakeWriter:
    """Buffers OCSF records by (partition, event day) and writes them as Parquet objects to the lake."""

    def __init__(self, lake: SecurityLakeSettings, client: Any, topic: str = topics.OCSF,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lake, self.client, self.topic, self.clock = lake, client, topic, clock
        self.batches: dict[tuple[int, str], Batch] = {}
        self.buffered = 0
        self.oldest: float | None = None
        self.written: list[str] = []

    def add(self, record: dict[str, Any], partition: int, offset: int) -> None:
        """Buffer one record; ``ValueError`` (with the reason) when it is not an OCSF Detection Finding."""
        if record.get("class_uid") != CLASS_UID or not isinstance(record.get("time"), int):
            msg = f"not an OCSF Detection Finding (class_uid {record.get('class_uid')!r}, time {record.get('time')!r})"
            raise ValueError(msg)
        batch = self.batches.setdefault((partition, event_day(record["time"])), Batch())
        batch.records.append(record)
        batch.first = offset if batch.first < 0 else batch.first
        batch.last = offset
        self.buffered += 1
        if self.oldest is None:
            self.oldest = self.clock()

    def due(self) -> bool:
        """Whether a flush is due (enough records, or the oldest buffered record waited long enough)."""
        if not self.buffered or self.oldest is None:
            return False
        return self.buffered >= self.lake.flush_records or self.clock() - self.oldest >= self.lake.flush_interval_s

    def flush(self) -> list[str]:
        """Write every buffered batch (one object each); the keys written. Raises on an S3 error, keeping
        the batches not yet written."""
        written = []
        for (partition, day), batch in sorted(self.batches.items()):
            key = f"{partition_prefix(self.lake, day)}{self.topic}-{partition}-{batch.first}-{batch.last}.parquet"
            self.client.put_object(Bucket=self.lake.bucket, Key=key, Body=to_parquet(batch.records),
                                   ContentType="application/vnd.apache.parquet")
            del self.batches[(partition, day)]
            self.buffered -= len(batch.records)
            written.append(key)
        self.oldest = None
        self.written.extend(written)
        return written

    def drop(self, partitions: set[int]) -> None:
        """Forget what is buffered for ``partitions`` (revoked: their new owner reads it again)."""
        for key in [k for k in self.batches if k[0] in partitions]:
            self.buffered -= len(self.batches.pop(key).records)
        if not self.buffered:
            self.oldest = None


def run(settings: Settings, *, stop: Callable[[], bool] = lambda: False, until_idle: bool = False,
        client: Any = None) -> list[str]:
    """Consume ``aiwarden.ocsf`` into the lake until ``stop()`` (or, with ``until_idle``, until a poll finds
    nothing new and everything read is written and committed); the keys written."""
    from confluent_kafka import Consumer, Producer

    from infra.kafka.clients import confluent_config
    from infra.kafka.limits import TopicLimits
    from streams.pipeline.records import dead_letter

    lake = settings.security_lake
    writer = LakeWriter(lake, client if client is not None else s3_client(lake))
    consumer = Consumer(confluent_config(settings, **{
        "group.id": f"{settings.worker.app_id}-security-lake", "enable.auto.commit": False,
        "isolation.level": "read_committed", "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
    }))
    dlq = Producer(confluent_config(settings, **{"enable.idempotence": True}))

    limits = TopicLimits(settings, (topics.DLQ,))

    class DeadLetters:
        def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
            dlq.produce(topic, key=key, value=value, headers=headers)

        def max_bytes(self, topic: str) -> int:
            return limits.max_bytes(topic)

    def commit() -> None:
        assigned = consumer.assignment()
        # everything consumed is written (a flush writes all that is buffered) or dead-lettered
        offsets = [tp for tp in consumer.position(assigned) if tp.offset >= 0] if assigned else []
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)

    def flush_and_commit() -> bool:
        backoff, attempts = 1.0, 0
        while True:
            attempts += 1
            try:
                written = writer.flush()
                if dlq.flush(30):
                    msg = "dead letters not acknowledged by Kafka"
                    raise RuntimeError(msg)
                commit()
                log.info("security lake: %d objects written", len(written))
                if consumer.assignment():
                    consumer.resume(consumer.assignment())
                return True
            except Exception as exc:  # noqa: BLE001 - S3 or Kafka refused: hold the partitions, retry
                log.warning("security lake: write failed, retrying in %.0f s: %s", backoff, exc)
                if consumer.assignment():
                    consumer.pause(consumer.assignment())
                if stop():
                    return False
                if until_idle and attempts >= ONCE_ATTEMPTS:
                    msg = f"security lake: giving up after {attempts} attempts: {exc}"
                    raise LakeError(msg) from exc
                time.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    def caught_up() -> bool:
        assigned = consumer.assignment()
        if not assigned:
            return False
        committed = {tp.partition: tp.offset for tp in consumer.committed(assigned, timeout=10)}
        for tp in consumer.position(assigned):  # no position yet on a partition nothing was fetched from
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            at = tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
            if max(at, low) < high:
                return False
        return True

    def on_revoke(_consumer: Any, partitions: list[Any]) -> None:
        writer.drop({tp.partition for tp in partitions})  # uncommitted: their new owner reads them again

    consumer.subscribe([topics.OCSF], on_revoke=on_revoke, on_lost=on_revoke)
    try:
        while not stop():
            messages = consumer.consume(1000, timeout=1.0)
            for message in messages:
                if message.error() is not None:
                    continue
                try:
                    writer.add(orjson.loads(message.value() or b""), message.partition() or 0, message.offset() or 0)
                except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
                    reason = f"security lake: {exc}"
                    dead_letter(DeadLetters(), topics.DLQ, message, reason, "ocsf", "security-lake")
            if writer.due() and not flush_and_commit():
                break
            if until_idle and not messages and caught_up():
                flush_and_commit()
                break
    finally:
        consumer.close()
        dlq.flush(30)
    return writer.written

