"""Learning mode: the allowlist rules' findings are recorded, not alerted, until ``learning_until`` (event
time); ``aiwarden estate learn`` turns what the estate did into a proposed estate file that validates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from detectors.config import DetectionConfig
from infra.settings import Settings
from streams import topics
from streams.cli import app
from streams.estate_learn import QUERIES, image_prefix, learn, render, since_ms_of
from streams.pipeline.detect import LEARNING, Detection
from tests.contract.events import T0, runtime
from tests.unit.pipeline_fakes import Out, event_message, memory_store

pytestmark = pytest.mark.unit


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def stage(tmp_path: Path, **detection: Any) -> tuple[Detection, Out]:
    settings = Settings(state_dir=tmp_path, sigma={"pack": False}, detection=detection)
    out = Out()
    return Detection(settings, out, **{n: memory_store(n) for n in ("states", "rekeyed", "assets", "models")}), out


def ollama(i: int, t: int) -> Any:
    return event_message(runtime("process_exec", t=t, ns="research", pod=f"ollama-{i}",
                                 container=f"{i:02d}2a9c1b7d4e5f60718293a4", image="ollama/ollama:0.3.14",
                                 process="ollama", cmdline="ollama serve", seq=i), offset=i)


def miner(t: int) -> Any:
    return event_message(runtime("dns_query", t=t, dst_host="pool.supportxmr.com", seq=99), offset=99)


def test_learning_mode_records_allowlist_findings_and_alerts_the_rest(tmp_path: Path) -> None:
    until = T0 + 600_000
    detect, out = stage(tmp_path, approved_namespaces=["ml-prod"], learning_until=iso(until))
    detect.events_batch([ollama(1, T0), miner(T0)])
    held = [orjson.loads(s["value"]) for s in out.on(topics.SUPPRESSED)]
    assert [(r["detector"], r["exception_id"]) for r in held] == [("unsanctioned_ai_workload", LEARNING)]
    assert [orjson.loads(s["value"])["detector"] for s in out.on(topics.FINDINGS)] == ["cryptominer"]

    out.sent.clear()
    detect.events_batch([ollama(2, until + 1)])  # after the learning period: alerted as ever
    assert [orjson.loads(s["value"])["detector"] for s in out.on(topics.FINDINGS)] == ["unsanctioned_ai_workload"]
    assert out.on(topics.SUPPRESSED) == []


def test_without_learning_until_nothing_is_held_back(tmp_path: Path) -> None:
    detect, out = stage(tmp_path, approved_namespaces=["ml-prod"])
    detect.events_batch([ollama(1, T0)])
    assert len(out.on(topics.FINDINGS)) == 1 and out.on(topics.SUPPRESSED) == []


# --- the proposal ----------------------------------------------------------------------------------------


class FakeClickHouse:
    """Answers each of the learn queries with canned rows (the real queries: tests/integration)."""

    def __init__(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        self.rows = rows
        self.asked: list[dict[str, Any]] = []

    def query(self, sql: str, parameters: dict[str, Any], settings: dict[str, Any]) -> Any:
        self.asked.append(parameters)
        name = next(name for name, text in QUERIES.items() if text == sql)
        return type("Result", (), {"result_rows": self.rows.get(name, [])})()


ROWS: dict[str, list[tuple[Any, ...]]] = {
    "workloads": [
        ("ml-serving", "ghcr.io/acme-labs/llm-api:2.1", "python3", "python3 -m vllm.entrypoints.openai.api_server",
         1200, T0, T0 + 5000),
        ("ml-serving", "vllm/vllm-openai:v0.6.3", "vllm", "vllm serve", 30, T0, T0 + 9000),
        ("web", "nginx:1.27", "nginx", "nginx -g daemon off;", 5000, T0, T0 + 9000),  # not an AI workload
    ],
    "egress": [
        ("ml-serving", "api.openai.com", 42, T0, T0 + 1000),
        ("web", "example.org", 9, T0, T0 + 1000),  # not an AI API
        ("kube-system", "api.anthropic.com", 3, T0, T0 + 10),  # already sanctioned (cluster DNS)
    ],
    "models": [("gpt-4o-mini", "svc-support", 300, T0, T0 + 60_000, 2)],
    "data_writers": [
        ("arn:aws:iam::111122223333:role/trainer", "corp-training", "corp-training/set-1/part-0", 17, T0, T0 + 1),
        ("arn:aws:iam::111122223333:role/web", "corp-assets", "corp-assets/logo.png", 4, T0, T0 + 1),
    ],
}


def test_learn_proposes_what_the_allowlists_lack_with_where_it_came_from(tmp_path: Path) -> None:
    config = DetectionConfig(training_buckets=("corp-training",))
    client = FakeClickHouse(ROWS)
    proposal = learn(client, config, T0 - 1, T0 + 86_400_000)
    assert client.asked[0]["since"] == T0 - 1 and client.asked[0]["until"] == T0 + 86_400_000
    assert list(proposal.namespaces) == ["ml-serving"]
    assert proposal.namespaces["ml-serving"].count == 1230
    assert list(proposal.images) == ["ghcr.io/acme-labs/llm-api"]  # vllm/vllm-openai is approved by default
    assert {ns: list(hosts) for ns, hosts in proposal.egress.items()} == {"ml-serving": ["api.openai.com"]}
    assert list(proposal.models) == ["gpt-4o-mini"] and list(proposal.model_users) == ["svc-support"]
    assert list(proposal.data_writers) == ["arn:aws:iam::111122223333:role/trainer"]

    base = {"detection": {"training_buckets": ["corp-training"], "window_s": 30}, "containment": {"dry_run": True}}
    text = render(proposal, config, base, "estate.yaml")
    assert "- \"ml-serving\"  # learned: 1230 events" in text
    proposed = yaml.safe_load(text)
    checked = DetectionConfig.model_validate(proposed["detection"])
    assert checked.approved_namespaces == ("ml-serving",)
    assert checked.approved_images[-1] == "ghcr.io/acme-labs/llm-api"
    assert set(config.approved_images) < set(checked.approved_images)  # the defaults are kept
    assert checked.sanctioned_ai_egress == {"kube-system": ("*",), "ml-serving": ("api.openai.com",)}
    assert checked.window_s == 30 and proposed["containment"] == {"dry_run": True}

    path = tmp_path / "proposed.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output


def test_an_estate_that_did_nothing_new_proposes_itself(tmp_path: Path) -> None:
    config = DetectionConfig(approved_namespaces=("ml-serving",), approved_images=())
    proposal = learn(FakeClickHouse({"workloads": ROWS["workloads"][:2]}), config, 0, T0 + 1)
    assert proposal.is_empty()
    proposed = yaml.safe_load(render(proposal, config, {}, "the default settings"))
    assert DetectionConfig.model_validate(proposed["detection"]) == config


@pytest.mark.parametrize(("image", "prefix"), [
    ("vllm/vllm-openai:v0.6.3", "vllm/vllm-openai"),
    ("registry.local:5000/team/llm", "registry.local:5000/team/llm"),
    ("registry.local:5000/team/llm:1.2@sha256:abc", "registry.local:5000/team/llm"),
    ("ollama/ollama@sha256:0123", "ollama/ollama"),
])
def test_image_prefix_drops_tag_and_digest(image: str, prefix: str) -> None:
    assert image_prefix(image) == prefix


def test_since_takes_durations_and_times() -> None:
    now = 1_800_000_000_000
    assert since_ms_of("7d", now) == now - 7 * 86_400_000
    assert since_ms_of("2026-12-01T00:00:00Z", now) == since_ms_of("2026-12-01T00:00:00", now)
    with pytest.raises(ValueError, match="duration"):
        since_ms_of("last week", now)
