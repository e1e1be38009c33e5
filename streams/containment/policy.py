"""The containment policy: which alerts trigger which response actions (pure logic, no I/O).

A YAML file maps alert conditions to actions. Everything is validated when the file is loaded;
any mistake raises :class:`PolicyError` naming the file, the line and the field path, e.g.
``policy.yaml:14: rules[1].actions[0]: unknown action 'quarantine'``.

Full example (``infra/containment-policy.yaml`` ships a default like it)::

    dry_run: false            # global: record every action as dry_run, send nothing
    allowlist:                # never act on these (fnmatch globs, case-insensitive)
      namespaces: [kube-system, monitoring]          # pod targets in these namespaces; container
                                                     # targets when the alert names such a namespace
      principals: ["arn:aws:iam::*:role/break-glass*"]   # principal targets (without "principal:")
      entities: []                                   # any target, as a full entity id ("apikey:key-*")
    limits:                   # blast radius: at most N actions per action type per window, then hold
      window_s: 300
      max_actions: {quarantine_workload: 3, revoke_api_key: 5, default: 10}
    rules:                    # every matching rule contributes its actions, in file order
      - name: quarantine-compromised-model-servers
        when:                 # every given condition must hold; omitted conditions always hold
          detectors: [model_server_shell, cryptominer, weights_exfiltration]   # any overlap
          min_severity: high  # info < low < medium < high < critical
          min_risk: 60        # alert risk_score >= 60
          namespaces: ["ml-*"]          # globs on the namespaces of the alert's pod/namespace entities
          ai_asset: true      # about an AI asset the inventory knows (model server, training runtime)
          maturity: [stable, incubating]
        actions: [quarantine_workload, notify]
        dry_run: false        # this rule only: record as dry_run
        approval_required: false   # this rule only: a human must approve before anything is sent
        approvers: 1               # with approval_required: distinct people who must approve
      - name: revoke-stolen-keys
        when: {detectors: [stolen_api_key, model_extraction, cost_harvesting], min_severity: high}
        actions: [revoke_api_key]

Actions and their targets (taken from the alert's entities; the primary entity is preferred when it
is of a suitable kind):

* ``quarantine_workload`` / ``block_egress``: the pod entity, else the container entity;
* ``revoke_api_key``: the ``apikey:`` entity;
* ``suspend_principal``: the ``principal:`` entity;
* ``notify``: the alert's primary entity.

An action with no suitable target is recorded as ``skipped`` with a reason.

:meth:`Policy.decide` turns one alert into :class:`Action` records. Statuses, checked in this order:

1. ``skipped``: the alert is sandbox maturity and the action is not ``notify`` (sandbox detectors
   never contain anything, whatever a rule says), or there is no target, or the target is
   allowlisted (``notify`` is never allowlisted: telling people is always allowed);
2. ``dry_run``: the policy or the rule is dry-run (does not use up the blast-radius budget);
3. ``approval_required``: the rule needs a human (does not use up the budget either);
4. ``held``: this would be the (N+1)th action of its type within ``limits.window_s`` of event time
   (``alert.last_seen``);
5. ``pending``: go ahead (the caller sends it).

``state`` is a small JSON-serializable dict the caller persists between calls (e.g. one Faust table
row): recent action times per type (bounded) and the ids of actions already decided (a bounded LRU).
Action ids are ``stable_id(alert_id, action, target)``, so deciding the same alert again, or a later
version of it, returns nothing new for an (action, target) already decided. A sandbox skip is the one
exception: it is remembered under its own key, so a later, more mature version of the alert can still act.

>>> policy = parse_policy('''
... rules:
...   - name: keys
...     when: {detectors: [stolen_api_key]}
...     actions: [revoke_api_key]
... ''')
>>> policy.rules[0].actions
('revoke_api_key',)
>>> parse_policy("rules: [{name: x, actions: [quarantine]}]", source="p.yaml")
Traceback (most recent call last):
...
streams.containment.policy.PolicyError: p.yaml:1: rules[0].actions[0]: unknown action 'quarantine'; known: \
quarantine_workload, block_egress, revoke_api_key, suspend_principal, notify
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from schemas import entities
from schemas.findings import SEVERITY_RANK, Alert, stable_id

#: action name -> entity kinds that can be its target, in order of preference (None: the primary entity)
ACTIONS: dict[str, tuple[str, ...] | None] = {
    "quarantine_workload": ("pod", "container"),
    "block_egress": ("pod", "container"),
    "revoke_api_key": ("apikey",),
    "suspend_principal": ("principal",),
    "notify": None,
}
STATUSES = ("pending", "dry_run", "held", "approval_required", "skipped")
MAX_DECIDED = 10_000  # action ids remembered per state for idempotence (LRU)


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file, the line and the field path."""


