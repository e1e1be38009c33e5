"""Estate files: ``AIWARDEN_CONFIG`` below the environment, errors naming the file, ``aiwarden config check``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.estate import EstateFileError
from infra.settings import Settings
from streams.cli import app

pytestmark = pytest.mark.unit

ESTATE = """
detection:
  approved_namespaces: [ml-serving, research]
  sanctioned_ai_egress: {"*": ["bedrock-runtime.*.amazonaws.com"], ml-serving: [api.openai.com]}
  training_buckets: [example-corp-training]
  window_s: 30
containment:
  dry_run: false
"""


def test_estate_file_is_read_and_env_overrides_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    monkeypatch.setenv("AIWARDEN_CONFIG", str(path))
    settings = Settings()
    assert settings.detection.approved_namespaces == ("ml-serving", "research")
    assert settings.detection.sanctioned_ai_egress["ml-serving"] == ("api.openai.com",)
    assert settings.detection.training_buckets == ("example-corp-training",)
    assert settings.containment.dry_run is False
    monkeypatch.setenv("AIWARDEN_DETECTION__WINDOW_S", "45")
    again = Settings()
    assert again.detection.window_s == 45  # the environment wins, field by field
    assert again.detection.approved_namespaces == ("ml-serving", "research")  # the file's other fields stay


@pytest.mark.parametrize(("text", "error"), [
    ("detection: [1, 2]\n", "section 'detection' must be a mapping"),
    ("kafka: {partitions: 3}\n", "unknown section(s) kafka"),
    ("detection: {window_s: [\n", "not valid YAML"),
])
def test_bad_estate_files_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                        error: str) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(text)
    monkeypatch.setenv("AIWARDEN_CONFIG", str(path))
    with pytest.raises(EstateFileError, match=rf"^{path}: .*{error[:20]}".replace("(", r"\(").replace(")", r"\)")):
        Settings()
    monkeypatch.setenv("AIWARDEN_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(EstateFileError, match="missing.yaml: cannot read"):
        Settings()


def test_config_check_prints_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid; 5 setting(s) differ from the defaults" in result.output
    assert "AIWARDEN_DETECTION__TRAINING_BUCKETS" in result.output and "example-corp-training" in result.output
    assert "AIWARDEN_CONTAINMENT__DRY_RUN: True -> False" in result.output
    path.write_text("detection:\n  window_s: 0\n  approved_namespace: [typo]\n")
    bad = CliRunner().invoke(app, ["config", "check", str(path)])
    assert bad.exit_code == 1
    assert "window_s" in bad.output and "approved_namespace" in bad.output


# --- defaults that describe no one; the simulator's estate as its own file -----------------------------


def test_defaults_describe_no_one() -> None:
    from detectors.config import DetectionConfig

    text = DetectionConfig().model_dump_json().lower()
    for name in ("acme", "418295730164", "ml-prod", "ai-platform", "priya", "grace.okafor"):
        assert name not in text, name
    config = DetectionConfig()
    assert not config.approved_namespaces and not config.training_buckets and not config.approved_data_writers
    assert config.ai_api_hosts and config.miner_ports and config.model_ports  # generic vocabularies stay


def test_simulator_estate_agrees_with_its_world() -> None:
    from streams.simulator import SANCTIONED
    from streams.simulator.estate import detection_config

    config = detection_config()
    assert set(config.approved_namespaces) == set(SANCTIONED["ai_namespaces"])
    assert set(config.training_buckets) == set(SANCTIONED["training_buckets"])
    assert set(SANCTIONED["training_bucket_writers"]) <= set(config.approved_data_writers)
    assert set(config.approved_registry_principals) == set(SANCTIONED["model_registry_writers"])
    assert set(config.approved_logging_principals) == set(SANCTIONED["logging_admins"])
    assert set(config.approved_exposure_namespaces) == set(SANCTIONED["loadbalancer_namespaces"])
    assert set(config.package_install_namespaces) == set(SANCTIONED["package_install_namespaces"])
    assert SANCTIONED["account_id"] in " ".join(config.approved_images)


def test_simulator_estate_applies_under_explicit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.simulator import estate

    monkeypatch.setenv("AIWARDEN_DETECTION__WINDOW_S", "30")
    applied = estate.apply(Settings())
    assert applied.detection.window_s == 30  # the environment still wins
    assert applied.detection.training_buckets == ("acme-ml-training-data",)


def test_a_fresh_estate_does_not_raise_every_model_server() -> None:
    """Empty allowlists: model servers are inventoried, not raised as unsanctioned AI workloads."""
    from detectors.config import DetectionConfig
    from detectors.inventory import Inventory
    from detectors.registry import DETECTORS
    from tests.contract.events import runtime

    servers = [runtime("process_exec", ns=ns, pod=f"{name}-0", image=image, process=proc, cmdline=f"{proc} serve")
               for ns, name, image, proc in (("serving", "vllm", "vllm/vllm-openai:v0.6.3", "vllm"),
                                             ("research", "ollama", "ollama/ollama:0.3.14", "ollama"),
                                             ("team-a", "tgi", "ghcr.io/huggingface/text-generation-inference:2.4",
                                              "text-generation-launcher"))]
    fresh = DetectionConfig()
    detector = DETECTORS["unsanctioned_ai_workload"](fresh)
    assert [e for e in servers if detector.state_key(e) is not None] == []
    inventory = Inventory(fresh)
    assert all(inventory.assets(e) for e in servers)  # still known to the inventory
    configured = DETECTORS["unsanctioned_ai_workload"](DetectionConfig(approved_namespaces=("serving",)))
    flagged = [e for e in servers if configured.state_key(e) is not None and configured.detect(e, {})]
    assert [e.namespace for e in flagged] == ["research", "team-a"]


def test_simulator_estate_retargets_to_another_organisation() -> None:
    from streams.simulator import SimConfig, Simulator, estate

    acme = estate.apply(Settings())
    other = Simulator(SimConfig(seed=3, duration_s=10, rate=100, other_estate=True)).estate()
    moved = estate.apply(acme, other)
    assert moved.detection.training_buckets == tuple(other["detection"]["training_buckets"])
    assert "acme" not in moved.detection.model_dump_json()
    assert estate.apply(acme) == acme
