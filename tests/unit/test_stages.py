"""The pipeline stages over their state stores: changed keys written once per commit on the
partition that owns them, failing code leaving no half-made state, an aborted transaction leaving
none either, bad events dead-lettered without stopping the batch, replayed findings not
duplicating alerts. The engine around them is replaced by ``tests.unit.pipeline_fakes``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.correlation import anchor
from infra.settings import Settings
from schemas import entities as ent
from schemas.codec import encode
from schemas.envelope import Event
from streams import topics
from streams.pipeline.correlate import Correlation
from streams.pipeline.detect import Detection
from streams.pipeline.state import StateSpoiled
from tests.contract.events import T0, gateway, mixed_stream, runtime
from tests.unit.pipeline_fakes import Message, Out, commit, committed, event_message, memory_store

pytestmark = pytest.mark.unit


def miner(i: int, container: str = "3f2a9c1b7d4e5f60718293a4") -> Event:
    return runtime("dns_query", t=T0 + i * 1000, seq=i, container=container, dst_host="pool.supportxmr.com")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # the built-in detectors alone: these tests count their findings (Sigma rules: tests/unit/test_sigma.py)
    return Settings(state_dir=tmp_path, sigma={"pack": False})


def detection(settings: Settings) -> tuple[Detection, Out, dict[str, Any]]:
    stores = {name: memory_store(name) for name in ("states", "rekeyed", "assets", "models")}
    out = Out()
    return Detection(settings, out, **stores), out, stores


# --- state stores ----------------------------------------------------------------------------------


def test_changed_keys_are_written_once_per_commit_on_their_partition() -> None:
    store = memory_store()
    store.set("kept", 1, {"n": 1})
    commit(store)
    for _ in range(50):
        state = store.get("a", 2)
        state["n"] = state.get("n", 0) + 1
    store.get("b", 3)["seen"] = True
    store.get("kept", 1)  # read, not changed
    assert sorted(commit(store)) == [("state", 2, "a"), ("state", 3, "b")]
    assert committed(store) == {"a": {"n": 50}, "b": {"seen": True}, "kept": {"n": 1}}
    assert commit(store) == []  # nothing new: nothing written


def test_an_aborted_transaction_leaves_the_committed_state() -> None:
    store = memory_store()
    store.get("a", 0)["xs"] = [1]
    commit(store)
    store.get("a", 0)["xs"].append(2)
    store.get("b", 0)["new"] = True
    for part in store.store.partitions.values():
        part.rollback()
    assert committed(store) == {"a": {"xs": [1]}}
    assert store.get("a", 0) == {"xs": [1]}


def test_an_emptied_state_is_deleted() -> None:
    store = memory_store()
    store.get("a", 0)["n"] = 1
    commit(store)
    store.get("a", 0).clear()
    assert commit(store) == [("state", 0, "a")]
    assert committed(store) == {}


def test_state_is_put_back_when_the_code_using_it_raises() -> None:
    store = memory_store()
    store.get("a", 0)["n"] = 1

    def buggy(state: dict[str, Any]) -> None:
        state["n"] = 99
        state["half"] = "made"
        raise RuntimeError("detector bug")

    with pytest.raises(RuntimeError):
        store.apply("a", 0, buggy)
    assert store.get("a", 0) == {"n": 1}
    assert store.apply("a", 0, lambda state, k: state[k], "n") == 1
    assert commit(store) == [("state", 0, "a")]
    assert committed(store) == {"a": {"n": 1}}


def test_a_store_that_is_not_careful_reports_a_raise_as_spoiled_state_for_the_engine_to_abort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine's stores skip the copy before every call: a raise is StateSpoiled (the cause kept), and the
    stages let it through to the engine instead of dead-lettering the record against half-made state."""
    store = memory_store()
    store.store.set_careful(False)
    store.get("a", 0)["n"] = 1

    def buggy(state: dict[str, Any]) -> None:
        state["n"] = 99
        raise RuntimeError("detector bug")

    with pytest.raises(StateSpoiled) as spoiled:
        store.apply("a", 0, buggy)
    assert isinstance(spoiled.value.__cause__, RuntimeError) and spoiled.value.key == "a"
    assert store.apply("a", 0, lambda state: state["n"]) == 99  # half-made: only an abort drops it
    store.store.set_careful(True)
    with pytest.raises(RuntimeError):
        store.apply("a", 0, buggy)
    assert store.get("a", 0) == {"n": 99}

    settings = Settings(state_dir=Path("/nonexistent"))
    detect, out, stores = detection(settings)
    stores["states"].store.set_careful(False)
    monkeypatch.setattr("streams.pipeline.detect._detect_all", lambda state, detector, event: buggy(state))
    with pytest.raises(StateSpoiled):
        detect.events_batch([event_message(gateway(key="key-a", t=T0))])
    assert out.on(topics.DLQ) == []
    stores["states"].store.set_careful(True)  # as the engine's stores are while it processes the records again
    detect.events_batch([event_message(gateway(key="key-a", t=T0))])
    assert "detection failed" in orjson.loads(out.on(topics.DLQ)[0]["value"])["reason"]


