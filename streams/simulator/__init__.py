"""A deterministic simulated organisation with labelled attacks: raw records in the vendors' formats.

Pure generation, no Kafka::

    sim = Simulator(SimConfig(seed=7, duration_s=60, rate=1000))
    for rec in sim.records():          # SimRecord(time_ms, source, record, attack), event-time order
        ...
    write_labels(sim.labels(), "labels.jsonl")

The world (see ``streams.simulator.world``): "Acme", one AWS account and two EKS clusters with
``ml-prod`` / ``inference`` / ``ml-staging`` model servers (vLLM, Triton, TGI, Ollama, llama.cpp,
Ray Serve) on ``gpu-node-N`` nodes, an ``ai-platform`` LiteLLM gateway (the only sanctioned path to
OpenAI / Anthropic), ``data-eng`` pipelines on S3, ``web``, ``marketing``, ``payments``,
``monitoring`` and ``ci``. Benign traffic mixes runtime 45% (native agent 40, Falco 5), cloud 25%
(CloudTrail 15, Kubernetes audit 10) and inference 30% (Bedrock invocation logs 7, gateway 23).
``SANCTIONED`` describes what is approved in that world so detectors can be configured to it.

``SimConfig(other_estate=True)`` is another organisation and another world per seed: every name
renamed (``streams.simulator.rename``) and the traffic varied (``streams.simulator.variation``): source
mix, per-key volumes, attack intensity and timing, attacks diluted in their target's usual traffic,
renamed miners, and every third seed a Falco-only estate (no native agent: no DNS events, no byte
counts; the attacks' syscalls arrive as the Falco alerts they raise). Without it, the familiar world.

Attacks (``ALL_SCENARIOS``; one function each in ``streams.simulator.scenarios``) are bursts of
records interleaved with benign traffic after a warm-up quarter of the run, tagged ``attack=<name>``
on their ``SimRecord``s and described by an ``AttackLabel`` (entities, times, ATLAS / ATT&CK ids).

Determinism: every draw comes from ``random.Random`` instances seeded from ``SimConfig.seed``
(world, attack plan and record stream each get their own), uuids included; nothing reads the clock.
UUIDs (event, request and audit ids) also depend on ``start_ms``: runs of one seed at different times
draw the same records with different ids, so they never fold into each other in ClickHouse.
Event times are evenly spaced, so every second of event time holds ``rate`` records (±1), and the
run holds exactly ``round(rate * duration_s)`` records.
"""

from __future__ import annotations

import calendar
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from infra.estate import load
from streams.simulator import formats as F
from streams.simulator.rename import Renaming
from streams.simulator.scenarios import (
    ALL_SCENARIOS,
    PATCHED_TAG,
    SCENARIOS,
    VULNERABLE_SERVERS,
    Build,
    Ctx,
    Plan,
    Step,
    falco_names,
)
from streams.simulator.variation import Variation
from streams.simulator.world import SANCTIONED, SOURCE_SHARES, Benign, World, falco_view

SOURCES: tuple[str, ...] = ("falco", "native", "cloudtrail", "k8s_audit", "bedrock", "gateway", "trivy")

# 2026-11-25T10:00:00Z
DEFAULT_START_MS = calendar.timegm((2026, 11, 25, 10, 0, 0, 0, 0, 0)) * 1000


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    duration_s: float = 60
    rate: float = 1000.0  # records per second of event time, all sources
    scenarios: tuple[str, ...] = ALL_SCENARIOS
    start_ms: int = DEFAULT_START_MS  # event time of the first record, epoch ms
    world_size: int = 200  # workloads; principals ~ world_size / 2, API keys ~ 1.5 * world_size
    instances: int = 0  # attack instances per scenario; 0 = 1, plus one per 10 minutes (max 3)
    other_estate: bool = False  # another organisation per seed: renamed (rename.py) and varied (variation.py)

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            msg = f"duration_s must be a positive number, got {self.duration_s!r}"
            raise ValueError(msg)
        if not (self.rate > 0 and math.isfinite(self.rate)):
            msg = f"rate must be a positive number, got {self.rate!r}"
            raise ValueError(msg)
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            msg = f"unknown scenario(s) {unknown}; known: {', '.join(ALL_SCENARIOS)}"
            raise ValueError(msg)

    @property
    def total(self) -> int:
        return round(self.rate * self.duration_s)


