"""Security Lake writer on real Kafka and moto's S3 served over HTTP: OCSF records on aiwarden.ocsf land as
Parquet under the custom-source layout, readable with pyarrow; offsets are committed only after the upload;
a record that is not OCSF is dead-lettered."""

from __future__ import annotations

import io
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from infra.kafka.clients import confluent_config
from infra.settings import SecurityLakeSettings, Settings
from streams import topics
from streams.integrations.ocsf import detection_finding
from streams.integrations.security_lake import event_day, partition_prefix, run, s3_client
from tests.integration.test_sink import Kafka
from tests.unit.test_ocsf import alert

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


@pytest.fixture()
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_lake(base: Settings, endpoint: str) -> tuple[str, Settings, Any]:
    """A marker, settings with a lake of its own (bucket created, app id of its own) and its S3 client."""
    marker = uuid.uuid4().hex[:10]
    settings = lake_settings(base, endpoint, f"lake-{marker}")
    s3 = s3_client(settings.security_lake)
    s3.create_bucket(Bucket=settings.security_lake.bucket,
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return marker, settings, s3


def lake_settings(base: Settings, endpoint: str, app_id: str) -> Settings:
    lake = SecurityLakeSettings(
        bucket=f"aws-security-data-lake-eu-west-1-{app_id}", region="eu-west-1", account_id="123456789012",
        endpoint_url=endpoint, access_key_id="testing", secret_access_key=SecretStr("testing"),
        flush_records=50, flush_interval_s=30,
    )
    return base.model_copy(update={"security_lake": lake,
                                   "worker": base.worker.model_copy(update={"app_id": app_id})})


def dead_letters(settings: Settings, since: dict[int, int], marker: str) -> list[dict[str, Any]]:
    consumer = Consumer(confluent_config(settings, **{
        "group.id": f"lake-dlq-{marker}", "enable.auto.commit": False, "isolation.level": "read_committed",
    }))
    ends = Kafka(settings).ends(topics.DLQ)
    try:
        consumer.assign([TopicPartition(topics.DLQ, p, since.get(p, 0)) for p in ends])
        found: list[dict[str, Any]] = []
        for _ in range(30):
            found += [orjson.loads(m.value()) for m in consumer.consume(500, 1.0) if m.error() is None]
            if any(marker in letter.get("raw", "") for letter in found):
                break
        return [letter for letter in found if marker in letter.get("raw", "")]
    finally:
        consumer.close()


def test_ocsf_records_land_in_the_lake_layout(service_settings: Settings, s3_endpoint: str) -> None:
    marker, settings, s3 = new_lake(service_settings, s3_endpoint)
    kafka = Kafka(settings)
    dlq_from = kafka.ends(topics.DLQ)

    # 120 alert versions over three event days, published transactionally like the worker does
    base = alert(alert_id=f"{marker}-0")
    sent = {}
    for i in range(120):
        version = detection_finding(alert(alert_id=f"{marker}-{i % 40}", version=1 + i // 40,
                                          updated_ms=base.updated_ms + (i % 3) * DAY_MS + i))
        sent[version["metadata"]["uid"]] = version
    producer = Producer(confluent_config(settings, **{"transactional.id": f"lake-test-{marker}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for record in sent.values():
        producer.produce(topics.OCSF, key=record["finding_info"]["uid"].encode(), value=orjson.dumps(record))
    producer.produce(topics.OCSF, key=b"bad", value=f'{{"not": "ocsf", "marker": "{marker}"}}'.encode())
    producer.commit_transaction(30)
    del producer

    written = run(settings, until_idle=True)
    assert written, "nothing written"
    lake = settings.security_lake
    days = {event_day(r["time"]) for r in sent.values()}
    assert len(days) == 3
    listed = []
    for day in days:
        prefix = partition_prefix(lake, day)
        response = s3.list_objects_v2(Bucket=lake.bucket, Prefix=prefix)
        assert response.get("KeyCount", 0) > 0, f"no object under {prefix}"
        for item in response["Contents"]:
            assert item["Key"].startswith(prefix) and item["Key"].endswith(".parquet")
            body = s3.get_object(Bucket=lake.bucket, Key=item["Key"])["Body"].read()
            table = pq.read_table(io.BytesIO(body))
            rows = table.to_pylist()
            assert all(event_day(r["time"]) == day and r["class_uid"] == 2004 for r in rows)
            assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)  # sorted by time
            listed += rows
    ours = {r["metadata"]["uid"]: r for r in listed if r["metadata"]["uid"] in sent}
    assert set(ours) == set(sent)  # every record, each in the partition of its day
    some = next(iter(sent))
    assert ours[some]["finding_info"]["attacks"]
    assert ours[some]["finding_info"]["uid"] == sent[some]["finding_info"]["uid"]

    # offsets committed to the end after the upload; a second run writes nothing new
    group = f"{settings.worker.app_id}-security-lake"
    assert kafka.lag(group, topics.OCSF) == 0
    assert run(settings, until_idle=True) == []

    letters = dead_letters(settings, dlq_from, marker)
    assert len(letters) == 1 and "not an OCSF Detection Finding" in letters[0]["reason"]
    assert letters[0]["stage"] == "security-lake" and letters[0]["position"]["topic"] == topics.OCSF


class Flaky:
    """The real (moto) S3 client, refusing the first ``failures`` uploads like an S3 outage would."""

    def __init__(self, client: Any, failures: int) -> None:
        self.client, self.failures, self.refused = client, failures, 0

    def put_object(self, **kwargs: Any) -> Any:
        if self.refused < self.failures:
            self.refused += 1
            raise ConnectionError("S3 is down (test)")
        return self.client.put_object(**kwargs)


def test_an_s3_outage_holds_the_offsets_until_the_upload(service_settings: Settings, s3_endpoint: str) -> None:
    marker, settings, s3 = new_lake(service_settings, s3_endpoint)
    group = f"{settings.worker.app_id}-security-lake"
    kafka = Kafka(settings)
    # this group starts at the current end: only what this test publishes is its work
    consumer = Consumer(confluent_config(settings, **{"group.id": group, "enable.auto.commit": False}))
    consumer.commit(offsets=[TopicPartition(topics.OCSF, p, o) for p, o in kafka.ends(topics.OCSF).items()],
                    asynchronous=False)
    consumer.close()
    records = [detection_finding(alert(alert_id=f"{marker}-{i}")) for i in range(20)]
    producer = Producer(confluent_config(settings, **{"enable.idempotence": True}))
    for record in records:
        producer.produce(topics.OCSF, key=record["finding_info"]["uid"].encode(), value=orjson.dumps(record))
    assert producer.flush(30) == 0
    del producer

    flaky = Flaky(s3, failures=2)
    written = run(settings, until_idle=True, client=flaky)
    assert flaky.refused == 2 and written
    assert kafka.lag(group, topics.OCSF) == 0
    rows = [r for key in written
            for r in pq.read_table(io.BytesIO(s3.get_object(Bucket=settings.security_lake.bucket,
                                                            Key=key)["Body"].read())).to_pylist()]
    assert sorted(r["metadata"]["uid"] for r in rows) == sorted(r["metadata"]["uid"] for r in records)
