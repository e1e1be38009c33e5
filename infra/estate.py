"""An estate's detection and containment settings from one YAML file (``AIWARDEN_CONFIG=estate.yaml``).

Operators keep allowlists in version control::

    # estate.yaml
    detection:
      approved_namespaces: [ml-serving, research]
      sanctioned_ai_egress: {"*": ["bedrock-runtime.*.amazonaws.com"], ml-serving: [api.openai.com]}
      training_buckets: [example-corp-training]
    containment:
      dry_run: false

The file is a settings source below the environment: ``AIWARDEN_DETECTION__*`` variables still
override it field by field. Only the ``detection`` and ``containment`` sections are read; anything
else, a missing file or bad YAML is an error naming the file. ``aiwarden config check estate.yaml``
validates a file and prints what differs from the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

CONFIG_ENV = "AIWARDEN_CONFIG"
SECTIONS = ("detection", "containment")


class EstateFileError(ValueError):
    """The estate file cannot be used (names the file)."""


def load(path: Path) -> dict[str, Any]:
    """The file's ``detection`` / ``containment`` sections as plain data (not yet validated)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        msg = f"{path}: cannot read the estate file: {exc.strerror or exc}"
        raise EstateFileError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise EstateFileError(msg) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        msg = f"{path}: expected a mapping with sections {', '.join(SECTIONS)}, got {type(data).__name__}"
        raise EstateFileError(msg)
    unknown = sorted(str(k) for k in data if k not in SECTIONS)
    if unknown:
        msg = f"{path}: unknown section(s) {', '.join(unknown)}; an estate file holds {', '.join(SECTIONS)}"
        raise EstateFileError(msg)
    for section, value in data.items():
        if not isinstance(value, dict):
            msg = f"{path}: section {section!r} must be a mapping, got {type(value).__name__}"
            raise EstateFileError(msg)
    return data


class EstateFileSource(PydanticBaseSettingsSource):
    """A pydantic-settings source over an estate file (below the environment in priority)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.data = load(path)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def differences(model: BaseModel, default: BaseModel, prefix: str) -> list[tuple[str, Any, Any]]:
    """``(env var, default, value)`` for every field of ``model`` that differs from ``default``."""
    out: list[tuple[str, Any, Any]] = []
    for name in type(model).model_fields:
        value, base = getattr(model, name), getattr(default, name)
        if isinstance(value, SecretStr):
            changed = value.get_secret_value() != base.get_secret_value()
            if changed:
                out.append((f"{prefix}{name.upper()}", "(default)", "(set)"))
            continue
        if value != base:
            plain = model.model_dump(mode="json", include={name})[name]
            was = default.model_dump(mode="json", include={name})[name]
            out.append((f"{prefix}{name.upper()}", was, plain))
    return out
