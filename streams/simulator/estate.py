"""The simulator's estate as a file of its own (``estate.yaml``), loaded by whatever judges simulated
traffic: ``aiwarden demo``, ``bench``, and the tests that run the simulator (or its names) through the
detectors. The detection defaults describe no one; this file describes the simulator's "Acme".

>>> detection_config().training_buckets
('acme-ml-training-data',)
>>> detection_config(window_s=30).window_s
30
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from detectors.config import DetectionConfig
from infra.estate import load
from infra.settings import ContainmentSettings, Settings

ESTATE_FILE = Path(__file__).with_name("estate.yaml")


@cache
def _detection() -> dict[str, Any]:
    return dict(load(ESTATE_FILE).get("detection", {}))


def detection_config(estate: dict[str, Any] | None = None, **changes: Any) -> DetectionConfig:
    """The simulator estate's detection settings (``estate``: a run's own, ``Simulator.estate()``), with
    ``changes`` on top."""
    base = _detection() if estate is None else estate.get("detection", {})
    return DetectionConfig.model_validate({**base, **changes})


def apply(settings: Settings, estate: dict[str, Any] | None = None) -> Settings:
    """``settings`` judging the simulator's estate (``estate``: a run's own): its detection settings,
    under every detection setting ``settings`` changed from both the defaults and the simulator's file
    (environment, an operator's estate file), so applying twice, or to another run, is safe; and its
    containment policy, unless ``settings`` name one."""
    default, acme = DetectionConfig(), detection_config()
    changed = {
        name: value
        for name in DetectionConfig.model_fields
        if (value := getattr(settings.detection, name)) != getattr(default, name) and value != getattr(acme, name)
    }
    update: dict[str, Any] = {"detection": detection_config(estate, **changed)}
    if settings.containment.policy_path == ContainmentSettings().policy_path:  # its own policy, unless one is set
        policy = Path(load(ESTATE_FILE)["containment"]["policy_path"])
        update["containment"] = settings.containment.model_copy(update={"policy_path": policy})
    return settings.model_copy(update=update)