@functools.cache
def _known_detectors() -> frozenset[str]:
    # Imported lazily: the registry pulls in every detector, which the policy needs only to validate ids.
    from detectors.registry import DETECTORS

    return frozenset(DETECTORS)


def _check_action(name: str) -> str:
    if name not in ACTIONS:
        msg = f"unknown action {name!r}; known: {', '.join(ACTIONS)}"
        raise ValueError(msg)
    return name


def _check_limit_key(name: str) -> str:
    if name != "default" and name not in ACTIONS:
        msg = f"unknown action {name!r} in max_actions; known: {', '.join(ACTIONS)}, default"
        raise ValueError(msg)
    return name


def _check_detector(name: str) -> str:
    known = _known_detectors()
    if name not in known:
        msg = f"unknown detector {name!r}; known: {', '.join(sorted(known))}"
        raise ValueError(msg)
    return name


ActionName = Annotated[str, AfterValidator(_check_action)]
DetectorId = Annotated[str, AfterValidator(_check_detector)]
LimitKey = Annotated[str, AfterValidator(_check_limit_key)]
Severity = Literal["info", "low", "medium", "high", "critical"]
Maturity = Literal["stable", "incubating", "sandbox"]


def _glob(value: str, patterns: tuple[str, ...]) -> bool:
    low = value.lower()
    return any(fnmatch.fnmatchcase(low, pattern.lower()) for pattern in patterns)


def _namespaces_of(alert: Alert) -> list[str]:
    """Namespaces named by the alert's pod and namespace entities."""
    out: list[str] = []
    for entity in alert.entities:
        kind = entities.kind_of(entity)
        value = entity.split(":", 1)[1] if ":" in entity else ""
        if kind == "pod":
            ns = value.split("/", 1)[0]
        elif kind == "namespace":
            ns = value
        else:
            continue
        if ns and ns not in out:
            out.append(ns)
    return out


class Allowlist(BaseModel):
    """Targets never acted on (fnmatch globs, case-insensitive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: tuple[str, ...] = Field(
        (), description="Pod targets in these namespaces; container targets of alerts naming one of them."
    )
    principals: tuple[str, ...] = Field((), description="Principal targets (the ARN or user, without 'principal:').")
    entities: tuple[str, ...] = Field((), description="Any target, as a full entity id ('apikey:key-*').")


class Limits(BaseModel):
    """Blast radius: at most N actions of each type per event-time window, then hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: int = Field(300, ge=1, description="Window length in event-time seconds.")
    max_actions: dict[LimitKey, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"default": 10},
        description="Action name (or 'default') -> actions allowed per window; 0 holds every action of the type.",
    )

    def limit_for(self, action: str) -> int:
        return self.max_actions.get(action, self.max_actions.get("default", 10))


