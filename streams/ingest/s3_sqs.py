"""``aiwarden collect s3-sqs``: log files delivered to S3, announced through SQS, published to the raw topics.

Reads S3 object-created notifications from an SQS queue: S3 event notifications (straight to SQS, or
through SNS), CloudTrail's own SNS notifications (``s3Bucket`` / ``s3ObjectKey``) and EventBridge
"Object Created" events. Streams each object (gunzipped when it is gzip), splits it into records
(CloudTrail's ``{"Records": […]}``, JSON lines for Bedrock invocation logs) and publishes them; bad
records are dead-lettered. The SQS message is deleted only after Kafka confirmed every record of every
object it names. A message that fails (S3 unreadable, Kafka unavailable) is left alone: SQS makes it
visible again after the queue's visibility timeout, and moves it to the queue's dead-letter queue after
its ``maxReceiveCount``. Re-published records are not counted twice: event ids are deterministic.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast
from urllib.parse import unquote_plus

import orjson

from infra.settings import Settings
from streams.publish import Publisher, read_records

log = logging.getLogger("aiwarden.collect")

_REGION = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


class MessageError(ValueError):
    """An SQS message that names no S3 object this collector can read."""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class Progress:
    messages: int = 0  # deleted after their records were confirmed
    files: int = 0
    records: int = 0
    dead_lettered: int = 0
    failed_messages: int = 0  # left to the visibility timeout
    skipped: int = 0  # test events and other notifications naming no object
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        log.error("%s", message)
        self.errors = [*self.errors[-9:], message]


def region_of(queue_url: str) -> str | None:
    """The AWS region in an SQS queue URL (``https://sqs.eu-west-1.amazonaws.com/…``), if there is one."""
    found = _REGION.search(queue_url)
    return found.group(1) if found else None


def objects_of(body: str) -> list[S3Object]:
    """The S3 objects an SQS message body announces ([] for S3's test event); ``MessageError`` otherwise."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"message body is not JSON: {exc}"
        raise MessageError(msg) from None
    if type(document) is dict and document.get("Type") == "Notification" and "Message" in document:
        message = document["Message"]  # SNS envelope: the notification is JSON text inside
        try:
            document = orjson.loads(message) if type(message) is str else message
        except orjson.JSONDecodeError as exc:
            msg = f"SNS Message is not JSON: {exc}"
            raise MessageError(msg) from None
    if type(document) is not dict:
        msg = f"expected a JSON object, got a JSON {type(document).__name__}"
        raise MessageError(msg)
    if document.get("Event") == "s3:TestEvent":
        return []
    records = document.get("Records")
    if type(records) is list:  # S3 event notification
        found = []
        for record in records:
            if type(record) is not dict or not str(record.get("eventName", "")).startswith("ObjectCreated"):
                continue
            s3 = record.get("s3")
            bucket, key = _dig(s3, "bucket", "name"), _dig(s3, "object", "key")
            if type(bucket) is str and type(key) is str:
                found.append(S3Object(bucket, unquote_plus(key)))  # S3 notifications URL-encode keys
        return found
    if "s3Bucket" in document and type(document.get("s3ObjectKey")) is list:  # CloudTrail's SNS notification
        return [S3Object(str(document["s3Bucket"]), str(key)) for key in document["s3ObjectKey"]]
    detail = document.get("detail")
    if document.get("detail-type") == "Object Created" and type(detail) is dict:  # EventBridge
        bucket, key = _dig(detail, "bucket", "name"), _dig(detail, "object", "key")
        if type(bucket) is str and type(key) is str:
            return [S3Object(bucket, key)]
    msg = "not an S3 object-created notification (S3 event, CloudTrail SNS or EventBridge)"
    raise MessageError(msg)


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        value = value.get(key) if type(value) is dict else None
    return value


def _stream(body: Any) -> IO[bytes]:
    """The object's bytes, gunzipped while read when they start with gzip's magic bytes."""
    head = body.read(2)
    raw = _Prefixed(head, body)
    return cast(IO[bytes], gzip.GzipFile(fileobj=cast(IO[bytes], raw))) if head == b"\x1f\x8b" else cast(IO[bytes], raw)


class _Prefixed:
    """A read-only stream: ``head`` then the rest of ``body`` (the probe bytes are given back)."""

    def __init__(self, head: bytes, body: Any) -> None:
        self.head, self.body = head, body

    def read(self, size: int = -1) -> bytes:
        head = self.head
        if head and 0 <= size <= len(head):
            self.head = head[size:]
            return head[:size]
        self.head = b""
        rest: bytes = self.body.read() if size < 0 else self.body.read(size - len(head))
        return head + rest

    def readable(self) -> bool:
        return True

    def __enter__(self) -> _Prefixed:
        return self

    def __exit__(self, *_: object) -> None:
        self.body.close()

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        while True:
            chunk = self.read(1 << 16)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending


class Collector:
    """One SQS queue → the raw topics, message by message."""

    def __init__(self, settings: Settings, queue_url: str, source: str, *, sqs: Any, s3: Any,
                 publisher: Publisher | None = None, wait_s: int = 20) -> None:
        self.settings = settings
        self.queue_url = queue_url
        self.source = source
        self.sqs, self.s3 = sqs, s3
        self.publisher = publisher or Publisher(settings)
        self.publisher.dead_letter_undelivered = False  # SQS redelivers what Kafka did not confirm
        self.wait_s = wait_s
        self.progress = Progress()

    def poll_once(self, on_progress: Callable[[Progress], None] | None = None) -> int:
        """Receive up to 10 messages and handle each; returns how many were received."""
        reply = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_s,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages = reply.get("Messages", [])
        for message in messages:
            if self.handle(message):
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                self.progress.messages += 1
            else:
                self.progress.failed_messages += 1
            if on_progress is not None:
                on_progress(self.progress)
        return len(messages)

    def handle(self, message: dict[str, Any]) -> bool:
        """Publish the records of every object the message names; True once Kafka confirmed them all."""
        message_id = message.get("MessageId", "?")
        try:
            objects = objects_of(message.get("Body", ""))
        except MessageError as exc:
            self.progress.error(f"SQS message {message_id}: {exc}; left for the queue's dead-letter queue")
            return False
        if not objects:
            self.progress.skipped += 1
            return True
        summary = self.publisher.summary
        failed_before = summary.failed
        published = dead = 0
        for obj in objects:
            try:
                reply = self.s3.get_object(Bucket=obj.bucket, Key=obj.key)
                with _stream(reply["Body"]) as stream:
                    for data, position in read_records(stream, obj.url, self.source):
                        if self.publisher.publish(data, self.source, position):
                            published += 1
                        else:
                            dead += 1
            except Exception as exc:  # noqa: BLE001 - S3 and decompression errors: the message is retried
                self.progress.error(f"{obj.url}: cannot read: {type(exc).__name__}: {str(exc)[:300]}")
                self.publisher.flush(self.settings.ingest.delivery_timeout_s)
                return False
            self.progress.files += 1
        summary = self.publisher.flush(max(self.settings.ingest.delivery_timeout_s, 30.0))
        if summary.failed > failed_before:
            self.progress.error(
                f"SQS message {message_id}: Kafka did not confirm {summary.failed - failed_before} records "
                f"({'; '.join(summary.errors[-2:])}); the message is retried after its visibility timeout"
            )
            return False
        self.progress.records += published
        self.progress.dead_lettered += dead
        return True
