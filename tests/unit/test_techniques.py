"""The technique table (MITRE's data, pinned) and every id a registered detector carries."""

from __future__ import annotations

import doctest
import re

import pytest

import schemas.techniques
from detectors.registry import DETECTORS
from schemas.techniques import mitre, owasp, owasp_llm, tactic, technique, version

pytestmark = pytest.mark.unit

ATLAS_ID = re.compile(r"^AML\.T\d{4}(\.\d{3})?$")
ATTACK_ID = re.compile(r"^T\d{4}(\.\d{3})?$")


def test_docstring_examples_run() -> None:
    assert doctest.testmod(schemas.techniques).failed == 0


def test_table_is_pinned_and_complete() -> None:
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", version("atlas")) and re.fullmatch(r"\d+\.\d+", version("attack"))
    techniques = mitre()["techniques"]
    assert sum(t["framework"] == "attack" for t in techniques.values()) > 600  # Enterprise, not a hand-picked few
    assert sum(t["framework"] == "atlas" for t in techniques.values()) > 100
    for tid, entry in techniques.items():
        assert ATLAS_ID.match(tid) or ATTACK_ID.match(tid), tid
        assert entry["name"] and entry["url"].startswith("https://"), tid
        assert entry.get("parent") is None or entry["parent"] in techniques, tid
        assert all(tactic(t) is not None for t in entry["tactics"]), tid
    assert len(owasp()["categories"]) == 10


def test_every_id_a_detector_carries_exists() -> None:
    missing = []
    for name, cls in DETECTORS.items():
        for tid in (*cls.atlas, *cls.attack):
            entry = technique(tid)
            if entry is None:
                missing.append(f"{name}: {tid}")
            elif entry["framework"] != ("atlas" if tid in cls.atlas else "attack"):
                missing.append(f"{name}: {tid} is declared under the wrong framework")
        missing += [f"{name}: {cid}" for cid in cls.owasp_llm if owasp_llm(cid) is None]
    assert not missing, f"ids not in MITRE's data / the OWASP list (regenerate or fix the detector): {missing}"


def test_lookup_misses_are_none() -> None:
    assert technique("AML.T9999") is None and tactic("TA9999") is None and owasp_llm("LLM11:2025") is None


def test_every_id_a_pack_sigma_rule_carries_exists() -> None:
    from detectors.sigma.rules import PACK_DIR, RuleSet

    ruleset = RuleSet.load([PACK_DIR])
    assert ruleset.rules and not ruleset.problems, ruleset.problems
    missing = [f"{rule.path.name}: {tid}" for rule in ruleset.rules for tid in (*rule.atlas, *rule.attack)
               if technique(tid) is None]
    assert not missing, f"Sigma pack tags naming ids not in MITRE's data: {missing}"