class When(BaseModel):
    """Conditions on an alert; every given condition must hold (an empty ``when`` matches every alert)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detectors: tuple[DetectorId, ...] = Field((), description="Any of these detectors contributed to the alert.")
    min_severity: Severity | None = Field(None, description="Alert severity at least this.")
    min_risk: float | None = Field(None, ge=0, le=100, description="Alert risk_score at least this.")
    namespaces: tuple[str, ...] = Field(
        (), description="Globs; one must match a namespace of the alert's pod/namespace entities."
    )
    maturity: tuple[Maturity, ...] = Field((), description="The alert's maturity is one of these.")
    ai_asset: bool | None = Field(
        None, strict=True, description="true: the alert is about an AI asset the inventory knows (a model server, "
        "a training runtime, a GPU workload), wherever it runs; false: about anything else."
    )

    def matches(self, alert: Alert) -> bool:
        if self.detectors and not set(self.detectors).intersection(alert.detectors):
            return False
        if self.min_severity is not None and SEVERITY_RANK.get(alert.severity, -1) < SEVERITY_RANK[self.min_severity]:
            return False
        if self.min_risk is not None and alert.risk_score < self.min_risk:
            return False
        if self.namespaces and not any(_glob(ns, self.namespaces) for ns in _namespaces_of(alert)):
            return False
        if self.ai_asset is not None and alert.ai_asset != self.ai_asset:
            return False
        return not (self.maturity and alert.maturity not in self.maturity)


class Rule(BaseModel):
    """A named rule: when an alert matches ``when``, take ``actions``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Unique rule name (recorded on every action).")
    when: When = Field(default_factory=When, description="Conditions on the alert.")
    actions: tuple[ActionName, ...] = Field(min_length=1, description="Actions to take, in order.")
    dry_run: bool = Field(False, strict=True, description="Record this rule's actions as dry_run.")
    approval_required: bool = Field(False, strict=True, description="A human must approve this rule's actions.")
    approvers: int = Field(1, ge=1, le=5, description="Distinct people who must approve (with approval_required).")


@dataclass(slots=True)
class Action:
    """One decided response action (sent by the caller only when ``status == 'pending'``)."""

    action_id: str
    alert_id: str
    action: str
    target: str
    rule: str
    status: str
    reason: str
    severity: str
    risk_score: float
    summary: str
    detectors: list[str] = field(default_factory=list)
    evidence_event_ids: list[str] = field(default_factory=list)
    time_ms: int = 0
    approvers: int = 1  # distinct approvals needed when status is approval_required

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Policy(BaseModel):
    """A whole containment policy file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dry_run: bool = Field(False, strict=True, description="Record every action as dry_run; send nothing.")
    allowlist: Allowlist = Field(default_factory=Allowlist, description="Targets never acted on.")
    limits: Limits = Field(default_factory=Limits, description="Blast-radius limits per action type.")
    rules: tuple[Rule, ...] = Field((), description="Rules, in order; every matching rule contributes.")

    # --- deciding ----------------------------------------------------------------------------------

    def decide(self, alert: Alert, state: dict[str, Any]) -> list[Action]:
        """The new actions for ``alert``; updates ``state`` (JSON-serializable, owned by the caller). A merged
        alert's last version decides nothing: the alert it joined carries its findings on."""
        if alert.status == "merged":
            return []
        decided: dict[str, int] = state.setdefault("decided", {})
        recent: dict[str, list[int]] = state.setdefault("recent", {})
        now = alert.last_seen
        out: list[Action] = []
        for rule in self.rules:
            if not rule.when.matches(alert):
                continue
            for name in rule.actions:
                target = _target(name, alert)
                action_id = stable_id(alert.alert_id, name, target)
                status, reason = self._status(name, target, rule, alert)
                # a sandbox skip may become a real action once the alert matures: remember it apart
                key = f"{action_id}:sandbox" if status == "skipped" and reason.startswith("sandbox") else action_id
                if key in decided:
                    decided[key] = decided.pop(key)  # refresh LRU position
                    continue
                if status == "pending":
                    status, reason = self._spend(name, now, recent)
                decided[key] = now
                while len(decided) > MAX_DECIDED:
                    del decided[next(iter(decided))]
                out.append(
                    Action(
                        action_id=action_id,
                        alert_id=alert.alert_id,
                        action=name,
                        target=target,
                        rule=rule.name,
                        status=status,
                        reason=reason,
                        severity=alert.severity,
                        risk_score=alert.risk_score,
                        summary=alert.summary,
                        detectors=list(alert.detectors),
                        evidence_event_ids=list(alert.evidence_event_ids),
                        time_ms=now,
                        approvers=rule.approvers,
                    )
                )
        return out

    def _status(self, name: str, target: str, rule: Rule, alert: Alert) -> tuple[str, str]:
        """Every status but ``held`` (which needs the budget): ``pending`` means go on to the limits."""
        if alert.maturity == "sandbox" and name != "notify":
            return "skipped", "sandbox-maturity alert: only notify is allowed"
        if not target:
            kinds = " or ".join(ACTIONS[name] or ("primary",))
            return "skipped", f"no {kinds} entity in the alert"
        if name != "notify":
            why = self._allowlisted(target, alert)
            if why:
                return "skipped", why
        if self.dry_run:
            return "dry_run", "policy is dry_run"
        if rule.dry_run:
            return "dry_run", f"rule {rule.name!r} is dry_run"
        if rule.approval_required:
            return "approval_required", f"rule {rule.name!r} requires approval"
        return "pending", f"rule {rule.name!r} matched"

    def _allowlisted(self, target: str, alert: Alert) -> str:
        allow = self.allowlist
        if allow.entities and _glob(target, allow.entities):
            return f"target {target} is allowlisted (entities)"
        kind = entities.kind_of(target)
        value = target.split(":", 1)[1]
        if kind == "principal" and allow.principals and _glob(value, allow.principals):
            return f"target {target} is allowlisted (principals)"
        if allow.namespaces:
            if kind == "pod":
                namespaces = [value.split("/", 1)[0]]
            elif kind in ("container", "namespace"):
                namespaces = _namespaces_of(alert)
            else:
                namespaces = []
            for ns in namespaces:
                if _glob(ns, allow.namespaces):
                    return f"namespace {ns} is allowlisted"
        return ""

    def spend(self, name: str, now: int, state: dict[str, Any]) -> tuple[str, str]:
        """An approved action's turn at the blast-radius budget: ``pending`` (go) or ``held``."""
        return self._spend(name, now, state.setdefault("recent", {}))

    def _spend(self, name: str, now: int, recent: dict[str, list[int]]) -> tuple[str, str]:
        """Use one unit of the action type's budget, or hold when the window's budget is spent."""
        window_ms = self.limits.window_s * 1000
        limit = self.limits.limit_for(name)
        times = recent.get(name, [])
        newest = max([now, *times])
        times = sorted(t for t in times if t > newest - window_ms)  # prune what no window can count
        in_window = sum(1 for t in times if abs(t - now) < window_ms)
        if in_window >= limit:
            recent[name] = times[-max(limit, 1) :]
            msg = f"blast-radius limit: {limit} {name} per {self.limits.window_s}s already reached"
            return "held", msg
        times.append(now)
        times.sort()
        recent[name] = times[-max(limit, 1) :]
        return "pending", f"within limit ({in_window + 1}/{limit} {name} per {self.limits.window_s}s)"


