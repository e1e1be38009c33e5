"""Model weights exfiltration (ATLAS AML.T0035, AML.T0025; ATT&CK T1005, T1048).

In one workload: a weights file opened (``model_file_extensions``) by a process that is not a model
server (``Policy.is_serving``: a serving process, or an interpreter whose command line names a
server), followed within ``exfil_window_s`` by uploads to external (non-``internal_cidrs``)
addresses the workload had not contacted before, totalling ``exfil_bytes`` or more. Where the agent
reports no byte count (Falco's connect events never carry one), the sequence itself is the evidence:
after the weights read, an upload tool (``upload_tools``) connecting to a new external address, or any
process doing so when the reader was an archiver / copy tool (``archive_tools``), or the reading
process itself doing so (a script that reads the weights and puts them somewhere).

State per workload (bounded, ~0.5 KiB): an LRU of 16 hashed external destinations (what "seen
before" means), the last non-serving weights read (time, event id, file name, process) and the
bytes sent to at most 4 new destinations since then.
"""

from __future__ import annotations

from typing import Any

from detectors.base import Detector, State, clean, h32, human_bytes, lru_add, workload_name
from schemas.envelope import FILE_ACTIVITY, NETWORK_ACTIVITY, Event
from schemas.findings import Finding

DESTINATIONS_KEPT = 16
PENDING_KEPT = 4


class WeightsExfiltration(Detector):
    id = "weights_exfiltration"
    title = "Model weights read by a non-serving process, then uploaded to a new external address"
    maturity = "incubating"
    severity = "critical"
    tactics = ("collection", "exfiltration")
    atlas = ("AML.T0035", "AML.T0025")
    attack = ("T1005", "T1048")
    classes = frozenset({FILE_ACTIVITY, NETWORK_ACTIVITY})
    sources = frozenset({"falco", "native"})
    description = __doc__ or ""

    def _weights_read(self, event: Event) -> bool:
        return (
            event.class_uid == FILE_ACTIVITY
            and bool(event.file_path)
            and self.policy.is_model_file(event.file_path)
            and not self.policy.is_serving(event.process_name, event.process_cmdline)
        )

    def _upload(self, event: Event) -> bool:
        return (
            event.class_uid == NETWORK_ACTIVITY
            and event.activity in ("network_connect", "network_send")
            and bool(event.dst_ip)
            and self.policy.is_external(event.dst_ip)
        )

    def state_key(self, event: Event) -> str | None:
        if not event.entity_id:
            return None
        return event.entity_id if self._weights_read(event) or self._upload(event) else None

    def detect(self, event: Event, state: State) -> list[Finding]:
        if not event.entity_id:
            return []
        if self._weights_read(event):
            name = clean(event.file_path.rsplit("/", 1)[-1], 64)
            reads = int(state["rd"][4]) + 1 if "rd" in state else 1
            proc = clean(event.process_name, 32)
            state["rd"] = [event.time_ms, clean(event.event_id, 64), name, proc, min(reads, 9999)]
            state["pd"] = {}
            return []
        if not self._upload(event):
            return []
        dests: list[int] = state.setdefault("ds", [])
        new = lru_add(dests, h32(event.dst_ip), DESTINATIONS_KEPT)
        read = state.get("rd")
        if not read or not 0 <= event.time_ms - int(read[0]) <= self.config.exfil_window_s * 1000:
            return []
        if event.bytes_out == 0:  # no byte count (Falco never reports one): the sequence is the evidence
            return self._sequence(event, state, read, new)
        pending: dict[str, int] = state.setdefault("pd", {})
        if new:
            if len(pending) >= PENDING_KEPT:  # keys are IP addresses (the parsers canonicalize them)
                del pending[min(pending, key=lambda ip: pending[ip])]
            pending[event.dst_ip] = 0
        elif event.dst_ip not in pending:
            return []
        pending[event.dst_ip] += event.bytes_out
        sent = pending[event.dst_ip]
        if sent < self.config.exfil_bytes or self.rate_limited(state, event.time_ms):
            return []
        return self._report(event, read, f"{event.process_name or 'a process'} sent {human_bytes(sent)} to",
                            "", min(1.0, sent / (10 * self.config.exfil_bytes)),
                            {"bytes": str(sent), "phrase": f"read model weights and sent {human_bytes(sent)} to "
                             f"{event.dst_ip}"})

    def _report(self, event: Event, read: list[Any], what: str, note: str, score: float,
                attributes: dict[str, str]) -> list[Finding]:
        """The finding: ``read`` (the weights read) then ``what`` happened towards the event's destination."""
        read_time, read_id, name, proc, reads = read
        port = f":{event.dst_port}" if event.dst_port else ""
        files = f"{reads} weight files (last {name})" if int(reads) > 1 else f"weights file {name}"
        where = event.dst_host or event.dst_ip
        summary = (
            f"Workload {workload_name(event)}: {proc} (not the model server) read {files}, then {what} new external "
            f"{where}{port} {(event.time_ms - int(read_time)) / 1000:.0f}s later{note}"
        )
        return [
            self.finding(
                event=event,
                entity_id=event.entity_id,
                discriminator=f"{self.window(event.time_ms)}:{event.dst_ip}",
                summary=summary,
                evidence=[str(read_id)],
                ai_asset=True,
                anomaly_score=score,
                attributes={"destination": event.dst_ip, "ai_workload": "true", **attributes},
            )
        ]

    def _sequence(self, event: Event, state: State, read: list[Any], new: bool) -> list[Finding]:
        """Weights read by a non-serving process, then (no bytes known) an upload tool, anything after an
        archiver / copy tool read them, or the reader itself, connecting to a new external address."""
        proc = read[3]
        tool = event.process_name.rsplit("/", 1)[-1].lower()
        uploader = tool in self.policy.upload_tools
        packed = str(proc).lower() in self.policy.archive_tools
        itself = bool(tool) and tool == str(proc).rsplit("/", 1)[-1].lower()
        if not new or not (uploader or packed or itself) or self.rate_limited(state, event.time_ms):
            return []
        how = f"upload tool {tool}" if uploader else (event.process_name or "a process")
        return self._report(event, read, f"{how} connected to", " (no byte count reported)",
                            0.5 if uploader and packed else 0.3,
                            {"bytes": "unknown", "destination_host": event.dst_host,
                             "uploader": tool if uploader else "", "reader": str(proc),
                             "phrase": f"read model weights, then {how} connected to new external "
                             f"{event.dst_host or event.dst_ip}"})
