"""A running worker's estate file reloaded on change: a valid edit takes effect from the next batch on
(the environment still overrides it, per-entity state stays, anomaly models carry over), an invalid one
is logged with the file and the problem and the settings in use stay; the containment policy follows."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.config import DetectionConfig
from infra.estate import EstateWatcher
from infra.settings import Settings, estate_settings
from schemas.envelope import Event
from schemas.findings import Alert
from streams import topics
from streams.agents.containment import PolicyInForce
from streams.pipeline.detect import Detection
from tests.contract.events import T0, runtime
from tests.unit.pipeline_fakes import Out, event_message, memory_store

pytestmark = pytest.mark.unit

ESTATE = """
detection:
  approved_namespaces: [ml-serving]
containment:
  dry_run: true
"""
APPROVED = """
detection:
  approved_namespaces: [ml-serving, research]
containment:
  dry_run: true
"""


def bump_mtime(path: Path) -> None:
    """A new mtime whatever the file system's clock resolution (an edit within the same tick)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def edit(path: Path, text: str) -> None:
    path.write_text(text)
    bump_mtime(path)


def watcher(path: Path, interval_s: float = 10.0) -> tuple[EstateWatcher[DetectionConfig], list[str]]:
    outcomes: list[str] = []
    current = estate_settings(path).detection
    return EstateWatcher(path, lambda p: estate_settings(p).detection, current, interval_s, name="detect",
                         prefix="AIWARDEN_DETECTION__", on_result=outcomes.append), outcomes


@pytest.fixture
def estate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("AIWARDEN_"):
            monkeypatch.delenv(name)
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    return path


def test_a_valid_edit_is_applied_and_logged(estate: Path, caplog: pytest.LogCaptureFixture) -> None:
    watch, outcomes = watcher(estate)
    assert watch.poll(now=watch.checked + 11) is None  # nothing changed
    edit(estate, APPROVED)
    assert watch.poll(now=watch.checked + 1) is None  # not yet: polled every interval only
    with caplog.at_level(logging.INFO, logger="infra.estate"):
        fresh = watch.poll(now=watch.checked + 11)
    assert fresh is not None and fresh.approved_namespaces == ("ml-serving", "research")
    assert watch.current is fresh and outcomes == ["reloaded"]
    assert "AIWARDEN_DETECTION__APPROVED_NAMESPACES: ['ml-serving'] -> ['ml-serving', 'research']" in caplog.text
    assert str(estate) in caplog.text


def test_touching_or_saving_the_same_content_reloads_nothing(estate: Path) -> None:
    watch, outcomes = watcher(estate, interval_s=1)
    bump_mtime(estate)
    assert watch.poll(now=watch.checked + 2) is None
    edit(estate, ESTATE)
    assert watch.poll(now=watch.checked + 2) is None
    assert outcomes == []


@pytest.mark.parametrize(("text", "problem"), [
    ("detection: {approved_namespaces: [\n", "not valid YAML"),
    ("detection: {window_s: -3}\n", "window_s"),
    ("detection: {no_such_setting: 1}\n", "no_such_setting"),
    ("kafka: {partitions: 3}\n", "unknown section"),
    ("containment: {policy_path: missing-policy.yaml}\n", None),  # valid settings; the policy check is containment's
])
def test_an_invalid_edit_keeps_the_settings_in_use(estate: Path, caplog: pytest.LogCaptureFixture, text: str,
                                                   problem: str | None) -> None:
    watch, outcomes = watcher(estate, interval_s=1)
    before = watch.current
    edit(estate, text)
    with caplog.at_level(logging.INFO, logger="infra.estate"):
        fresh = watch.poll(now=watch.checked + 2)
    if problem is None:
        assert fresh is not None
        return
    assert fresh is None and watch.current is before and outcomes == ["invalid"]
    error = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert str(estate) in error.getMessage() and problem in error.getMessage()
    assert watch.poll(now=watch.checked + 2) is None and outcomes == ["invalid"]  # logged once per content
    edit(estate, APPROVED)  # fixed: applied
    fixed = watch.poll(now=watch.checked + 2)
    assert fixed is not None and fixed.approved_namespaces == ("ml-serving", "research")


def test_a_vanished_file_keeps_the_settings_in_use(estate: Path) -> None:
    watch, outcomes = watcher(estate, interval_s=1)
    estate.unlink()
    assert watch.poll(now=watch.checked + 2) is None
    assert watch.current.approved_namespaces == ("ml-serving",) and outcomes == ["invalid"]
    estate.write_text(APPROVED)
    assert watch.poll(now=watch.checked + 2) is not None


