"""The containment policy: loading (errors name file:line and path) and deciding (pure, idempotent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from schemas.findings import Alert, stable_id
from streams.containment.policy import ACTIONS, Action, Policy, PolicyError, load_policy, parse_policy

pytestmark = pytest.mark.unit

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "infra" / "containment-policy.yaml"

EXAMPLE = """\
dry_run: false
allowlist:
  namespaces: [kube-system, monitoring]
  principals: ["arn:aws:iam::*:role/break-glass*"]
  entities: []
limits:
  window_s: 300
  max_actions: {quarantine_workload: 3, revoke_api_key: 5, default: 10}
rules:
  - name: quarantine-compromised-model-servers
    when: {detectors: [model_server_shell, cryptominer, weights_exfiltration], min_severity: high, min_risk: 60,
           namespaces: ["ml-*"], maturity: [stable, incubating]}
    actions: [quarantine_workload, notify]
    dry_run: false
    approval_required: false
  - name: revoke-stolen-keys
    when: {detectors: [stolen_api_key, model_extraction, cost_harvesting], min_severity: high}
    actions: [revoke_api_key]
"""

POD = "pod:ml-prod/vllm-0"
CONTAINER = "container:0123456789ab"
KEY = "apikey:key-7f3a"
PRINCIPAL = "principal:arn:aws:iam::418295730164:user/mallory"


def make_alert(**overrides: Any) -> Alert:
    data: dict[str, Any] = {
        "alert_id": "alert-1",
        "first_seen": 1_700_000_000_000,
        "last_seen": 1_700_000_000_000,
        "severity": "high",
        "risk_score": 80.0,
        "detectors": ["model_server_shell"],
        "atlas_techniques": [],
        "attack_techniques": [],
        "tactics": [],
        "entities": [POD, CONTAINER, "namespace:ml-prod"],
        "primary_entity": POD,
        "summary": "shell in model server",
        "evidence_event_ids": ["ev-1", "ev-2"],
        "finding_ids": ["f-1"],
        "maturity": "stable",
    }
    data.update(overrides)
    return Alert(**data)


def policy_with(rule: str, head: str = "") -> Policy:
    return parse_policy(f"{head}rules:\n{rule}")


NOTIFY_ALL = "  - {name: all, actions: [notify]}\n"


@pytest.fixture
def example() -> Policy:
    return parse_policy(EXAMPLE, source="example.yaml")


# --- loading -------------------------------------------------------------------------------------


def test_example_and_default_policy_parse(example: Policy) -> None:
    assert [r.name for r in example.rules] == ["quarantine-compromised-model-servers", "revoke-stolen-keys"]
    assert example.limits.limit_for("quarantine_workload") == 3
    assert example.limits.limit_for("notify") == 10
    shipped = load_policy(DEFAULT_POLICY)
    assert shipped.rules and not shipped.dry_run
    assert shipped.rules[0].name == "quarantine-compromised-model-servers"
    for rule in shipped.rules:
        assert set(rule.actions) <= set(ACTIONS)


def test_default_policy_quarantines_ai_assets_wherever_they_run() -> None:
    """The shipped default names no namespace: it goes by what the inventory knows (``ai_asset``)."""
    shipped = load_policy(DEFAULT_POLICY)
    assert all(not rule.when.namespaces for rule in shipped.rules)
    pod = "pod:payments-7/llm-sidecar-0"
    ai = make_alert(entities=[pod], primary_entity=pod, ai_asset=True)
    assert ("quarantine_workload", pod) in {(a.action, a.target) for a in shipped.decide(ai, {})}
    plain = make_alert(alert_id="alert-2", entities=[pod], primary_entity=pod, ai_asset=False)
    assert "quarantine_workload" not in {a.action for a in shipped.decide(plain, {})}


def test_simulator_policy_keeps_its_namespaces() -> None:
    from streams.simulator import estate

    policy = load_policy(estate.apply(Settings()).containment.policy_path)
    assert policy.rules[0].when.namespaces == ("ml-*", "inference", "ai-platform")
    assert [a.action for a in policy.decide(make_alert(), {})][:1] == ["quarantine_workload"]


def test_empty_policy_is_valid_and_does_nothing() -> None:
    policy = parse_policy("")
    assert policy.rules == ()
    assert policy.decide(make_alert(), {}) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  - name: a\n    actions: [notify]\n  - name: b\n    actions: [notify, quarantine]\n",
            "policy.yaml:5: rules[1].actions[1]: unknown action 'quarantine'",
        ),
        (
            "rules:\n  - name: a\n    when:\n      detectors: [cryptominer, nope]\n    actions: [notify]\n",
            "policy.yaml:4: rules[0].when.detectors[1]: unknown detector 'nope'",
        ),
        ("dry_run: false\nbogus: 1\n", "policy.yaml:2: bogus: unknown key 'bogus'"),
        (
            "rules:\n  - name: a\n    when:\n      severity: high\n    actions: [notify]\n",
            "policy.yaml:4: rules[0].when.severity: unknown key 'severity'",
        ),
        ("dry_run: maybe\n", "policy.yaml:1: dry_run: Input should be a valid boolean"),
        ("limits:\n  window_s: soon\n", "policy.yaml:2: limits.window_s: Input should be a valid integer"),
        ("limits:\n  window_s: 0\n", "policy.yaml:2: limits.window_s: Input should be greater than or equal to 1"),
        (
            "limits:\n  window_s: 60\n  max_actions: {quarantine: 3}\n",
            "policy.yaml:3: limits.max_actions.quarantine: unknown action 'quarantine'",
        ),
        ("limits:\n  max_actions: {notify: -1}\n", "policy.yaml:2: limits.max_actions.notify: Input should be greater"),
        (
            "rules:\n  - name: a\n    when: {min_severity: huge}\n    actions: [notify]\n",
            "policy.yaml:3: rules[0].when.min_severity: Input should be 'info'",
        ),
        (
            "rules:\n  - name: a\n    when: {maturity: [alpha]}\n    actions: [notify]\n",
            "policy.yaml:3: rules[0].when.maturity[0]: Input should be 'stable'",
        ),
        (
            "rules:\n  - name: a\n    when: {min_risk: 101}\n    actions: [notify]\n",
            "policy.yaml:3: rules[0].when.min_risk: Input should be less than or equal to 100",
        ),
        (
            "rules:\n  - name: a\n    actions: notify\n",
            "policy.yaml:3: rules[0].actions: Input should be a valid tuple",
        ),
        ("rules:\n  - name: a\n    actions: []\n", "policy.yaml:3: rules[0].actions: Tuple should have at least 1"),
        ("rules:\n  - when: {}\n    actions: [notify]\n", "policy.yaml:2: rules[0].name: Field required"),
        (
            "rules:\n  - {name: a, actions: [notify]}\n  - {name: a, actions: [notify]}\n",
            "policy.yaml:3: rules[1].name: duplicate rule name 'a'",
        ),
        ("rules: [\n  {name: a\n", "policy.yaml:3: invalid YAML"),
        ("dry_run: false\n  nested: : x\n", "policy.yaml:2: invalid YAML"),
        ("- a\n- b\n", "policy.yaml:1: <root>: the policy must be a mapping"),
    ],
)
def test_policy_errors_name_file_line_and_path(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="policy.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_load_policy_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - name: a\n    actions: [nuke]\n")
    with pytest.raises(PolicyError, match=rf"^{path}:3: rules\[0\]\.actions\[0\]: unknown action 'nuke'"):
        load_policy(path)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_policy_is_frozen(example: Policy) -> None:
    with pytest.raises(ValueError, match="frozen"):
        example.dry_run = True  # type: ignore[misc]


# --- matching ------------------------------------------------------------------------------------


def test_matching_every_condition(example: Policy) -> None:
    assert [a.action for a in example.decide(make_alert(), {})] == ["quarantine_workload", "notify"]
    misses = [
        make_alert(detectors=["prompt_injection"]),
        make_alert(severity="medium"),
        make_alert(risk_score=59.9),
        make_alert(entities=["pod:web/api-0", "namespace:web"], primary_entity="pod:web/api-0"),
        make_alert(entities=[CONTAINER], primary_entity=CONTAINER),  # no namespace at all
    ]
    for alert in misses:
        assert example.decide(alert, {}) == [], alert
    # severity above the minimum and any detector overlap match
    hits = example.decide(make_alert(severity="critical", detectors=["prompt_injection", "cryptominer"]), {})
    assert {a.action for a in hits} == {"quarantine_workload", "notify"}


def test_maturity_condition() -> None:
    policy = policy_with("  - {name: r, when: {maturity: [stable]}, actions: [notify]}\n")
    assert policy.decide(make_alert(maturity="incubating"), {}) == []
    assert len(policy.decide(make_alert(maturity="stable"), {})) == 1


def test_every_matching_rule_contributes(example: Policy) -> None:
    alert = make_alert(detectors=["cryptominer", "stolen_api_key"], entities=[POD, KEY])
    actions = example.decide(alert, {})
    assert [(a.rule, a.action) for a in actions] == [
        ("quarantine-compromised-model-servers", "quarantine_workload"),
        ("quarantine-compromised-model-servers", "notify"),
        ("revoke-stolen-keys", "revoke_api_key"),
    ]
    assert all(a.status == "pending" for a in actions)


# --- targets -------------------------------------------------------------------------------------


def test_targets_chosen_per_action() -> None:
    policy = policy_with(
        "  - name: all\n    actions: [quarantine_workload, block_egress, revoke_api_key, suspend_principal, notify]\n"
    )
    alert = make_alert(entities=[CONTAINER, POD, KEY, PRINCIPAL, "ip:10.0.0.9"], primary_entity=KEY)
    targets = {a.action: a.target for a in policy.decide(alert, {})}
    assert targets == {
        "quarantine_workload": POD,
        "block_egress": POD,
        "revoke_api_key": KEY,
        "suspend_principal": PRINCIPAL,
        "notify": KEY,
    }
    # no pod: the container; no key or principal: skipped with a reason
    alert = make_alert(alert_id="alert-2", entities=[CONTAINER, "ip:10.0.0.9"], primary_entity="ip:10.0.0.9")
    by_action = {a.action: a for a in policy.decide(alert, {})}
    assert by_action["quarantine_workload"].target == CONTAINER
    assert by_action["block_egress"].target == CONTAINER
    assert by_action["notify"].target == "ip:10.0.0.9"
    for name in ("revoke_api_key", "suspend_principal"):
        assert by_action[name].status == "skipped"
        assert by_action[name].target == ""
        assert "entity in the alert" in by_action[name].reason


def test_primary_entity_preferred_when_suitable() -> None:
    policy = policy_with("  - {name: q, actions: [quarantine_workload]}\n")
    other = "pod:ml-prod/tgi-1"
    alert = make_alert(entities=[POD, other], primary_entity=other)
    assert policy.decide(alert, {})[0].target == other


# --- safety rails --------------------------------------------------------------------------------


def test_sandbox_alerts_never_act_beyond_notify() -> None:
    policy = policy_with(
        "  - name: everything\n"
        "    when: {maturity: [sandbox, stable]}\n"
        "    actions: [quarantine_workload, block_egress, revoke_api_key, suspend_principal, notify]\n"
    )
    alert = make_alert(maturity="sandbox", entities=[POD, KEY, PRINCIPAL])
    actions = policy.decide(alert, {})
    assert {a.action: a.status for a in actions} == {
        "quarantine_workload": "skipped",
        "block_egress": "skipped",
        "revoke_api_key": "skipped",
        "suspend_principal": "skipped",
        "notify": "pending",
    }
    assert all("sandbox" in a.reason for a in actions if a.action != "notify")


def test_sandbox_alert_that_matures_can_then_act() -> None:
    policy = policy_with("  - {name: q, actions: [quarantine_workload]}\n")
    state: dict[str, Any] = {}
    first = policy.decide(make_alert(maturity="sandbox"), state)
    assert [a.status for a in first] == ["skipped"]
    assert policy.decide(make_alert(maturity="sandbox", version=2), state) == []
    later = policy.decide(make_alert(maturity="stable", version=3), state)
    assert [a.status for a in later] == ["pending"]
    assert later[0].action_id == first[0].action_id
    assert policy.decide(make_alert(maturity="stable", version=4), state) == []


def test_allowlisted_targets_are_skipped() -> None:
    policy = policy_with(
        "  - {name: r, actions: [quarantine_workload, suspend_principal, revoke_api_key, notify]}\n",
        head=(
            "allowlist:\n  namespaces: [kube-*]\n  principals: ['arn:aws:iam::*:role/break-glass*']\n"
            "  entities: ['apikey:key-ops-*']\n"
        ),
    )
    pod = "pod:kube-system/coredns-0"
    glass = "principal:arn:aws:iam::418295730164:role/Break-Glass-Admin"
    alert = make_alert(entities=[pod, glass, "apikey:key-ops-1"], primary_entity=pod)
    by_action = {a.action: a for a in policy.decide(alert, {})}
    assert by_action["quarantine_workload"].status == "skipped"
    assert "kube-system" in by_action["quarantine_workload"].reason
    assert by_action["suspend_principal"].status == "skipped"
    assert "principals" in by_action["suspend_principal"].reason
    assert by_action["revoke_api_key"].status == "skipped"
    assert "entities" in by_action["revoke_api_key"].reason
    assert by_action["notify"].status == "pending"  # telling people is never allowlisted
    # a container target is protected when the alert names an allowlisted namespace
    alert = make_alert(alert_id="a2", entities=[CONTAINER, "namespace:kube-system"], primary_entity=CONTAINER)
    assert policy.decide(alert, {})[0].status == "skipped"
    # not allowlisted: acts
    assert policy.decide(make_alert(alert_id="a3"), {})[0].status == "pending"


def test_blast_radius_holds_after_n_per_window() -> None:
    policy = policy_with(
        "  - {name: q, actions: [quarantine_workload, notify]}\n",
        head="limits:\n  window_s: 300\n  max_actions: {quarantine_workload: 3, default: 10}\n",
    )
    state: dict[str, Any] = {}
    t0 = 1_700_000_000_000
    statuses = []
    for i in range(5):
        alert = make_alert(
            alert_id=f"a{i}",
            entities=[f"pod:ml-prod/p-{i}"],
            primary_entity=f"pod:ml-prod/p-{i}",
            last_seen=t0 + i * 1000,
        )
        actions = policy.decide(alert, state)
        statuses.append({a.action: a.status for a in actions})
        json.dumps(state)  # the caller persists it
    assert [s["quarantine_workload"] for s in statuses] == ["pending"] * 3 + ["held"] * 2
    assert all(s["notify"] == "pending" for s in statuses)  # its own budget (default 10)
    assert len(state["recent"]["quarantine_workload"]) <= 3  # bounded
    # once the window has passed (event time), the budget is back
    later = make_alert(
        alert_id="a-late", entities=["pod:ml-prod/late"], primary_entity="pod:ml-prod/late", last_seen=t0 + 301_000
    )
    held_reason = policy.decide(make_alert(alert_id="a5", last_seen=t0 + 5000), state)[0].reason
    assert "blast-radius" in held_reason
    assert policy.decide(later, state)[0].status == "pending"


def test_zero_limit_holds_everything() -> None:
    policy = policy_with("  - {name: q, actions: [revoke_api_key]}\n", head="limits: {max_actions: {default: 0}}\n")
    assert policy.decide(make_alert(entities=[KEY]), {})[0].status == "held"


def test_dry_run_global_and_per_rule() -> None:
    global_dry = policy_with(NOTIFY_ALL, head="dry_run: true\n")
    action = global_dry.decide(make_alert(), {})[0]
    assert (action.status, action.reason) == ("dry_run", "policy is dry_run")
    rule_dry = policy_with("  - {name: r, dry_run: true, actions: [quarantine_workload]}\n" + NOTIFY_ALL)
    by_rule = {a.rule: a.status for a in rule_dry.decide(make_alert(), {})}
    assert by_rule == {"r": "dry_run", "all": "pending"}


def test_dry_run_does_not_spend_the_budget() -> None:
    policy = policy_with(
        "  - {name: r, dry_run: true, actions: [quarantine_workload]}\n",
        head="limits: {max_actions: {quarantine_workload: 1}}\n",
    )
    state: dict[str, Any] = {}
    for i in range(3):
        alert = make_alert(alert_id=f"a{i}")
        assert policy.decide(alert, state)[0].status == "dry_run"


def test_approval_required() -> None:
    policy = policy_with("  - {name: r, approval_required: true, actions: [revoke_api_key]}\n")
    action = policy.decide(make_alert(entities=[KEY]), {})[0]
    assert action.status == "approval_required"
    assert "approval" in action.reason


# --- idempotence and ids -------------------------------------------------------------------------


def test_idempotent_across_alert_versions(example: Policy) -> None:
    state: dict[str, Any] = {}
    first = example.decide(make_alert(), state)
    assert len(first) == 2
    assert example.decide(make_alert(), state) == []
    assert example.decide(make_alert(version=2, last_seen=1_700_000_060_000, risk_score=95.0), state) == []
    # a later version naming a new key adds only the new action
    grown = make_alert(version=3, detectors=["model_server_shell", "stolen_api_key"], entities=[POD, KEY])
    assert [(a.action, a.target) for a in example.decide(grown, state)] == [("revoke_api_key", KEY)]
    # the state survives a JSON round trip (the caller persists it)
    state = json.loads(json.dumps(state))
    assert example.decide(grown, state) == []


def test_same_action_and_target_from_two_rules_is_decided_once() -> None:
    policy = policy_with(NOTIFY_ALL + "  - {name: again, actions: [notify]}\n")
    assert [a.rule for a in policy.decide(make_alert(), {})] == ["all"]


def test_decided_ids_are_a_bounded_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.containment.policy as module

    monkeypatch.setattr(module, "MAX_DECIDED", 3)
    policy = policy_with(NOTIFY_ALL)
    state: dict[str, Any] = {}
    for i in range(5):
        policy.decide(make_alert(alert_id=f"a{i}"), state)
    assert len(state["decided"]) == 3
    assert policy.decide(make_alert(alert_id="a4"), state) == []  # recent: remembered
    assert len(policy.decide(make_alert(alert_id="a0"), state)) == 1  # evicted: decided again


def test_action_ids_are_deterministic(example: Policy) -> None:
    one = example.decide(make_alert(), {})
    two = example.decide(make_alert(version=7), {})
    assert [a.action_id for a in one] == [a.action_id for a in two]
    assert one[0].action_id == stable_id("alert-1", "quarantine_workload", POD)
    assert one[1].action_id == stable_id("alert-1", "notify", POD)
    assert len({a.action_id for a in one}) == 2


def test_action_carries_alert_summary_fields(example: Policy) -> None:
    action = example.decide(make_alert(), {})[0]
    assert isinstance(action, Action)
    data = action.to_dict()
    assert data["alert_id"] == "alert-1"
    assert data["severity"] == "high"
    assert data["risk_score"] == 80.0
    assert data["summary"] == "shell in model server"
    assert data["detectors"] == ["model_server_shell"]
    assert data["evidence_event_ids"] == ["ev-1", "ev-2"]
    assert data["time_ms"] == 1_700_000_000_000
    assert data["rule"] == "quarantine-compromised-model-servers"
    json.dumps(data)


def test_decide_does_not_mutate_the_alert(example: Policy) -> None:
    alert = make_alert()
    before = alert.to_dict()
    example.decide(alert, {})
    assert alert.to_dict() == before


def test_default_policy_quarantines_simulated_compromises_by_ai_asset(tmp_path: Path) -> None:
    """Simulated compromised model servers, through the detect stage and correlation: the namespace-free
    default quarantines each, because the inventory knows them as AI assets."""
    import orjson

    from detectors.correlation import Correlator, anchor
    from schemas.findings import Finding
    from schemas.sources import SOURCES
    from streams import topics
    from streams.pipeline.detect import Detection
    from streams.simulator import SimConfig, Simulator, estate
    from tests.unit.pipeline_fakes import Out, event_message, memory_store

    settings = estate.apply(Settings(state_dir=tmp_path, sigma={"pack": False}))
    out = Out()
    detect = Detection(settings, out, **{n: memory_store(n) for n in ("states", "rekeyed", "assets", "models")})
    attacks = ("model_server_shell", "cryptominer", "weights_exfiltration")
    simulator = Simulator(SimConfig(seed=7, duration_s=60, rate=100, scenarios=attacks))
    detect.events_batch([event_message(SOURCES[r.source].normalize(r.record), offset=i)
                         for i, r in enumerate(simulator.records())])
    correlator, states, alerts = Correlator(settings.detection), {}, {}  # type: ignore[var-annotated]
    for sent in out.on(topics.FINDINGS):
        finding = Finding.from_dict(orjson.loads(sent["value"]))
        alert = correlator.add(finding, states.setdefault(anchor(finding), {}))
        if alert is not None:
            alerts[alert.alert_id] = alert
    shipped = load_policy(DEFAULT_POLICY)
    quarantined = {a.target for alert in alerts.values() for a in shipped.decide(alert, {})
                   if a.action == "quarantine_workload" and a.status == "pending"}
    attacked = {e for label in simulator.labels() for e in label.entities if e.startswith("pod:")}
    assert attacked and attacked <= quarantined
