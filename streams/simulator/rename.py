"""Another organisation per seed: the simulator's estate names (account id, organisation, namespaces,
clusters, role names, SSO role hashes, the admins) renamed consistently in every record, label and
the estate file, so detection is scored on an estate it was not tuned on.

A name is replaced only as a whole token (not inside a longer word or a dashed name: the namespace
``inference`` is renamed, the image ``text-generation-inference`` is not). Generic names are kept
(``kube-system``, ``monitoring``, ``web``, ``ci``): every estate has them, and they are too short to
rename safely inside free text.

>>> r = Renaming.for_seed(3)
>>> r.apply("pod:ml-prod/vllm-0") != "pod:ml-prod/vllm-0", r.apply("text-generation-inference")
(True, 'text-generation-inference')
>>> r.apply({"arn": "arn:aws:iam::418295730164:role/x"})["arn"].count("418295730164")
0
"""

from __future__ import annotations

import random
import re
from typing import Any

from streams.simulator import world

_ORGS = ("globex", "initech", "hooli", "vandelay", "soylent", "wonka", "tyrell", "cyberdyne", "stark", "wayne",
         "umbrella", "oscorp", "aperture", "massive", "dunder", "prestige", "gringotts", "nakatomi")
_TEAMS = ("atlas", "orion", "nova", "lyra", "vega", "helix", "zephyr", "quartz", "ember", "tundra", "cobalt",
          "juniper", "sable", "falcon", "pine", "delta")
_SUFFIX = {
    "ml-prod": ("prod", "live", "main"),
    "ml-staging": ("stg", "preprod", "qa"),
    "inference": ("serving", "predict", "endpoints"),
    "ai-platform": ("genai", "ai-gw", "copilot"),
    "data-eng": ("data", "etl", "pipelines"),
    "marketing": ("growth", "campaigns", "brand"),
    "payments": ("billing", "checkout", "ledger"),
}
_REGIONS = ("use2", "usw2", "euw1", "euc1", "apse1", "aps1")
_FIRST = ("amara", "bruno", "chen", "dalia", "emeka", "freya", "goran", "hana", "ivan", "jia", "kofi", "lena")
_LAST = ("okoye", "silva", "novak", "haddad", "tanaka", "berg", "moreau", "kowalski", "reyes", "lindqvist")


def _roles() -> list[str]:
    return sorted({role for role, *_ in world.AWS_SERVICE_ROLES} - {"security-audit", "ci-deploy"})


class Renaming:
    """Old name -> new name, applied to strings, and to dicts / lists of them, in one regex pass."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = dict(names)
        alternation = "|".join(re.escape(k) for k in sorted(self.names, key=len, reverse=True))
        # a whole token: not inside a longer word or dashed name (underscores separate: SSO hashes, log names)
        self._regex = re.compile(rf"(?<![A-Za-z0-9-])(?:{alternation})(?![A-Za-z0-9])")

    @classmethod
    def for_seed(cls, seed: int) -> Renaming:
        rng = random.Random(seed * 1_000_003 + 3)  # noqa: S311 - a simulation, not a secret
        org = rng.choice(_ORGS)
        teams = rng.sample(_TEAMS, len(_SUFFIX))
        names = {world.ACCOUNT_ID: f"{rng.randrange(10**11, 10**12)}", "acme": org}
        for (old, suffixes), team in zip(_SUFFIX.items(), teams, strict=True):
            names[old] = f"{team}-{rng.choice(suffixes)}"
        regions = rng.sample(_REGIONS, 2)
        names["prod-use1"], names["staging-use1"] = f"prod-{regions[0]}", f"nonprod-{regions[1]}"
        for role in _roles():
            names[role] = f"{org}-{role}" if rng.random() < 0.5 else role.replace("-", "_") + f"-{rng.randrange(100)}"
        for sso in world._SSO_HASH.values():  # noqa: SLF001 - the world's own fixed hashes
            names[sso] = f"{rng.getrandbits(64):016x}"
        people = [f"{first}.{last}" for first in _FIRST for last in _LAST]
        for person, new in zip((*world.MLOPS_ADMINS, *world.SECURITY_ADMINS), rng.sample(people, 3), strict=True):
            names[person] = new
        return cls(names)

    def apply(self, value: Any) -> Any:
        """``value`` with every name renamed (strings, and the strings inside dicts, lists and tuples)."""
        if isinstance(value, str):
            return self._regex.sub(self._sub, value) if value else value
        if isinstance(value, dict):
            return {self.apply(k): self.apply(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.apply(v) for v in value)
        return value

    def _sub(self, match: re.Match[str]) -> str:
        return self.names[match.group(0)]
