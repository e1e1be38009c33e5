"""``aiwarden estate learn`` against a real ClickHouse: events of a learning period become a proposed estate
file, each entry with its counts, that ``aiwarden config check`` accepts; what the estate already allows is
not proposed again."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from typer.testing import CliRunner

from detectors.config import DetectionConfig
from infra.settings import Settings
from streams.cli import app
from streams.worker_process import settings_env

pytestmark = pytest.mark.integration

COLUMNS = ("event_id", "time_ms", "source", "class_uid", "activity", "principal", "api_key_id", "namespace", "pod",
           "image", "process_name", "process_cmdline", "dst_host", "model_id", "api_operation", "api_status",
           "resource", "entity_id")


def row(t: int, source: str, class_uid: int, **values: Any) -> list[Any]:
    data = {"event_id": uuid.uuid4().hex, "time_ms": t, "source": source, "class_uid": class_uid, **values}
    return [data.get(column, "") for column in COLUMNS]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_learn_proposes_an_estate_file_from_clickhouse(service_settings: Settings, ch: Client,
                                                       tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    t0 = (int(time.time()) - 3 * 86_400) * 1000 + uuid.uuid4().int % 3_600_000  # a period of this test's own
    namespace, user = f"lab-{tag}", f"bot-{tag}@fresh.example"
    writer = f"arn:aws:iam::418295730164:role/fresh-trainer-{tag}"
    serve = {"namespace": namespace, "pod": "llm-0", "image": f"ghcr.io/fresh-{tag}/llm-server:1.0",
             "process_name": "python3", "process_cmdline": "python3 -m vllm.entrypoints.openai.api_server"}
    rows = [
        *(row(t0 + i * 1000, "native", 1007, activity="process_exec", **serve) for i in range(3)),
        row(t0 + 5000, "native", 4003, activity="dns_query", namespace=namespace, dst_host="api.mistral.ai"),
        row(t0 + 6000, "native", 1007, activity="process_exec", namespace=f"web-{tag}", image="nginx:1.27",
            process_name="nginx", process_cmdline="nginx -g daemon off;"),  # no AI: nothing to propose
        *(row(t0 + 7000 + i, "gateway", 6003, activity="chat", principal=user, api_key_id=f"key-{tag}",
              model_id=f"fresh-model-{tag}") for i in range(4)),
        row(t0 + 8000, "cloudtrail", 6003, activity="PutObject", principal=writer, api_operation="PutObject",
            api_status="success", resource=f"acme-ml-training-data/features/{tag}.parquet"),
        row(t0 + 9000, "cloudtrail", 6003, activity="PutObject", principal=writer, api_operation="PutObject",
            api_status="failure", resource=f"acme-ml-training-data/features/{tag}-denied.parquet"),
    ]
    ch.insert("events", rows, column_names=list(COLUMNS), database=service_settings.clickhouse.database)

    out = tmp_path / "proposed.yaml"
    env = settings_env(service_settings)  # the simulator's estate (Acme's allowlists) as the starting point
    runner = CliRunner()
    result = runner.invoke(app, ["estate", "learn", "--since", iso(t0 - 1), "--until", iso(t0 + 60_000),
                                 "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    proposed = yaml.safe_load(text)["detection"]
    config = DetectionConfig.model_validate(proposed)

    assert namespace in config.approved_namespaces and f"web-{tag}" not in config.approved_namespaces
    assert set(service_settings.detection.approved_namespaces) < set(config.approved_namespaces)
    assert f"ghcr.io/fresh-{tag}/llm-server" in config.approved_images
    assert config.sanctioned_ai_egress[namespace] == ("api.mistral.ai",)
    assert f"fresh-model-{tag}" in config.approved_models and user in config.approved_model_users
    assert writer in config.approved_data_writers
    line = next(line for line in text.splitlines() if f'"{namespace}"' in line)
    assert f"learned: 3 events, {iso(t0)[:19]}Z .. {iso(t0 + 2000)[:19]}Z" in line
    writer_line = next(line for line in text.splitlines() if writer in line)
    assert "learned: 1 events" in writer_line  # the failed write is not a write

    check = runner.invoke(app, ["config", "check", str(out)])
    assert check.exit_code == 0, check.output
