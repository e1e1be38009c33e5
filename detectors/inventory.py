"""The AI inventory (AIBOM): which AI workloads, models, API keys and cloud AI services exist, who uses
them, whether they are sanctioned and exposed. Pure logic over per-asset state, like the detectors.

The caller keeps one state dict per asset (a Faust table keyed by asset id)::

    inventory = Inventory(config)
    for asset_id in inventory.assets(event):          # 0..3 assets per event
        state = table[asset_id]                       # {} for a new asset
        changes = inventory.observe(event, state, asset_id)
        table[asset_id] = state
        for change in changes: ...                    # -> aiwarden.inventory / ClickHouse

Assets and where they come from:

* ``workload`` (``pod:ns/name``, else ``container:id``): a runtime event showing AI: an AI runtime
  in the image / process / command line, a model file opened (the model joins the workload's
  ``models``), a GPU device opened (``/dev/nvidia*``) or the agent's gpu flag. Events without AI
  evidence do not touch the inventory.
* ``workload`` (``service:ns/name``): a Kubernetes Service / Ingress fronting a model server (model
  port or name hint); ``public_exposure`` follows its type (LoadBalancer / NodePort / Ingress).
* ``model`` (``model:<id>``): models invoked through Bedrock, SageMaker or the gateway, with the
  principals / keys that invoke them.
* ``api_key`` (``apikey:<id>``): gateway keys, with their users and the models they call.
* ``cloud_service`` (``service:aws/<service>``): cloud AI services used (``ai_cloud_services``), with
  their callers.

A change record (``InventoryChange``) is emitted only when something new is learned: first sight,
a new runtime / model / principal while the item's list has room, an exposure or sanctioned-status
change, GPU access. ``last_seen`` is refreshed in the state at most once per window and never emits
a change, so the steady state costs no writes downstream. Lists keep the first
``inventory_max_list`` values (no LRU churn, so a popular model does not re-announce callers); every
distinct caller is still counted in a 48-register linear-counting bitmap (``callers``). State per
asset stays under 2 KiB (``STATE_BOUND_BYTES``).

``streams.aibom.to_cyclonedx(items)`` renders items as a CycloneDX 1.6 BOM.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from detectors.base import State, clean, h32
from detectors.config import DetectionConfig
from detectors.policy import Policy
from detectors.text import bitmap_add, bitmap_estimate
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, FILE_ACTIVITY, PROCESS_ACTIVITY, Event
from schemas.findings import stable_id

KINDS = ("workload", "model", "cloud_service", "api_key")
RUNTIME_SOURCES = frozenset({"falco", "native"})
INFERENCE_SOURCES = frozenset({"bedrock", "gateway"})
NAME_CHARS = 80
_SHARD = re.compile(
    r"^(model|pytorch_model|consolidated|diffusion_pytorch_model|tf_model|flax_model|weights)([-_.].*)?$"
)
_HEXISH = re.compile(r"^[0-9a-f]{16,}$")
_GENERIC_DIRS = frozenset({"models", "model", "data", "mnt", "weights", "checkpoints", "snapshots", "blobs", ""})


@dataclass(slots=True)
class InventoryItem:
    """One AI asset as the inventory knows it."""

    asset_id: str
    kind: str  # workload | model | cloud_service | api_key
    name: str
    namespace: str = ""
    image: str = ""
    runtimes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    first_seen: int = 0
    last_seen: int = 0
    sanctioned: bool = False
    public_exposure: bool = False
    principals: list[str] = field(default_factory=list)  # owners / callers (the first few)
    gpu: bool = False
    callers: int = 0  # distinct callers seen (linear-counting estimate, exact while small)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class InventoryChange:
    """Something new learned about an asset (``change``: discovered | runtime | model | principal |
    exposure | sanctioned | gpu), with the item as it is after the change."""

    change_id: str
    asset_id: str
    change: str
    detail: str
    time_ms: int
    item: InventoryItem

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_name_from_path(path: str) -> str:
    """A readable model name from a weights path.

    >>> model_name_from_path("/models/meta-llama/Llama-3.1-8B-Instruct/model-00001-of-00004.safetensors")
    'meta-llama/Llama-3.1-8B-Instruct'
    >>> model_name_from_path("/data/models--mistralai--Mistral-7B-v0.3/snapshots/e0bc86c2/model.safetensors")
    'mistralai/Mistral-7B-v0.3'
    >>> model_name_from_path("/models/qwen2.5-7b-instruct-q4_k_m.gguf")
    'qwen2.5-7b-instruct-q4_k_m'
    >>> model_name_from_path("/models/bge-reranker-large/1/model.safetensors")
    'bge-reranker-large'
    """
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part.startswith("models--"):
            return part[len("models--") :].replace("--", "/")[:NAME_CHARS]
    if not parts:
        return ""
    file_name = parts[-1]
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    if "/.ollama/models/blobs/" in path:
        return f"ollama:{stem[:19]}"
    if not _SHARD.match(stem):
        return stem[:NAME_CHARS]
    dirs = [d for d in parts[:-1] if not d.isdigit() and not _HEXISH.match(d)]
    meaningful = [d for d in dirs if d.lower() not in _GENERIC_DIRS]
    if not meaningful:
        return stem[:NAME_CHARS]
    return "/".join(meaningful[-2:])[:NAME_CHARS]


class Inventory:
    """``assets(event)`` and ``observe(event, state, asset_id)`` over per-asset state."""

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config
        self.policy = Policy.of(config)
        self.window_ms = config.window_ms
        self.max_list = config.inventory_max_list
        # ``assets`` finds a runtime event's AI evidence and ``observe`` (called next, for the same
        # event) needs it again: the last answer, for that event object only
        self._evidence: tuple[Event | None, tuple[str, str, bool]] = (None, ("", "", False))

    # --- which assets an event is about ----------------------------------------------------------
    def _ai_evidence(self, event: Event) -> tuple[str, str, bool]:
        """``(runtime, model, gpu)`` shown by a runtime event."""
        last, found = self._evidence
        if last is event:
            return found
        found = self._find_evidence(event)
        self._evidence = (event, found)
        return found

    def _find_evidence(self, event: Event) -> tuple[str, str, bool]:
        policy = self.policy
        runtime = policy.runtime_in(event.image)
        model = ""
        gpu = event.extra.get("gpu") == "true"
        if event.class_uid == PROCESS_ACTIVITY and not runtime:
            runtime = policy.runtime_in(event.process_name) or policy.runtime_in(event.process_cmdline[:512])
        elif event.class_uid == FILE_ACTIVITY and event.file_path:
            if policy.is_model_file(event.file_path):
                model = model_name_from_path(event.file_path)
            elif event.file_path.startswith(policy.gpu_devices):
                gpu = True
        return runtime, model, gpu

    def _service(self, event: Event) -> str:
        """``service:ns/name`` for a k8s Service / Ingress that fronts a model server, else ''."""
        if event.source != "k8s_audit" or event.activity not in ("create", "update", "delete"):
            return ""
        resource = event.resource
        if not resource.startswith(("services/", "ingresses/")) or resource.count("/") < 2:
            return ""
        if event.api_status and not event.api_status.startswith("2"):
            return ""
        name = resource.split("/")[2]
        ports = [int(p) for p in re.findall(r"\d+", event.extra.get("service_ports", ""))]
        if self.policy.server_hint(name) or any(p in self.policy.model_ports for p in ports):
            return f"service:{event.namespace}/{name}"
        return ""

    @staticmethod
    def workload_of(event: Event) -> str:
        """The workload asset id of a runtime event (``pod:ns/name``, else ``container:id``), or ''."""
        if event.source not in RUNTIME_SOURCES:
            return ""
        if event.namespace and event.pod:
            return ent.pod(event.namespace, event.pod)
        return ent.container(event.container_id) if event.container_id else ""

    @staticmethod
    def context(asset_id: str, state: State) -> dict[str, str]:
        """What the inventory knows about a workload, as ``Event.extra`` entries the detectors read
        (``ai_asset`` = the asset id; ``ai_runtimes``, ``ai_models``, ``ai_gpu``, ``ai_exposed``,
        ``ai_sanctioned``); empty when the asset is not a known AI workload."""
        if state.get("k") != "workload":
            return {}
        return {
            "ai_asset": asset_id,
            "ai_runtimes": ",".join(str(r) for r in state.get("rt", ())),
            "ai_models": ",".join(str(m) for m in state.get("md", ())),
            "ai_gpu": "true" if state.get("gpu") else "false",
            "ai_exposed": "true" if state.get("px") else "false",
            "ai_sanctioned": "true" if state.get("sa") else "false",
        }

    def assets(self, event: Event) -> list[str]:
        """Asset ids this event tells something about (empty for most events)."""
        out: list[str] = []
        source = event.source
        if source in RUNTIME_SOURCES:
            runtime, model, gpu = self._ai_evidence(event)
            if runtime or model or gpu:
                workload = ent.pod(event.namespace, event.pod) if event.namespace and event.pod else ""
                workload = workload or (ent.container(event.container_id) if event.container_id else "")
                if workload:
                    out.append(workload)
        elif event.class_uid == API_ACTIVITY:
            if source == "k8s_audit":
                service = self._service(event)
                if service:
                    out.append(service)
                return out
            if event.model_id and (source in INFERENCE_SOURCES or event.activity == "invoke_model"):
                out.append(ent.model(event.model_id))
            if source == "gateway" and event.api_key_id:
                out.append(ent.apikey(event.api_key_id))
            service = event.api_service
            if source == "cloudtrail" and service in self.policy.ai_services:
                out.append(f"service:{event.cloud_provider or 'aws'}/{service}")
            elif source == "bedrock":
                out.append(f"service:{event.cloud_provider or 'aws'}/bedrock")
        return out

    # --- the update function ----------------------------------------------------------------------
    def observe(self, event: Event, state: State, asset_id: str | None = None) -> list[InventoryChange]:
        """Update one asset's state from ``event``; the changes learned (usually none)."""
        if asset_id is None:
            found = self.assets(event)
            if not found:
                return []
            asset_id = found[0]
        kind = self._kind(asset_id)
        changes: list[tuple[str, str]] = []
        fresh = "k" not in state
        if fresh:
            state.update(
                k=kind, n=self._name(asset_id), ns=clean(event.namespace, 64) if kind == "workload" else "",
                im="", rt=[], md=[], pr=[], fs=event.time_ms, ls=event.time_ms, sa=False, px=False, gpu=False,
            )
        else:
            if event.time_ms < int(state["fs"]):
                state["fs"] = event.time_ms
            if event.time_ms >= int(state["ls"]) + self.window_ms:  # refreshed at most once per window
                state["ls"] = event.time_ms
        if kind == "workload":
            self._workload(event, asset_id, state, changes)
        else:
            self._usage(event, kind, state, changes)
        sanctioned = self._sanctioned(asset_id, kind, state)
        if sanctioned != state["sa"]:
            state["sa"] = sanctioned
            changes.append(("sanctioned", "sanctioned" if sanctioned else "not sanctioned"))
        if fresh:  # one record for first sight; the item carries what was learned with it
            changes = [("discovered", f"{kind} {state['n']}")]
        if not changes:
            return []
        item = self.item(asset_id, state)
        return [
            InventoryChange(
                change_id=stable_id("inventory", asset_id, change, detail),
                asset_id=asset_id,
                change=change,
                detail=detail,
                time_ms=event.time_ms,
                item=item,
            )
            for change, detail in changes
        ]

    def _workload(self, event: Event, asset_id: str, state: State, changes: list[tuple[str, str]]) -> None:
        if asset_id.startswith("service:"):
            service_type = event.extra.get("service_type", "")
            exposed = event.activity != "delete" and (
                service_type.lower() in self.policy.exposure_types or event.resource.startswith("ingresses/")
            )
            if exposed != bool(state["px"]):
                state["px"] = exposed
                changes.append(("exposure", f"{service_type or 'Ingress'} {'public' if exposed else 'internal'}"))
            hint = self.policy.server_hint(str(state["n"]).rsplit("/", 1)[-1])
            if hint:
                self._remember(state, "rt", hint, "runtime", changes, limit=0)
            if event.principal:
                self._remember(state, "pr", event.principal, "principal", changes)
            return
        if event.image and not state["im"]:
            state["im"] = clean(event.image, NAME_CHARS)
        if event.namespace and not state["ns"]:
            state["ns"] = clean(event.namespace, 64)
        runtime, model, gpu = self._ai_evidence(event)
        if runtime:
            self._remember(state, "rt", runtime, "runtime", changes, limit=0)
        if model:
            self._remember(state, "md", model, "model", changes)
        if gpu and not state["gpu"]:
            state["gpu"] = True
            changes.append(("gpu", "GPU access"))

    def _usage(self, event: Event, kind: str, state: State, changes: list[tuple[str, str]]) -> None:
        if kind == "api_key":
            caller = event.principal
        else:
            caller = event.principal or (ent.apikey(event.api_key_id) if event.api_key_id else "")
        if caller:
            # every distinct caller is counted (linear counting); the first few are named
            state["pc"] = bitmap_add(int(state.get("pc", 0)), h32(caller))
            self._remember(state, "pr", caller, "principal", changes)
        if kind in ("api_key", "cloud_service") and event.model_id:
            self._remember(state, "md", event.model_id, "model", changes)

    def _remember(
        self, state: State, slot: str, text: str, change: str, changes: list[tuple[str, str]], limit: int = NAME_CHARS
    ) -> None:
        """Add ``clean(text, limit)`` (``text`` itself if ``limit`` is 0) to a bounded list; a change only
        while the list has room (no LRU churn)."""
        values: list[str] = state[slot]
        # a value already kept was cleaned, so clean(text) is text: most calls end here without cleaning
        if text in values or len(values) >= self.max_list:
            return
        value = clean(text, limit) if limit else text
        if value in values:
            return
        values.append(value)
        changes.append((change, value))

    # --- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _kind(asset_id: str) -> str:
        prefix = asset_id.partition(":")[0]
        if prefix in ("pod", "container"):
            return "workload"
        if prefix == "model":
            return "model"
        if prefix == "apikey":
            return "api_key"
        if prefix == "service":
            cloud = asset_id.startswith(("service:aws/", "service:gcp/", "service:azure/"))
            return "cloud_service" if cloud else "workload"
        return "workload"

    @staticmethod
    def _name(asset_id: str) -> str:
        value = asset_id.split(":", 1)[1] if ":" in asset_id else asset_id
        return clean(value, NAME_CHARS)

    def _sanctioned(self, asset_id: str, kind: str, state: State) -> bool:
        """Workloads: approved namespace and image (a Service: not public, or public where allowed);
        models: ``approved_models``; keys and cloud services: every caller in ``approved_model_users``."""
        policy = self.policy
        if kind == "workload":
            if asset_id.startswith("service:"):
                return not state.get("px") or str(state.get("ns", "")) in policy.exposure_namespaces
            return policy.workload_sanctioned(str(state.get("ns", "")), str(state.get("im", "")))
        if kind == "model":
            return policy.approved_model(str(state.get("n", "")))
        approved = policy.model_user_approved
        for principal in state.get("pr", ()):
            if not approved(str(principal)):
                return False
        return True

    def item(self, asset_id: str, state: State) -> InventoryItem:
        """The ``InventoryItem`` an asset's state describes."""
        return InventoryItem(
            asset_id=asset_id,
            kind=str(state.get("k", self._kind(asset_id))),
            name=str(state.get("n", "")),
            namespace=str(state.get("ns", "")),
            image=str(state.get("im", "")),
            runtimes=list(state.get("rt", ())),
            models=list(state.get("md", ())),
            first_seen=int(state.get("fs", 0)),
            last_seen=int(state.get("ls", 0)),
            sanctioned=bool(state.get("sa", False)),
            public_exposure=bool(state.get("px", False)),
            principals=list(state.get("pr", ())),
            gpu=bool(state.get("gpu", False)),
            callers=round(bitmap_estimate(int(state.get("pc", 0)))) if state.get("pc") else len(state.get("pr", ())),
        )


# --- CycloneDX ---------------------------------------------------------------------------------------