def _target(name: str, alert: Alert) -> str:
    """The entity ``name`` acts on, or '' when the alert has none of a suitable kind."""
    kinds = ACTIONS[name]
    if kinds is None:
        return alert.primary_entity
    for kind in kinds:
        if entities.kind_of(alert.primary_entity) == kind:
            return alert.primary_entity
        for entity in alert.entities:
            if entities.kind_of(entity) == kind:
                return entity
    return ""


# --- loading -----------------------------------------------------------------------------------------


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file (raises :class:`PolicyError`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{path}: cannot read policy: {exc}"
        raise PolicyError(msg) from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Validate a policy from YAML text; ``source`` names it in error messages."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        msg = f"{source}:{line}: invalid YAML: {exc.problem or exc}"
        raise PolicyError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{source}:1: invalid YAML: {exc}"
        raise PolicyError(msg) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        msg = f"{source}:1: <root>: the policy must be a mapping, not {type(data).__name__}"
        raise PolicyError(msg)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = tuple(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        msg = f"{source}:{_line_of(root, loc)}: {_path_text(loc)}: {message}"
        raise PolicyError(msg) from None
    seen: set[str] = set()
    for index, rule in enumerate(policy.rules):
        if rule.name in seen:
            loc = ("rules", index, "name")
            msg = f"{source}:{_line_of(root, loc)}: {_path_text(loc)}: duplicate rule name {rule.name!r}"
            raise PolicyError(msg)
        seen.add(rule.name)
    return policy


def _path_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """1-based line of the deepest YAML node ``loc`` reaches (an unknown key: the key itself)."""
    if root is None:
        return 1
    node: yaml.Node = root
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    # the last step names a key: its line (a block value starts on a later one)
                    node = key if depth == len(loc) - 1 else value
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            break
    return int(node.start_mark.line) + 1