def test_the_disk_store_keeps_state_and_its_changelog_offset(tmp_path: Path) -> None:
    store = memory_store(kind="rocksdb", directory=tmp_path, partitions=2)
    store.get("a", 1)["n"] = 1
    store.get("b", 1)["n"] = 2
    part = store.store[1]
    part.commit(part.changes(), changelog_offset=41)
    store.get("b", 1).clear()
    part.commit(part.changes(), changelog_offset=42)
    store.store.close(1)
    reopened = store.store.open(1)
    assert dict(reopened.committed_items()) == {"a": {"n": 1}}
    assert reopened.backend.changelog_offset() == 42 and len(reopened) == 1


# --- detection ------------------------------------------------------------------------------------


def test_a_batch_writes_each_detector_state_once(settings: Settings) -> None:
    detect, out, stores = detection(settings)
    detect.events_batch([event_message(miner(i), offset=i) for i in range(40)])
    findings = [orjson.loads(sent["value"]) for sent in out.on(topics.FINDINGS)]
    assert [f["detector"] for f in findings] == ["cryptominer"]  # rate-limited per window, as one by one
    written = commit(stores["states"])
    keys = [key for _, _, key in written]
    assert len(keys) == len(set(keys)) and "cryptominer|container:3f2a9c1b7d4e" in keys
    assert {partition for _, partition, _ in written} == {0}
    assert out.on(topics.DLQ) == []


def test_same_results_committed_per_batch_as_per_event(settings: Settings) -> None:
    messages = [event_message(e, offset=i) for i, e in enumerate(mixed_stream(seed=3, n=600))]
    batched, out, stores = detection(settings)
    batched_log = []
    for start in range(0, len(messages), 200):
        batched.events_batch(messages[start:start + 200])
        batched_log += commit(*stores.values())
    single, one_out, one_stores = detection(settings)
    single_log = []
    for one in messages:
        single.events_batch([one])
        single_log += commit(*one_stores.values())
    assert out.sent == one_out.sent
    assert out.on(topics.FINDINGS)
    for name in ("states", "assets"):
        assert committed(stores[name]) == committed(one_stores[name])
    assert len(batched_log) < len(single_log) / 2


