"""Training-data poisoning and model-registry tampering (ATLAS AML.T0020, AML.T0010.003, AML.T0018).

* S3 (CloudTrail data events): a successful write (``data_write_operations``: PutObject,
  DeleteObject(s), CopyObject, ...) to a training bucket (``training_buckets``) or a training /
  artifact prefix (``training_prefixes``) by a writer that never wrote there before. Writers are
  identified by role (an assumed-role session counts as its role, so session names do not matter),
  except IAM Identity Center sessions (``AWSReservedSSO_*`` roles): a permission set is shared by many
  people, each session is its person.
  ``approved_data_writers`` never fire; writers seen during the bucket's first
  ``data_writer_learning_s`` of event time are learned silently. State key: ``s3:<bucket or
  prefix>`` (the caller repartitions these events by that key); the state is an LRU of 48-bit
  writer hashes (``max_writers_per_bucket``), the learning start and the reported writers.
* SageMaker: a model-registry write (``registry_operations``) by a principal not in
  ``approved_registry_principals``; failures are reported as attempts (medium). State key: the
  principal; one finding per window.
"""

from __future__ import annotations

import hashlib

from detectors.base import Detector, State, lru_add, short_principal
from detectors.policy import role_of
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, Event
from schemas.findings import Finding


def writer_hash(principal: str) -> int:
    """A stable 48-bit hash of a writer's identity (exact in JSON and JavaScript numbers)."""
    writer = principal if "/AWSReservedSSO_" in principal else role_of(principal)
    return int.from_bytes(hashlib.blake2b(writer.encode(), digest_size=6).digest(), "big")


class DataPoisoning(Detector):
    id = "data_poisoning"
    title = "Training data or model registry changed by an unexpected principal"
    maturity = "stable"
    severity = "high"
    tactics = ("persistence", "impact")
    atlas = ("AML.T0020", "AML.T0010.003", "AML.T0018")
    attack = ("T1565.001",)
    owasp_llm = ("LLM04:2025",)
    classes = frozenset({API_ACTIVITY})
    sources = frozenset({"cloudtrail"})
    description = __doc__ or ""

    def _s3_target(self, event: Event) -> str:
        if event.api_service != "s3" or event.api_operation not in self.policy.data_writes:
            return ""
        if event.api_status != "success" or not event.principal:
            return ""
        return self.policy.training_target(event.resource)

    def _registry(self, event: Event) -> bool:
        return (
            event.api_service == "sagemaker"
            and event.api_operation in self.policy.registry_ops
            and bool(event.principal)
            and not self.policy.registry_approved(event.principal)
        )

    def state_key(self, event: Event) -> str | None:
        target = self._s3_target(event)
        if target:
            return f"s3:{target}"
        if self._registry(event):
            return event.entity_id or ent.principal(event.principal)
        return None

    def detect(self, event: Event, state: State) -> list[Finding]:
        target = self._s3_target(event)
        if target:
            return self._s3(event, target, state)
        if self._registry(event):
            return self._registry_finding(event, state)
        return []

    def _s3(self, event: Event, target: str, state: State) -> list[Finding]:
        c = self.config
        if "t0" not in state:
            state["t0"] = event.time_ms
            state["wr"] = []
        writers: list[int] = state["wr"]
        marker = writer_hash(event.principal)
        new = lru_add(writers, marker, c.max_writers_per_bucket)
        if not new or self.policy.data_writer_approved(event.principal):
            return []
        if event.time_ms - int(state["t0"]) < c.data_writer_learning_s * 1000:
            return []
        who = short_principal(event.principal)
        src = f" from {event.src_ip}" if event.src_ip else ""
        summary = (
            f"{who}{src} {event.api_operation} s3://{event.resource}: first write to training data "
            f"{target} by this principal (not an approved writer)"
        )
        return [
            self.finding(
                event=event,
                entity_id=ent.principal(event.principal),
                discriminator=f"{target}:{marker}",
                summary=summary,
                ai_asset=True,
                attributes={"target": target, "phrase": f"wrote to training data s3://{target}"},
            )
        ]

    def _registry_finding(self, event: Event, state: State) -> list[Finding]:
        if self.rate_limited(state, event.time_ms):
            return []
        ok = event.api_status == "success"
        who = short_principal(event.principal)
        verb = "" if ok else f"tried ({event.api_status}) to "
        target = event.resource or event.extra.get("param.modelPackageGroupName", "") or "the model registry"
        summary = f"{who} {verb}{event.api_operation} on {target} (not an approved model-registry writer)"
        return [
            self.finding(
                event=event,
                entity_id=ent.principal(event.principal),
                discriminator=f"registry:{self.window(event.time_ms)}",
                summary=summary,
                severity=self.severity if ok else "medium",
                ai_asset=True,
                attributes={"operation": event.api_operation, "phrase": f"tampered with the model registry ({target})"},
            )
        ]
