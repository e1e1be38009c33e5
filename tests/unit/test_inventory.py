"""The AI inventory: discovery, change records only when something is learned, bounded state, CycloneDX."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.base import STATE_BOUND_BYTES
from detectors.inventory import Inventory, InventoryChange, InventoryItem, model_name_from_path
from schemas import entities as ent
from schemas.envelope import Event
from streams.simulator.estate import detection_config
from tests.contract.events import T0, bedrock, cloudtrail, gateway, k8s, runtime

pytestmark = pytest.mark.unit

CONFIG = detection_config()  # the simulator's estate: these tests use its names
SHARD = "/models/meta-llama/Llama-3.1-8B-Instruct/model-00001-of-00004.safetensors"


def observe_all(events: list[Event], inventory: Inventory | None = None,
                states: dict[str, dict[str, Any]] | None = None) -> tuple[list[InventoryChange], dict[str, Any]]:
    inventory = inventory or Inventory(CONFIG)
    states = {} if states is None else states
    changes: list[InventoryChange] = []
    for event in events:
        for asset in inventory.assets(event):
            changes += inventory.observe(event, states.setdefault(asset, {}), asset)
    return changes, states


def test_discovers_a_model_server_with_runtime_model_and_gpu() -> None:
    events = [
        runtime("process_exec", t=T0),
        runtime("file_open", file_path=SHARD, t=T0 + 1000),
        runtime("file_open", file_path="/dev/nvidia0", t=T0 + 2000),
        runtime("file_open", file_path=SHARD, t=T0 + 3000, seq=1),  # nothing new
    ]
    changes, states = observe_all(events)
    assert [c.change for c in changes] == ["discovered", "model", "gpu"]
    item = changes[-1].item
    assert item.asset_id == ent.pod("ml-prod", "vllm-0") and item.kind == "workload"
    assert item.runtimes == ["vllm"] and item.models == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert item.gpu and item.sanctioned and not item.public_exposure
    assert item.namespace == "ml-prod" and item.image == "vllm/vllm-openai:v0.6.3"
    assert changes[0].change_id != changes[1].change_id


def test_non_ai_events_do_not_touch_the_inventory() -> None:
    nginx = runtime("process_exec", ns="web", pod="frontend", image="nginx:1.27.2", process="nginx",
                    cmdline="nginx: worker process", host="node-1")
    inventory = Inventory(CONFIG)
    assert inventory.assets(nginx) == []
    assert inventory.observe(nginx, {}) == []
    assert inventory.assets(cloudtrail("DescribeInstances", "ec2")) == []


def test_unsanctioned_workload_and_sanctioned_changes() -> None:
    changes, _ = observe_all([runtime("process_exec", ns="marketing", pod="ollama-x", image="ollama/ollama:0.3.14",
                                      process="ollama", cmdline="ollama serve")])
    assert [c.change for c in changes] == ["discovered"] and not changes[0].item.sanctioned
    approved = detection_config(approved_namespaces=(*CONFIG.approved_namespaces, "marketing"))
    changes, _ = observe_all([runtime("process_exec", ns="marketing", pod="ollama-x", image="ollama/ollama:0.3.14",
                                      process="ollama")], Inventory(approved))
    assert changes[0].item.sanctioned


def test_last_seen_refreshes_at_most_once_per_window_without_changes() -> None:
    inventory = Inventory(CONFIG)
    state: dict[str, Any] = {}
    asset = ent.pod("ml-prod", "vllm-0")
    assert len(inventory.observe(runtime("process_exec", t=T0), state, asset)) == 1
    for i in range(1, 50):
        assert inventory.observe(runtime("process_exec", t=T0 + i * 1000, seq=i), state, asset) == []
    assert state["ls"] == T0  # not refreshed within the first window
    inventory.observe(runtime("process_exec", t=T0 + 61_000, seq=99), state, asset)
    assert state["ls"] == T0 + 61_000
    inventory.observe(runtime("process_exec", t=T0 + 62_000, seq=100), state, asset)
    assert state["ls"] == T0 + 61_000


def test_models_keys_and_cloud_services() -> None:
    events = [
        gateway(key="key-1", user="svc-rag-api", model="gpt-4o"),
        gateway(key="key-1", user="svc-rag-api", model="gpt-4o-mini", seq=1),
        gateway(key="key-2", user="alice@acme.example", model="gpt-4o", seq=2),
        bedrock(),
        cloudtrail("InvokeEndpoint", "sagemaker", activity="invoke_model"),
    ]
    changes, states = observe_all(events)
    assert set(states) == {
        ent.model("gpt-4o"), ent.model("gpt-4o-mini"), ent.apikey("key-1"), ent.apikey("key-2"),
        ent.model("anthropic.claude-3-5-sonnet-20240620-v1:0"), "service:aws/bedrock", "service:aws/sagemaker",
    }
    inventory = Inventory(CONFIG)
    key1 = inventory.item(ent.apikey("key-1"), states[ent.apikey("key-1")])
    assert key1.kind == "api_key" and key1.models == ["gpt-4o", "gpt-4o-mini"] and key1.principals == ["svc-rag-api"]
    assert key1.sanctioned
    gpt = inventory.item(ent.model("gpt-4o"), states[ent.model("gpt-4o")])
    assert gpt.kind == "model" and gpt.principals == ["svc-rag-api", "alice@acme.example"] and gpt.sanctioned
    assert gpt.callers == 2
    service = inventory.item("service:aws/bedrock", states["service:aws/bedrock"])
    assert service.kind == "cloud_service" and service.models == ["anthropic.claude-3-5-sonnet-20240620-v1:0"]
    kinds = [c.change for c in changes if c.asset_id == ent.model("gpt-4o")]
    assert kinds == ["discovered", "principal"]
    unknown = observe_all([gateway(key="key-9", user="mallory", model="some-uncensored-model")])[0]
    assert not any(c.item.sanctioned for c in unknown)


def test_exposed_service_and_exposure_change() -> None:
    public = k8s("create", "services/ml-prod/vllm-public", extra={"service_type": "LoadBalancer",
                                                                  "service_ports": "8000/TCP"})
    internal = k8s("update", "services/ml-prod/vllm-public", t=T0 + 5000,
                   extra={"service_type": "ClusterIP", "service_ports": "8000/TCP"})
    changes, _ = observe_all([public, internal])
    assert [c.change for c in changes] == ["discovered", "exposure", "sanctioned"]
    assert changes[0].item.public_exposure and not changes[0].item.sanctioned
    assert not changes[-1].item.public_exposure and changes[-1].item.sanctioned
    web = k8s("create", "services/web/web-api", ns="web", extra={"service_type": "LoadBalancer",
                                                                  "service_ports": "8080/TCP"})
    assert Inventory(CONFIG).assets(web) == ["service:web/web-api"]


def test_state_is_bounded_and_json() -> None:
    inventory = Inventory(CONFIG)
    states: dict[str, dict[str, Any]] = {}
    hostile = "\x00\x1b[31m🔥日本語" * 40
    events = [gateway(key="key-1", user=f"user-{i}{hostile}", model=f"model-{i % 3}", t=T0 + i, seq=i)
              for i in range(3000)]
    events += [runtime("file_open", file_path=f"/models/org/model-{i}{hostile}/weights-{i}.safetensors", t=T0 + i,
                       seq=i, process=f"runtime-{i}", image=f"vllm/{hostile}") for i in range(3000)]
    changes, states = observe_all(events, inventory, states)
    for asset, state in states.items():
        assert len(orjson.dumps(state)) < STATE_BOUND_BYTES, asset
        assert orjson.loads(orjson.dumps(state)) == state
    assert len(changes) < 200  # bounded lists: no change storm
    gpt = inventory.item(ent.model("model-0"), states[ent.model("model-0")])
    assert len(gpt.principals) == CONFIG.inventory_max_list and gpt.callers > 100


def test_model_names_from_paths() -> None:
    assert model_name_from_path("/root/.ollama/models/blobs/sha256-8eeb52dfb3bb9aefdf9d1ef24b3bdbcf") == \
        "ollama:sha256-8eeb52dfb3bb"
    assert model_name_from_path("/mnt/models/meta-llama/Llama-3.1-70B-Instruct/model-00001-of-00030.safetensors") == \
        "meta-llama/Llama-3.1-70B-Instruct"
    assert model_name_from_path("/opt/ckpt/pytorch_model.bin") == "opt/ckpt"


def test_item_round_trip() -> None:
    item = InventoryItem(asset_id="model:x", kind="model", name="x", first_seen=1, last_seen=2)
    assert InventoryItem(**orjson.loads(orjson.dumps(item.to_dict()))) == item
