"""Stolen API key (ATLAS AML.T0012; ATT&CK T1078.004, T1552): a key used from a new client IP
together with a new user agent or a volume jump.

Per key (gateway API keys; CloudTrail access keys, which the caller must repartition by
``apikey:<id>``), after a warm-up (``key_warmup_requests`` requests and ``key_warmup_s`` seconds of
event time since the key was first seen), an IP missing from the key's LRU of
``key_recent_ips`` recent client IPs is *new*, and so is a user agent missing from its LRU of
``key_recent_agents`` hashed agents. Fires when, within two windows of a new IP, the key also shows
a new user agent or a window with ``key_volume_factor`` x its EWMA requests (at least
``key_volume_min_requests``).

State per key (bounded, ~0.4 KiB): the two LRUs, counters, EWMA, the pending new IP.
"""

from __future__ import annotations

from typing import Any

from detectors.base import Detector, State, clean, h32, lru_add
from detectors.config import DetectionConfig
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding

MAX_COUNT = 1_000_000_000


class StolenAPIKey(Detector):
    id = "stolen_api_key"
    title = "API key used from a new client and location"
    maturity = "incubating"
    severity = "high"
    tactics = ("initial-access", "credential-access")
    atlas = ("AML.T0012",)
    attack = ("T1078.004", "T1552")
    classes = frozenset({API_ACTIVITY})
    sources = frozenset({"gateway", "cloudtrail"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self._agent: tuple[str, int] = ("", h32(""))

    def _agent_hash(self, agent: str) -> int:
        """``h32(agent)``, remembered for the last agent (a key's requests mostly come from one client)."""
        if self._agent[0] != agent:
            self._agent = (agent, h32(agent))
        return self._agent[1]

    def state_key(self, event: Event) -> str | None:
        if not event.api_key_id or not event.src_ip:
            return None
        return ent.apikey(event.api_key_id)

    def detect(self, event: Event, state: State) -> list[Finding]:
        if not event.api_key_id or not event.src_ip:
            return []
        c = self.config
        window = self.window(event.time_ms)
        if "t0" not in state:
            state.update(t0=event.time_ms, n=0, ips=[], uas=[], w=window, r=0, b=0.0, nw=0)
        if window > int(state["w"]):
            volume = float(state["r"])
            state["b"] = round(volume if state["nw"] == 0 else state["b"] + c.ewma_alpha * (volume - state["b"]), 3)
            state["nw"] = min(MAX_COUNT, int(state["nw"]) + 1)
            state["w"], state["r"] = window, 0
        state["r"] += 1
        warm = state["n"] >= c.key_warmup_requests and event.time_ms - int(state["t0"]) >= c.key_warmup_s * 1000
        state["n"] = min(MAX_COUNT, int(state["n"]) + 1)
        client_ip = clean(event.src_ip, 45)
        ip_new = lru_add(state["ips"], client_ip, c.key_recent_ips)
        user_agent = event.user_agent
        ua_new = lru_add(state["uas"], self._agent_hash(user_agent), c.key_recent_agents) if user_agent else False
        horizon = 2 * self.window_ms
        if warm and ip_new:
            state["ni"] = [client_ip, event.time_ms, clean(event.event_id, 64)]
        if warm and ua_new:
            state["nu"] = [clean(event.user_agent, 80), event.time_ms]
        pending = state.get("ni")
        if not pending or event.time_ms - int(pending[1]) > horizon:
            state.pop("ni", None)
            return []
        agent: list[Any] = state.get("nu") or ["", 0]
        new_agent = bool(agent[0]) and abs(event.time_ms - int(agent[1])) <= horizon
        requests, baseline = int(state["r"]), float(state["b"])
        jump = (
            int(state["nw"]) >= c.warmup_windows
            and requests >= c.key_volume_min_requests
            and requests > c.key_volume_factor * max(baseline, 1.0)
        )
        if not (new_agent or jump) or self.rate_limited(state, event.time_ms):
            return []
        ip, _, first_id = pending
        state.pop("ni", None)  # reported: the IP is in the LRU now, so only another new IP fires again
        usual = [i for i in state["ips"] if i != ip][-2:]
        why = []
        if new_agent:
            why.append(f"new user agent {agent[0]!r}")
        if jump:
            why.append(f"{requests} requests this window vs ~{baseline:.0f} usual")
        principal = f" (user {event.principal})" if event.principal else ""
        summary = (
            f"API key {event.api_key_id}{principal} used from new IP {ip} with {' and '.join(why)}"
            + (f"; usual IPs {', '.join(usual)}" if usual else "")
        )
        return [
            self.finding(
                event=event,
                entity_id=ent.apikey(event.api_key_id),
                discriminator=str(window),
                summary=summary,
                entities=[ent.ip(ip)],
                evidence=[str(first_id)],
                ai_asset=event.source != "cloudtrail",
                anomaly_score=0.9 if new_agent and jump else 0.75,
                attributes={"new_ip": str(ip), "phrase": f"was used from new IP {ip}"},
            )
        ]
