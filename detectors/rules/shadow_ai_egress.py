"""Shadow AI egress: a workload resolves or connects to an AI API its namespace is not sanctioned for.

Condition: a DNS query (or a connect that names its host) from a container / pod for a host in
``ai_api_hosts``, when ``sanctioned_ai_egress`` does not allow that host for the workload's
namespace (key ``*`` applies to every namespace). A connect is named by the agent itself (Falco's
``fd.sip.name`` / ``fd.rip.name``, a native agent's ``network.dst_host``), so a stock Falco without DNS
events is enough; a DNS query names it too, and the finding's entities include the resolved IPs.

State per workload: the window of the last finding (rate limit), ~10 bytes.
"""

from __future__ import annotations

from detectors.base import Detector, State, workload_name
from schemas.envelope import DNS_ACTIVITY, NETWORK_ACTIVITY, Event
from schemas.findings import Finding


class ShadowAIEgress(Detector):
    id = "shadow_ai_egress"
    title = "Unsanctioned egress to an external AI API"
    maturity = "stable"
    severity = "medium"
    tactics = ("exfiltration",)
    atlas = ("AML.T0025",)
    attack = ("T1567", "T1071.001")
    owasp_llm = ("LLM02:2025",)
    classes = frozenset({DNS_ACTIVITY, NETWORK_ACTIVITY})
    sources = frozenset({"falco", "native"})
    description = __doc__ or ""

    def _host(self, event: Event) -> str:
        host = event.dst_host.rstrip(".").lower()
        if not host or not self.policy.is_ai_host(host):
            return ""
        if self.policy.egress_sanctioned(event.namespace, host):
            return ""
        return host

    def state_key(self, event: Event) -> str | None:
        if not event.dst_host or not event.entity_id:
            return None
        return event.entity_id if self._host(event) else None

    def detect(self, event: Event, state: State) -> list[Finding]:
        host = self._host(event)
        if not host or not event.entity_id or self.rate_limited(state, event.time_ms):
            return []
        where = f"namespace {event.namespace}" if event.namespace else "a host process outside Kubernetes"
        proc = f" ({event.process_name})" if event.process_name else ""
        summary = (
            f"Workload {workload_name(event)}{proc} contacted AI API {host}, which is not sanctioned for {where}"
        )
        return [
            self.finding(
                event=event,
                entity_id=event.entity_id,
                discriminator=str(self.window(event.time_ms)),
                summary=summary,
                ai_asset=True,
                attributes={"ai_host": host, "phrase": f"contacted unsanctioned AI API {host}"},
            )
        ]
