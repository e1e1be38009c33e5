"""``aiwarden config check estate.yaml``: validate an estate file and print what differs from the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from detectors.config import DetectionConfig
from detectors.registry import build_all
from infra.estate import EstateFileError, differences, load
from infra.settings import ContainmentSettings
from streams.containment.policy import PolicyError, load_policy

config_app = typer.Typer(no_args_is_help=True)


@config_app.command("check")
def check(path: Annotated[Path, typer.Argument(help="The estate file (YAML: detection, containment).")]) -> None:
    """Validate an estate file, the detectors it configures and the containment policy it names; print each
    setting it changes (env var, default -> value). Exit 1 if invalid."""
    try:
        data = load(path)
        detection = DetectionConfig.model_validate(data.get("detection", {}))
        containment = ContainmentSettings.model_validate(data.get("containment", {}))
        load_policy(containment.policy_path)
    except (EstateFileError, PolicyError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except ValidationError as exc:
        typer.echo(f"{path}: invalid settings:\n{exc}", err=True)
        raise typer.Exit(1) from None
    try:
        build_all(detection)
    except Exception as exc:  # noqa: BLE001 - a pattern that does not compile, a detector that refuses its settings
        typer.echo(f"{path}: the detectors cannot be built from these settings: {exc}", err=True)
        raise typer.Exit(1) from None
    changed = differences(detection, DetectionConfig(), "AIWARDEN_DETECTION__")
    changed += differences(containment, ContainmentSettings(), "AIWARDEN_CONTAINMENT__")
    typer.echo(f"{path}: valid; {len(changed)} setting(s) differ from the defaults")
    for name, was, now in changed:
        typer.echo(f"  {name}: {was!r} -> {now!r}")
