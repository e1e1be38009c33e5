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
