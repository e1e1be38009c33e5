"""Unsanctioned AI workload: an AI runtime or model weights in a namespace / image that is not approved.

Evidence of an AI workload: an AI runtime token (``ai_runtimes``: torch, transformers, vllm,
tritonserver, text-generation-inference, ollama, llama.cpp / llama-server, ray, ...) in the image
name, in an executed process's name or command line, or a model weights file opened
(``model_file_extensions``; ambiguous ones such as ``.bin`` only under a model directory). It is
sanctioned when the namespace is in ``approved_namespaces`` and the image starts with one of
``approved_images`` (an empty image list means the namespace alone decides).

Also reported at deploy time: a Kubernetes audit create / update of a workload object (Pod,
Deployment, StatefulSet, ...) whose images carry an AI runtime, into a namespace that is not approved.

With no ``approved_namespaces`` configured (a fresh estate) it stays silent: nothing is sanctioned yet,
so every model server would be "unsanctioned" and the SOC would learn nothing from one alert per
workload. The inventory still lists every AI workload (``aiwarden inventory``) for the operator to
write the allowlist from.

Fires once per workload (container; for deploys, once per object): the state is a seen flag. State
keys: the event's ``entity_id`` for runtime events; ``k8s:<resource>`` for deploys (the caller
repartitions those audit events, which are keyed by principal, by that key).
"""

from __future__ import annotations

from detectors.base import Detector, State, workload_name
from detectors.config import DetectionConfig
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, DNS_ACTIVITY, FILE_ACTIVITY, NETWORK_ACTIVITY, PROCESS_ACTIVITY, Event
from schemas.findings import Finding

WORKLOAD_RESOURCES = ("pods/", "deployments/", "statefulsets/", "daemonsets/", "replicasets/", "jobs/", "cronjobs/")


class UnsanctionedAIWorkload(Detector):
    id = "unsanctioned_ai_workload"
    title = "AI workload running outside approved namespaces / images"
    maturity = "stable"
    severity = "medium"
    tactics = ("execution",)
    atlas = ("AML.T0011",)
    attack = ("T1610",)
    classes = frozenset({PROCESS_ACTIVITY, FILE_ACTIVITY, NETWORK_ACTIVITY, DNS_ACTIVITY, API_ACTIVITY})
    sources = frozenset({"falco", "native", "k8s_audit"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self._memo: tuple[str, tuple[str, str]] = ("", ("", ""))

    def _evidence(self, event: Event) -> tuple[str, str]:
        """``(kind, detail)`` of AI evidence in an unsanctioned workload, ``("", "")`` if none."""
        if self._memo[0] == event.event_id:
            return self._memo[1]
        found = self._find(event)
        self._memo = (event.event_id, found)
        return found

    def _find(self, event: Event) -> tuple[str, str]:
        policy = self.policy
        if not policy.approved_namespaces:
            return "", ""
        if event.source == "k8s_audit":
            if event.activity not in ("create", "update") or not event.resource.startswith(WORKLOAD_RESOURCES):
                return "", ""
            images = event.extra.get("images", event.image)
            if not images or event.namespace in policy.approved_namespaces:
                return "", ""
            for image in images.split(","):
                runtime = policy.runtime_in(image)
                if runtime:
                    return "deploy", f"{runtime} (image {image})"
            return "", ""
        if not event.entity_id or policy.workload_sanctioned(event.namespace, event.image):
            return "", ""
        runtime = policy.runtime_in(event.image)
        if runtime:
            return "image", f"{runtime} (image {event.image})"
        if event.class_uid == PROCESS_ACTIVITY:
            runtime = policy.runtime_in(event.process_name) or policy.runtime_in(event.process_cmdline[:512])
            if runtime:
                return "process", f"{runtime} (process {event.process_name})"
        elif event.class_uid == FILE_ACTIVITY and event.file_path and policy.is_model_file(event.file_path):
            return "model_file", f"model weights {event.file_path}"
        return "", ""

    def state_key(self, event: Event) -> str | None:
        kind, _ = self._evidence(event)
        if not kind:
            return None
        return f"k8s:{event.resource}" if kind == "deploy" else event.entity_id

    def detect(self, event: Event, state: State) -> list[Finding]:
        kind, detail = self._evidence(event)
        if not kind or state.get("seen"):
            return []
        state["seen"] = 1
        ns = event.namespace or "(none)"
        approved_ns = event.namespace in self.policy.approved_namespaces
        why = "image not approved" if approved_ns else f"namespace {ns} not approved for AI"
        if kind == "deploy":
            who = event.principal or "unknown user"
            summary = f"{who} deployed AI workload {event.resource} running {detail}: {why}"
            return [
                self.finding(
                    event=event,
                    entity_id=ent.principal(event.principal) if event.principal else event.entity_id,
                    discriminator=event.resource,
                    summary=summary,
                    ai_asset=True,
                    attributes={"evidence": kind, "phrase": f"deployed unsanctioned AI workload {event.resource}"},
                )
            ]
        summary = f"Unsanctioned AI workload {workload_name(event)} on {event.host or 'unknown host'}: {detail}; {why}"
        gpu = event.extra.get("gpu") == "true" or self.policy.is_gpu_host(event.host)
        return [
            self.finding(
                event=event,
                entity_id=event.entity_id,
                discriminator=event.entity_id,
                summary=summary + (" (GPU node)" if gpu else ""),
                ai_asset=True,
                attributes={
                    "evidence": kind,
                    "ai_workload": "true",
                    "phrase": f"ran an unsanctioned AI workload ({detail})",
                },
            )
        ]