@dataclass(frozen=True, slots=True)
class SimRecord:
    time_ms: int
    source: str  # falco | native | cloudtrail | k8s_audit | bedrock | gateway
    record: dict[str, Any]
    attack: str | None = None  # scenario name, None for benign traffic


@dataclass(frozen=True)
class AttackLabel:
    scenario: str
    attack_id: str
    entities: list[str]  # every entity id involved, as the source parsers build them
    start_ms: int
    end_ms: int
    events: int
    description: str
    atlas: list[str] = field(default_factory=list)  # MITRE ATLAS technique ids
    attack: list[str] = field(default_factory=list)  # MITRE ATT&CK technique ids


class Simulator:
    """Plans the world and the attacks at construction; ``records()`` streams them (re-iterable)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config = config or SimConfig()
        seed = config.seed
        self.variation = Variation.for_seed(seed) if config.other_estate else Variation.familiar()
        self.world = World.build(random.Random(seed), config.world_size)  # noqa: S311
        if self.variation.key_skew != 1.0:
            for key in self.world.keys:
                key.weight **= self.variation.key_skew
        self._stream_seed = seed * 1_000_003 + 2
        self.total = config.total
        self.duration_ms = max(1, round(config.duration_s * 1000))
        self._slots: list[tuple[int, str, Build, str]] = []
        self._labels: list[AttackLabel] = []
        self._plan(F.RunRandom(seed * 1_000_003 + 1, F.id_salt(config.start_ms)))
        self.renaming = Renaming.for_seed(seed) if config.other_estate else None

    # --- planning
    def _instances(self) -> int:
        if self.config.instances > 0:
            return self.config.instances
        return min(3, 1 + int(self.config.duration_s // 600))

    def _plan(self, rng: random.Random) -> None:
        cfg = self.config
        ctx = Ctx(self.world, rng, cfg.start_ms, self.duration_ms, self.total, cfg.rate, vary=cfg.other_estate,
                  variation=self.variation)
        plans: list[tuple[Plan, str]] = []
        if "vulnerable_model_server" in cfg.scenarios:
            reservation = random.Random(cfg.seed * 7_919 + 101)  # noqa: S311 - a simulation, not a secret
            ctx.reserve(reservation, *VULNERABLE_SERVERS, self._instances(), PATCHED_TAG)
        for name in cfg.scenarios:
            for n in range(self._instances()):
                plan = SCENARIOS[name](ctx)
                if self.variation.falco_only:
                    plan.steps = falco_steps(plan.steps)
                plans.append((plan, f"{name}-{n + 1}-{rng.getrandbits(24):06x}"))
        steps = sum(len(p.steps) for p, _ in plans)
        if steps > self.total // 2:
            msg = (
                f"{self.total} records cannot hold {steps} attack records; raise rate or duration_s "
                "or choose fewer scenarios"
            )
            raise ValueError(msg)
        n, start, span = self.total, cfg.start_ms, self.duration_ms
        taken: dict[int, tuple[str, Build, str]] = {}
        for plan, attack_id in plans:
            times = []
            for desired, source, build in sorted(plan.steps, key=lambda s: s[0]):
                idx = min(n - 1, max(0, -((start - desired) * n // span)))  # first slot at or after desired
                slot = idx
                while slot < n and slot in taken:
                    slot += 1
                if slot >= n:  # ran off the end: take the nearest free slot before
                    slot = idx
                    while slot in taken:
                        slot -= 1
                taken[slot] = (source, build, plan.scenario)
                times.append(start + slot * span // n)
            first = min(times)
            self._labels.append(
                AttackLabel(
                    scenario=plan.scenario,
                    attack_id=attack_id,
                    entities=list(plan.entities),
                    start_ms=first
                    - first % 1000,  # second-precision sources (CloudTrail, Bedrock) floor to it
                    end_ms=max(times),
                    events=len(times),
                    description=plan.description,
                    atlas=list(plan.atlas),
                    attack=list(plan.attack),
                )
            )
        self._slots = sorted((i, *v) for i, v in taken.items())

    # --- output
    def labels(self) -> list[AttackLabel]:
        if self.renaming is None:
            return list(self._labels)
        rename = self.renaming.apply
        return [replace(label, entities=rename(label.entities), description=rename(label.description))
                for label in self._labels]

    def estate(self) -> dict[str, Any]:
        """The estate file (``detection`` section) describing this run's organisation."""
        from streams.simulator.estate import ESTATE_FILE

        data = {"detection": load(ESTATE_FILE).get("detection", {})}
        return data if self.renaming is None else self.renaming.apply(data)

    def records(self) -> Iterator[SimRecord]:
        rng = F.RunRandom(self._stream_seed, F.id_salt(self.config.start_ms))
        benign = Benign(self.world, rng, self.variation.shares).next
        n, start, span = self.total, self.config.start_ms, self.duration_ms
        slots = self._slots
        rename = self.renaming.apply if self.renaming is not None else None
        j = 0
        nxt = slots[0][0] if slots else -1
        for i in range(n):
            t = start + i * span // n
            if i == nxt:
                _, source, build, scenario = slots[j]
                j += 1
                nxt = slots[j][0] if j < len(slots) else -1
                record = build(rng, t)
                yield SimRecord(t, source, record if rename is None else rename(record), scenario)
            else:
                source, record = benign(t)
                yield SimRecord(t, source, record if rename is None else rename(record), None)


