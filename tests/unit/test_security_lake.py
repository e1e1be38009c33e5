"""The Security Lake writer's pieces: Parquet through the fixed Arrow schema, partition layout, batching."""

from __future__ import annotations

import io
from typing import Any

import pyarrow.parquet as pq
import pytest

from detectors.registry import DETECTORS
from infra.settings import SecurityLakeSettings
from streams.integrations.ocsf import detection_finding, triage_finding
from streams.integrations.security_lake import LakeWriter, event_day, partition_prefix, to_parquet
from streams.soc.triage import triage_records
from tests.unit.test_ocsf import alert

pytestmark = pytest.mark.unit

LAKE = SecurityLakeSettings(bucket="lake", region="eu-west-1", account_id="123456789012", flush_records=3,
                            flush_interval_s=60)


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def records() -> list[dict[str, Any]]:
    out = [detection_finding(alert()), detection_finding(alert(version=5, status="closed")),
           detection_finding(alert(version=6, status="merged", merged_into="9b2e"))]
    for body in ({"status": "acknowledged"}, {"status": "resolved", "resolution": "benign"}):
        (change,) = triage_records("ana", {"alert_ids": ["4f1c"], **body})
        out.append(triage_finding(alert(version=6), change))
    for name, cls in DETECTORS.items():
        out.append(detection_finding(alert(detectors=[name], atlas_techniques=list(cls.atlas),
                                           attack_techniques=list(cls.attack), entities=[])))
    return out


def test_every_attribute_the_mapping_writes_survives_parquet() -> None:
    written = records()
    table = pq.read_table(io.BytesIO(to_parquet(written)))
    assert table.num_rows == len(written)
    back = sorted((without_nulls(r) for r in table.to_pylist()), key=lambda r: (r["time"], r["metadata"]["uid"]))
    assert back == sorted(written, key=lambda r: (r["time"], r["metadata"]["uid"]))


def test_partition_layout() -> None:
    assert event_day(1_767_225_599_999) == "20251231" and event_day(1_767_225_600_000) == "20260101"
    assert partition_prefix(LAKE, "20260101") == (
        "ext/aiwarden/region=eu-west-1/accountId=123456789012/eventDay=20260101/"
    )


class Bucket:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:  # noqa: N803 - boto3's names
        assert Bucket == "lake"
        self.objects[Key] = Body


def test_batches_per_partition_and_day_flush_on_size_and_age() -> None:
    now = [0.0]
    bucket = Bucket()
    writer = LakeWriter(LAKE, bucket, clock=lambda: now[0])
    day1, day2 = detection_finding(alert()), detection_finding(alert(updated_ms=1_767_100_000_000))
    writer.add(day1, partition=0, offset=10)
    assert not writer.due()
    now[0] = 61.0
    assert writer.due()  # the oldest record waited flush_interval_s
    writer.add(day2, partition=0, offset=11)
    writer.add(day1, partition=2, offset=7)
    keys = writer.flush()
    assert sorted(keys) == sorted([
        partition_prefix(LAKE, "20251229") + "aiwarden.ocsf-0-10-10.parquet",
        partition_prefix(LAKE, "20251230") + "aiwarden.ocsf-0-11-11.parquet",
        partition_prefix(LAKE, "20251229") + "aiwarden.ocsf-2-7-7.parquet",
    ])
    assert writer.buffered == 0 and not writer.due() and set(bucket.objects) == set(keys)
    for i in range(3):
        writer.add(day1, partition=1, offset=i)
    assert writer.due()  # flush_records
    writer.drop({1})
    assert writer.buffered == 0 and not writer.flush()


def test_records_that_are_not_detection_findings_are_refused() -> None:
    writer = LakeWriter(LAKE, Bucket())
    with pytest.raises(ValueError, match="not an OCSF Detection Finding"):
        writer.add({"class_uid": 4001, "time": 1}, 0, 0)
    with pytest.raises(ValueError, match="not an OCSF Detection Finding"):
        writer.add({"class_uid": 2004}, 0, 0)


def test_lake_credentials_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.settings import Settings

    monkeypatch.setenv("AIWARDEN_SECURITY_LAKE__SECRET_ACCESS_KEY", "lake-secret-do-not-print")
    monkeypatch.setenv("AIWARDEN_SECURITY_LAKE__SESSION_TOKEN", "lake-token-do-not-print")
    settings = Settings()
    assert settings.security_lake.secret_access_key is not None
    assert settings.security_lake.secret_access_key.get_secret_value() == "lake-secret-do-not-print"
    for text in (repr(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert "do-not-print" not in text