def test_the_environment_still_overrides_a_reloaded_file(estate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIWARDEN_DETECTION__APPROVED_NAMESPACES", '["from-env"]')
    watch, _ = watcher(estate, interval_s=1)
    edit(estate, APPROVED.replace("detection:\n", "detection:\n  training_buckets: [b1]\n"))
    fresh = watch.poll(now=watch.checked + 2)
    assert fresh is not None
    assert fresh.approved_namespaces == ("from-env",) and fresh.training_buckets == ("b1",)


# --- the detect stage --------------------------------------------------------------------------------


def ollama_event(i: int, ns: str) -> Event:
    return runtime("process_exec", t=T0 + i * 120_000, ns=ns, pod=f"ollama-{i}",
                   container=f"{i:02d}2a9c1b7d4e5f60718293a4", image="ollama/ollama:0.3.14", process="ollama",
                   cmdline="ollama serve", seq=i)


def ollama(i: int, ns: str) -> Any:
    return event_message(ollama_event(i, ns), offset=i)


def detectors_found(out: Out) -> list[str]:
    return [orjson.loads(sent["value"])["detector"] for sent in out.on(topics.FINDINGS)]


def test_the_detect_stage_uses_a_reloaded_allowlist_from_the_next_batch(estate: Path, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, config=estate, sigma={"pack": False},
                        worker={"estate_reload_interval_s": 1e-9})
    stores = {name: memory_store(name) for name in ("states", "rekeyed", "assets", "models")}
    out = Out()
    detect = Detection(settings, out, **stores)
    models = {d.id: d.model for d in detect.detectors if getattr(d, "model", None) is not None}
    assert models  # anomaly models exist, and must survive the reload
    detect.events_batch([ollama(1, "research")])
    assert detectors_found(out) == ["unsanctioned_ai_workload"]
    key = "unsanctioned_ai_workload|" + ollama_event(1, "research").entity_id
    state_before = dict(stores["states"].get(key, 0))
    assert state_before

    edit(estate, APPROVED)
    out.sent.clear()
    detect.events_batch([ollama(2, "research")])
    assert detectors_found(out) == []  # approved now
    detect.events_batch([ollama(3, "marketing")])
    assert detectors_found(out) == ["unsanctioned_ai_workload"]  # the rule itself still runs
    assert {d.id: d.model for d in detect.detectors if getattr(d, "model", None) is not None} == models
    assert stores["states"].get(key, 0) == state_before  # per-entity state kept


@pytest.mark.parametrize("text", [
    "detection: {approved_namespaces: 3}\n",
    "detection: {injection_patterns: [{pattern: '(unclosed', keywords: [x]}]}\n",  # valid settings, no detector
])
def test_the_detect_stage_keeps_its_detectors_on_an_invalid_edit(estate: Path, tmp_path: Path, text: str) -> None:
    settings = Settings(state_dir=tmp_path, config=estate, sigma={"pack": False},
                        worker={"estate_reload_interval_s": 1e-9})
    out = Out()
    detect = Detection(settings, out, **{name: memory_store(name) for name in ("states", "rekeyed", "assets",
                                                                                 "models")})
    detectors = detect.detectors
    edit(estate, text)
    detect.events_batch([ollama(1, "research")])
    assert detect.detectors is detectors
    assert detectors_found(out) == ["unsanctioned_ai_workload"]
    assert out.on(topics.DLQ) == []


# --- the containment policy ------------------------------------------------------------------------


def alert(namespace: str) -> Alert:
    pod = f"pod:{namespace}/vllm-0"
    return Alert(alert_id=f"a-{namespace}", first_seen=T0, last_seen=T0, severity="critical", risk_score=90.0,
                 detectors=["model_server_shell"], atlas_techniques=[], attack_techniques=[], tactics=["execution"],
                 entities=[pod], primary_entity=pod, summary="shell", evidence_event_ids=[], finding_ids=[],
                 maturity="stable", ai_asset=True)


def test_the_containment_policy_follows_the_estate_file(estate: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: [{name: q, when: {detectors: [model_server_shell]}, actions: [quarantine_workload]}]\n")
    estate.write_text(f"containment: {{policy_path: {policy.name}, dry_run: true}}\n")  # relative to the estate
    in_force = PolicyInForce(Settings(state_dir=tmp_path, config=estate, worker={"estate_reload_interval_s": 1e-9}))
    assert [a.target for a in in_force.now().decide(alert("ml"), {})] == ["pod:ml/vllm-0"]

    allowlisted = tmp_path / "allowlisted.yaml"
    allowlisted.write_text(policy.read_text() + "allowlist: {namespaces: [ml]}\n")
    edit(estate, f"containment: {{policy_path: {allowlisted.name}, dry_run: true}}\n")
    (action,) = in_force.now().decide(alert("ml"), {})
    assert action.status == "skipped" and "allowlisted" in action.reason

    edit(allowlisted, policy.read_text())  # the policy file alone changes: followed too
    (action,) = in_force.now().decide(alert("ml"), {})
    assert action.status == "dry_run"

    in_force_before = in_force.policy
    edit(estate, "containment: {policy_path: nowhere.yaml}\n")  # cannot load: the policy in force stays
    assert in_force.now() is in_force_before and in_force.watcher is not None
    assert in_force.watcher.current.policy_path == allowlisted


def test_config_check_refuses_a_policy_that_does_not_load(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from streams.cli import app

    path = tmp_path / "estate.yaml"
    (tmp_path / "policy.yaml").write_text("rules: [{name: x, actions: [quarantine]}]\n")
    path.write_text("containment: {policy_path: policy.yaml}\n")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1 and "policy.yaml:1: rules[0].actions[0]: unknown action" in result.output


def test_config_check_refuses_settings_no_detector_can_be_built_from(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from streams.cli import app

    path = tmp_path / "estate.yaml"
    path.write_text("detection: {injection_patterns: [{pattern: '(unclosed', keywords: [x]}]}\n")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1 and "detectors cannot be built" in result.output
