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

A running worker re-reads the file when it changes (``EstateWatcher``, polled between batches every
``AIWARDEN_WORKER__ESTATE_RELOAD_INTERVAL_S``): a valid file takes effect from the next batch on (the
environment still overrides it), an invalid one is logged with the file and the problem and the
settings in use stay.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

log = logging.getLogger(__name__)

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
    policy = data.get("containment", {}).get("policy_path")
    if isinstance(policy, str) and not Path(policy).is_absolute():  # a policy kept next to its estate file
        data["containment"]["policy_path"] = str(path.resolve().parent / policy)
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


Section = TypeVar("Section", bound=BaseModel)


def section_changes(old: BaseModel, new: BaseModel, prefix: str) -> list[str]:
    """``ENV_VAR: old -> new`` for every field that differs (secrets shown as set / default)."""
    return [f"{name}: {was!r} -> {now!r}" for name, was, now in differences(new, old, prefix)]


class EstateWatcher(Generic[Section]):
    """Re-reads an estate file when it (or a file it names, ``also``: the containment policy) changes, on
    the caller's thread, between batches.

    ``poll()`` is cheap (a clock read; a ``stat`` per file every ``interval_s``); the files are read and
    hashed only when an mtime or size moved, and rebuilt with ``build(path)`` only when a content did. A
    valid result replaces ``current`` (what changed is logged); files that cannot be read or validated are
    logged once per content with the file and the problem, and ``current`` stays. ``on_result`` hears
    ``reloaded`` / ``invalid`` (a metric).
    """

    def __init__(self, path: Path, build: Callable[[Path], Section], current: Section, interval_s: float, *,
                 name: str, prefix: str, also: Callable[[Section], Sequence[Path]] = lambda _section: (),
                 on_result: Callable[[str], None] | None = None) -> None:
        self.path, self.build, self.current, self.also = path, build, current, also
        self.interval_s, self.name, self.prefix = interval_s, name, prefix
        self.on_result = on_result or (lambda _outcome: None)
        self.checked = time.monotonic()
        self.signature = self._signature()
        self.digests = self._digests()  # the contents ``current`` was built from (or last refused)
        log.info("%s: estate file watched by %s every %gs", path, name, interval_s)

    def files(self) -> list[Path]:
        return [self.path, *self.also(self.current)]

    def _signature(self) -> list[tuple[int, int] | None]:
        out: list[tuple[int, int] | None] = []
        for path in self.files():
            try:
                stat = path.stat()
            except OSError:
                out.append(None)
                continue
            out.append((stat.st_mtime_ns, stat.st_size))
        return out

    def _digests(self) -> dict[Path, str | None]:
        out: dict[Path, str | None] = {}
        for path in self.files():
            try:
                out[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                out[path] = None
        return out

    def poll(self, now: float | None = None) -> Section | None:
        """Every ``interval_s``: the new settings if a file changed and the result is valid, else ``None``."""
        now = time.monotonic() if now is None else now
        if now - self.checked < self.interval_s:
            return None
        self.checked = now
        signature = self._signature()
        if signature == self.signature:
            return None
        self.signature = signature
        digests = self._digests()
        changed = [str(path) for path, digest in digests.items() if self.digests.get(path) != digest]
        self.digests = digests
        if not changed:  # touched, or saved with the same content
            return None
        try:
            fresh = self.build(self.path)
        except Exception as exc:  # noqa: BLE001 - a bad edit must never stop the worker
            log.error("%s: estate changed (%s) but is not valid; %s keeps the settings in use: %s",  # noqa: TRY400
                      self.path, ", ".join(changed), self.name, str(exc).replace("\n", " | "))
            self.on_result("invalid")
            return None
        changes = section_changes(self.current, fresh, self.prefix)
        self.current = fresh
        self.signature, self.digests = self._signature(), self._digests()  # the files it names now
        self.on_result("reloaded")
        log.info("%s: estate file reloaded by %s (%s changed), %d setting(s) changed%s", self.path, self.name,
                 ", ".join(changed), len(changes), "".join(f"\n  {c}" for c in changes))
        return fresh