def test_a_detector_exception_dead_letters_that_event_only(settings: Settings,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    detect, out, stores = detection(settings)
    cryptominer = detect.by_id["cryptominer"]
    real = cryptominer.detect
    bad = miner(5, container="cccccccccccc")

    def flaky(event: Event, state: dict[str, Any]) -> Any:
        if event.event_id == bad.event_id:
            state["poisoned"] = True
            raise ValueError("boom")
        return real(event, state)

    monkeypatch.setattr(cryptominer, "detect", flaky)
    detect.events_batch([event_message(bad, offset=0), event_message(miner(6), offset=1),
                         Message(b"not json", b"k", offset=2)])
    letters = [orjson.loads(sent["value"]) for sent in out.on(topics.DLQ)]
    assert [letter["stage"] for letter in letters] == ["detect", "detect"]
    assert "boom" in letters[0]["reason"] and "not an aiwarden event" in letters[1]["reason"]
    assert letters[1]["position"] == {"topic": "aiwarden.events", "partition": 0, "offset": 2}
    assert [orjson.loads(s["value"])["detector"] for s in out.on(topics.FINDINGS)] == ["cryptominer"]
    commit(stores["states"])
    assert all("poisoned" not in state for state in committed(stores["states"]).values())


def test_model_checkpoints_go_to_every_partition_held_and_only_after_learning(settings: Settings) -> None:
    detect, _, stores = detection(settings)
    detect.checkpoints.interval_s = 0
    detect.events_batch([event_message(miner(1), partition=1), event_message(miner(2), partition=3)])
    assert detect.checkpoints.maybe_save([1, 3])
    written = commit(stores["models"])
    assert written and {p for _, p, _ in written} == {1, 3}
    assert all(key.endswith(f"|{p}") for _, p, key in written)
    assert not detect.checkpoints.maybe_save([1, 3])  # nothing learned since: nothing written


def test_rekeyed_events_keep_state_under_their_key(settings: Settings) -> None:
    detect, out, stores = detection(settings)
    for i, event in enumerate(mixed_stream(seed=3, n=600)):
        detect.events_batch([event_message(event, offset=i)])
    rekeyed = out.on(f"{settings.worker.app_id}-detect-rekey")
    assert rekeyed, "the mixed stream has events for detectors keyed on another entity"
    detect.rekeyed_batch([Message(r["value"], r["key"], topic="rekey", headers=r["headers"]) for r in rekeyed])
    keys = {key for _, _, key in commit(stores["rekeyed"])}
    assert keys and all(key.split("|", 1)[1] in {r["key"].decode() for r in rekeyed} for key in keys)
    detect.rekeyed_batch([Message(b"{}", b"k", topic="rekey", headers=[("aiwarden-detector", b"nope")])])
    assert "unknown detector" in orjson.loads(out.on(topics.DLQ)[-1]["value"])["reason"]


# --- correlation ----------------------------------------------------------------------------------


def correlate_until_settled(correlation: Correlation, out: Out, findings: list[Message]) -> None:
    """``findings`` through the correlate stage, and the re-keyed copies it sends back to aiwarden.findings
    after them, as the engine would deliver them, until none is left."""
    while findings:
        done = len(out.on(topics.FINDINGS))
        correlation.findings_batch(findings)
        findings = [Message(s["value"], s["key"], topic=topics.FINDINGS, headers=s["headers"])
                    for s in out.on(topics.FINDINGS)[done:]]


def test_replayed_findings_do_not_duplicate_alerts(settings: Settings) -> None:
    detect, out, _ = detection(settings)
    detect.events_batch([event_message(miner(1))])
    finding = out.on(topics.FINDINGS)[0]
    alerts, states = Out(), memory_store("correlation")
    correlation = Correlation(settings, alerts, states=states)
    as_message = Message(finding["value"], finding["key"], topic=topics.FINDINGS)
    correlation.findings_batch([as_message, as_message])
    correlation.findings_batch([as_message])
    assert len(alerts.on(topics.ALERTS)) == 1 and len(commit(states)) == 1
    correlation.findings_batch([Message(b"{}", b"k", topic=topics.FINDINGS)])
    letters = alerts.on(topics.DLQ)
    assert len(letters) == 1 and orjson.loads(letters[0]["value"])["stage"] == "correlate"


# --- the inventory's context reaches the detectors --------------------------------------------------


def test_falco_rule_hit_in_a_workload_the_inventory_knows_as_ai(settings: Settings) -> None:
    """Falco's own critical rule in a training pod named like nothing AI: the inventory learned from an
    earlier torchrun exec that the pod is an AI workload, so the rule hit becomes an AI finding."""
    from schemas.sources import falco as falco_source  # noqa: PLC0415

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "sources" / "falco" / "aiwarden_field_reference.jsonl"
    hit = falco_source.normalize(orjson.loads(fixture.read_bytes().splitlines()[3]))
    trainer = dict(ns="research", pod="train-llama-0", container=hit.container_id, image=hit.image, host=hit.host)
    torchrun = runtime("process_exec", t=hit.time_ms - 60_000, process="torchrun",
                       cmdline="torchrun --nproc-per-node 8 train.py", parent="bash", **trainer)
    stage, out, _ = detection(settings)
    stage.events_batch([event_message(hit, offset=0)])
    assert not [s for s in out.on(topics.FINDINGS) if orjson.loads(s["value"])["detector"] == "agent_rule_hit"]
    stage, out, _ = detection(settings)
    stage.events_batch([event_message(torchrun, offset=0), event_message(hit, offset=1)])
    findings = [orjson.loads(s["value"]) for s in out.on(topics.FINDINGS)]
    hits = [f for f in findings if f["detector"] == "agent_rule_hit"]
    assert len(hits) == 1
    finding = hits[0]
    assert finding["severity"] == "critical" and finding["ai_asset"]
    assert finding["attributes"]["ai_asset"] == "pod:research/train-llama-0"
    assert finding["attributes"]["ai_runtimes"] == "torchrun"
    assert "Drop and execute new binary in container" in finding["summary"]


# --- a join detector through the re-key topic ---------------------------------------------------------


def test_vulnerable_ai_workload_joins_scan_exposure_and_runtime_through_the_rekey_topic(settings: Settings) -> None:
    """Package, exposure and runtime events all go through the re-key topic (even the package event,
    whose entity is its key), forwarded events come back through it, the inventory's context travels with
    the re-keyed runtime event, and the rows go to ``aiwarden.vulnerabilities`` keyed by workload."""
    from schemas.vulns import Vulnerability  # noqa: PLC0415
    from tests.contract.events import k8s, package  # noqa: PLC0415

    rce = Vulnerability("CVE-2024-11041", "CRITICAL", 9.8, "0.6.5")
    events = [
        package("vllm", "0.6.3", vulnerabilities=(rce,), t=T0),
        k8s("create", "services/ml-prod/vllm-public", t=T0 + 1000,
            extra={"service_type": "LoadBalancer", "service_ports": "8000/TCP"}),
        runtime("process_exec", t=T0 + 2000),  # python3 -m vllm.entrypoints.openai.api_server, an AI runtime
        runtime("process_exec", t=T0 + 3000, seq=1),
    ]
    detect, out, stores = detection(settings)
    detect.events_batch([event_message(e, offset=i) for i, e in enumerate(events)])
    topic = f"{settings.worker.app_id}-detect-rekey"
    delivered = 0
    while len(out.on(topic)) > delivered:  # deliver the re-key topic until nothing new is forwarded
        batch = out.on(topic)[delivered:]
        delivered += len(batch)
        detect.rekeyed_batch([Message(r["value"], r["key"], topic="rekey", headers=r["headers"]) for r in batch])
    joined = [r for r in out.on(topic) if r["headers"] == [("aiwarden-detector", b"vulnerable_ai_workload")]]
    assert {r["key"] for r in joined} == {b"image:vllm/vllm-openai:v0.6.3", b"namespace:ml-prod"}
    second_runtime = [orjson.loads(r["value"]) for r in joined if r["key"].startswith(b"image:")][-1]
    assert second_runtime["extra"]["ai_asset"] == "pod:ml-prod/vllm-0", "the inventory's context travels along"
    findings = [orjson.loads(s["value"]) for s in out.on(topics.FINDINGS)]
    vulnerable = [f for f in findings if f["detector"] == "vulnerable_ai_workload"]
    assert len(vulnerable) == 1 and vulnerable[0]["public_exposure"]
    rows = [orjson.loads(s["value"]) for s in out.on(topics.VULNERABILITIES)]
    assert rows and {s["key"] for s in out.on(topics.VULNERABILITIES)} >= {b"pod:ml-prod/vllm-0"}
    latest = [r for r in rows if r["workload"] == "pod:ml-prod/vllm-0"][-1]
    assert (latest["in_use"], latest["exposed"], latest["priority"]) == (1, 1, "critical")
    assert all(not key.startswith("vulnerable_ai_workload|") for _, _, key in commit(stores["states"]))
    assert any(key.startswith("vulnerable_ai_workload|") for _, _, key in commit(stores["rekeyed"]))


def test_the_simulated_vulnerable_model_server_is_one_critical_attack_path(settings: Settings) -> None:
    """The simulator's ``vulnerable_model_server`` through detect (re-key topic delivered as it fills) and
    correlate: one alert, about the attacked pod, critical, joining the engineer's exposure, the vulnerable
    package in use and the reverse shell (the pod's findings re-keyed to the exposure's anchor)."""
    from schemas.sources import SOURCES  # noqa: PLC0415
    from streams.simulator import SimConfig, Simulator  # noqa: PLC0415
    from streams.simulator.estate import apply  # noqa: PLC0415

    simulator = Simulator(SimConfig(seed=3, duration_s=60, rate=60, scenarios=("vulnerable_model_server",)))
    settings = apply(settings)
    detect, out, _ = detection(settings)
    topic = f"{settings.worker.app_id}-detect-rekey"
    delivered = 0
    for i, record in enumerate(simulator.records()):
        detect.events_batch([event_message(SOURCES[record.source].normalize(record.record), offset=i)])
        while len(out.on(topic)) > delivered:
            batch = out.on(topic)[delivered:]
            delivered += len(batch)
            detect.rekeyed_batch([Message(r["value"], r["key"], topic="rekey", headers=r["headers"]) for r in batch])
    alerts = Out()
    correlation = Correlation(settings, alerts, states=memory_store("correlation"))
    correlate_until_settled(correlation, alerts,
                            [Message(s["value"], s["key"], topic=topics.FINDINGS) for s in out.on(topics.FINDINGS)])
    forwarded = alerts.on(topics.FINDINGS)
    assert forwarded and all(s["headers"][0][0] == topics.FORWARDED_HEADER for s in forwarded)
    (label,) = simulator.labels()
    pod = next(e for e in label.entities if e.startswith("pod:"))
    latest = {}
    for sent in alerts.on(topics.ALERTS):
        alert = orjson.loads(sent["value"])
        latest[alert["alert_id"]] = alert
    assert len(latest) == 1, [a["summary"] for a in latest.values()]
    (alert,) = latest.values()
    assert alert["primary_entity"] == pod
    assert alert["severity"] == "critical"
    assert {"exposed_ai_workload", "vulnerable_ai_workload", "model_server_shell"} <= set(alert["detectors"])
    assert "publicly exposed and runs vulnerable vllm 0.6.3 in use (CVE-2024-11041)" in alert["summary"]
    assert "reverse shell" in alert["summary"]


def test_an_open_pod_alert_goes_along_with_the_forwarded_finding_and_is_merged(settings: Settings) -> None:
    """Through the stage: the pod's shell alert is open when the vulnerability naming the engineer arrives; the
    re-keyed copy carries the pod's alert (merge header), and the pod's alert ends as merged into the
    engineer's, which now holds the shell."""
    from detectors.correlation import CONTINUES  # noqa: PLC0415
    from tests.unit.test_correlation import POD, finding  # noqa: PLC0415

    engineer = ent.principal("ana.lima@example.com")
    exposure = finding("exposed_ai_workload", entity=engineer, entities=(), tactics=("initial-access",))
    shell = finding("model_server_shell", t=exposure.time_ms + 60_000, severity="critical")
    vulnerable = finding("vulnerable_ai_workload", t=exposure.time_ms + 61_000, entity=POD, entities=(engineer,),
                         severity="critical")
    vulnerable.attributes[CONTINUES] = engineer
    out, states = Out(), memory_store("correlation")
    correlation = Correlation(settings, out, states=states)
    correlate_until_settled(correlation, out, [Message(encode(f), anchor(f).encode(), topic=topics.FINDINGS)
                                               for f in (exposure, shell, vulnerable)])
    (copy,) = out.on(topics.FINDINGS)
    assert [name for name, _ in copy["headers"]] == [topics.FORWARDED_HEADER, topics.MERGE_HEADER]
    latest: dict[str, dict[str, Any]] = {}
    for sent in out.on(topics.ALERTS):
        alert = orjson.loads(sent["value"])
        latest[alert["alert_id"]] = alert
    merged = [a for a in latest.values() if a["status"] == "merged"]
    open_ = [a for a in latest.values() if a["status"] == "open"]
    assert len(merged) == 1 and len(open_) == 1 and merged[0]["merged_into"] == open_[0]["alert_id"]
    assert open_[0]["primary_entity"] == POD and shell.finding_id in open_[0]["finding_ids"]
    ocsf = [orjson.loads(s["value"]) for s in out.on(topics.OCSF)]
    assert any(o["status"] == "Merged" and o["activity_id"] == 3 for o in ocsf)
