"""Crypto-mining in a workload (ATT&CK T1496.001), critical on GPU nodes.

Signals (any): a miner process (``miner_processes``: xmrig, ethminer, t-rex, nbminer, lolminer, ...);
``stratum+tcp://`` / ``stratum+ssl://`` in a command line; a renamed miner's command-line flags
(``Policy.miner_flags``: one of ``miner_strong_flags`` such as ``--donate-level`` or ``-a rx/0``, or
``miner_weak_flags_needed`` of ``miner_weak_flags``: a pool ``-o host:port``, a wallet ``-u``, ``-p x``,
CUDA / OpenCL switches, a binary started from ``scratch_dirs``); a DNS query (or a connect the agent
names, Falco's ``fd.sip.name``) for a mining pool
(``miner_domains``, or any host with "stratum" in it); a connect to an external address on a
mining-pool port (``miner_ports``: 3333, 4444, 5555, 7777, 14444, 45700); Falco's miner rules
(``miner_falco_rules``). Severity is critical when the host looks like a GPU node
(``gpu_host_patterns``), the agent or the inventory reports a GPU, else high. The finding is about an
AI asset when the workload is an AI workload (known to the inventory, or an AI runtime in its image),
whatever its node is called.

State per workload: the window of the last finding (one finding per window), ~10 bytes.
"""

from __future__ import annotations

from detectors.base import Detector, State, workload_name
from detectors.config import DetectionConfig
from schemas.envelope import DETECTION_FINDING, DNS_ACTIVITY, NETWORK_ACTIVITY, PROCESS_ACTIVITY, Event
from schemas.findings import Finding

STRATUM = ("stratum+tcp://", "stratum+ssl://", "stratum2+tcp://", "stratum+tls://")


class Cryptominer(Detector):
    id = "cryptominer"
    title = "Crypto-miner running in a workload"
    maturity = "stable"
    severity = "high"
    tactics = ("impact",)
    atlas = ()
    attack = ("T1496.001",)
    classes = frozenset({PROCESS_ACTIVITY, NETWORK_ACTIVITY, DNS_ACTIVITY, DETECTION_FINDING})
    sources = frozenset({"falco", "native"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self._memo: tuple[str, str] = ("", "")

    def signal(self, event: Event) -> str:
        """What makes the event a mining signal ('' if nothing)."""
        if self._memo[0] != event.event_id:
            self._memo = (event.event_id, self._signal(event))
        return self._memo[1]

    def _signal(self, event: Event) -> str:
        policy = self.policy
        if event.source == "falco" and event.rule in policy.miner_rules:
            return f"Falco: {event.rule}"
        cls = event.class_uid
        if cls == PROCESS_ACTIVITY:
            name = event.process_name.rsplit("/", 1)[-1].lower()
            if name in policy.miner_processes:
                return f"miner process {event.process_name}"
            cmd = event.process_cmdline.lower()
            if "stratum" in cmd:  # in every scheme
                for scheme in STRATUM:
                    if scheme in cmd:
                        start = cmd.index(scheme)
                        return f"stratum URL in command line ({event.process_cmdline[start:start + 80]})"
            flags = policy.miner_flags(event.process_cmdline, event.extra.get("exe", ""), event.extra.get("cwd", ""))
            if flags:
                return f"{flags} in the command line of {event.process_name or 'a process'}"
        elif cls == DNS_ACTIVITY:
            host = event.dst_host.lower().rstrip(".")
            if host and (policy.miner_domain(host) or "stratum" in host):
                return f"DNS query for mining pool {host}"
        elif cls == NETWORK_ACTIVITY:
            # a shell on 4444 is a reverse shell (model_server_shell reports it), not a miner
            shell = event.process_name.rsplit("/", 1)[-1] in policy.shells
            if event.dst_port in policy.miner_ports and not shell and event.dst_ip and policy.is_external(event.dst_ip):
                return f"connection to {event.dst_ip}:{event.dst_port} (mining-pool port)"
            host = event.dst_host  # named by the agent (Falco's fd.sip.name)
            if host and (policy.miner_domain(host) or "stratum" in host):
                return f"connection to mining pool {host}"
        return ""

    def state_key(self, event: Event) -> str | None:
        return event.entity_id if event.entity_id and self.signal(event) else None

    def detect(self, event: Event, state: State) -> list[Finding]:
        what = self.signal(event)
        if not what or not event.entity_id or self.rate_limited(state, event.time_ms):
            return []
        extra = event.extra
        gpu = (extra.get("gpu") == "true" or extra.get("ai_gpu") == "true"
               or (bool(event.host) and self.policy.is_gpu_host(event.host)))
        node = f"GPU node {event.host}" if gpu else f"node {event.host or '?'}"
        # an AI workload (known to the inventory, or running an AI runtime) is the asset worth protecting
        ai_workload = bool(extra.get("ai_asset")) or bool(self.policy.runtime_in(event.image))
        summary = f"Crypto-miner in {workload_name(event)} on {node}: {what}"
        return [
            self.finding(
                event=event,
                entity_id=event.entity_id,
                discriminator=str(self.window(event.time_ms)),
                summary=summary,
                severity="critical" if gpu else self.severity,
                ai_asset=gpu or ai_workload,
                attributes={
                    "signal": what,
                    "gpu": str(gpu).lower(),
                    "ai_workload": "true" if ai_workload else "false",
                    "phrase": f"ran a crypto-miner on {node}",
                },
            )
        ]