def falco_steps(steps: list[Step]) -> list[Step]:
    """A Falco-only estate's view of an attack: each native agent step becomes the Falco alert its
    syscall raises (``world.falco_view``); the steps Falco never reports (DNS queries, listens) go."""
    names = falco_names()
    out: list[Step] = []
    for desired, source, build in steps:
        if source == "falco":  # the scenario's own Falco alerts: the server named as Falco's DNS cache knows it
            out.append((desired, source, partial(_named, build, names)))
        elif source != "native":
            out.append((desired, source, build))
        elif falco_view(build(random.Random(0), desired), desired, names) is not None:  # noqa: S311 - a probe
            out.append((desired, "falco", partial(_as_falco, build, names)))
    return out


def _named(build: Build, names: dict[str, str], rng: random.Random, t: int) -> dict[str, Any]:
    record = build(rng, t)
    fields = record["output_fields"]
    if (name := names.get(fields.get("fd.sip", ""))) is not None:
        fields["fd.sip.name"] = name
    return record


def _as_falco(build: Build, names: dict[str, str], rng: random.Random, t: int) -> dict[str, Any]:
    record = falco_view(build(rng, t), t, names)
    if record is None:  # falco_steps kept only the steps Falco reports
        msg = "a Falco-only step built a record Falco does not report"
        raise ValueError(msg)
    return record


def write_labels(labels: list[AttackLabel], path: str | Path) -> None:
    """One ``AttackLabel`` per line, JSON (orjson's dataclass support)."""
    with Path(path).open("wb") as out:
        for label in labels:
            out.write(orjson.dumps(label))
            out.write(b"\n")


def read_labels(path: str | Path) -> list[AttackLabel]:
    with Path(path).open("rb") as src:
        return [AttackLabel(**orjson.loads(line)) for line in src if line.strip()]


__all__ = [
    "ALL_SCENARIOS",
    "DEFAULT_START_MS",
    "SANCTIONED",
    "SCENARIOS",
    "SOURCES",
    "SOURCE_SHARES",
    "AttackLabel",
    "SimConfig",
    "SimRecord",
    "Simulator",
    "Variation",
    "read_labels",
    "write_labels",
]
