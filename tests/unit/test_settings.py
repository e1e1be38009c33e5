from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.settings import Settings, env_var_names, markdown_table
from streams.worker_process import settings_env

pytestmark = pytest.mark.unit
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_the_generated_one() -> None:
    text = README.read_text()
    section = text.split("<!-- settings:start", 1)[1].split("-->", 1)[1].split("<!-- settings:end -->")[0]
    assert section.strip() == markdown_table(), "regenerate: python -m infra.settings"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [name for name in env_var_names() if f"`{name}`" not in text]
    assert not missing, f"README settings table lacks: {missing}"
    assert all(description for description in env_var_names().values())


def test_nested_env_vars_and_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIWARDEN_KAFKA__PARTITIONS", "12")
    monkeypatch.setenv("AIWARDEN_CLICKHOUSE__PASSWORD", "s3cret")
    settings = Settings()
    assert settings.kafka.partitions == 12
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    with pytest.raises(ValidationError):
        settings.kafka.partitions = 3  # type: ignore[misc]


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIWARDEN_KAFKA__PARTITIONS", "0")
    with pytest.raises(ValidationError, match="partitions"):
        Settings()


def test_settings_env_rebuilds_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIWARDEN_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("AIWARDEN_CLICKHOUSE__PASSWORD", "pw")
    original = Settings()
    for key in list(os.environ):
        if key.startswith("AIWARDEN_"):
            monkeypatch.delenv(key)
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    assert Settings() == original
