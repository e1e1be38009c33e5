"""Saved hunts against the real ClickHouse, on a dataset of their own.

Every row seeded here carries one run's marker (a uuid in entity ids, principals, keys,
namespaces, technique ids) and sits in one past hour of its own, so rows of other tests never
change what these assertions see. Hunts run through a read-only client, as the CLI runs them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from typer.testing import CliRunner

from infra.clickhouse.client import connect
from infra.settings import Settings
from schemas import entities as ent
from schemas.envelope import API_ACTIVITY, DNS_ACTIVITY, NETWORK_ACTIVITY, PROCESS_ACTIVITY, Event
from schemas.findings import Alert, Finding
from streams.hunt import ReadOnlyRefused, Rows, hunt_app, load_hunts, run_hunt, run_sql

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
OPENAI_IP = "162.159.140.245"


@dataclass
class Dataset:
    marker: str
    t0: int  # start of the dataset's hour, epoch ms
    db: str
    entity: str  # the pod every timeline row involves
    namespace: str
    sanctioned_namespace: str
    events: list[Event]

    def at(self, minutes: float) -> int:
        return self.t0 + int(minutes * MINUTE_MS)

    @property
    def window(self) -> dict[str, str]:
        return {"since": text_time(self.t0), "until": text_time(self.t0 + HOUR_MS)}


def text_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def insert_json(client: Client, table: str, rows: list[dict[str, Any]], **settings: Any) -> None:
    client.raw_insert(
        table,
        insert_block=b"\n".join(orjson.dumps(row) for row in rows),
        fmt="JSONEachRow",
        settings=settings or None,
    )


def net_event(ds_marker: str, n: int, time_ms: int, **fields: Any) -> Event:
    return Event(event_id=f"ev-{ds_marker}-{n}", time_ms=time_ms, source="native", **fields)


def seed(client: Client, db: str) -> Dataset:
    m = uuid.uuid4().hex[:10]
    now_hour = datetime.now(UTC).timestamp() * 1000 // HOUR_MS * HOUR_MS
    t0 = int(now_hour - random.randint(30, 24 * 20) * HOUR_MS)  # a past hour of this run's own
    ns, other_ns, gw_ns = f"ns-{m}", f"other-{m}", f"gw-{m}"
    pod = "chatbot-7c9bdf5d4x-k2m4q"  # deployment "chatbot": replica-set hash and pod id suffixes
    pod_entity, ns_entity = ent.pod(ns, pod), ent.namespace(ns)
    ds = Dataset(m, t0, db, pod_entity, ns, gw_ns, [])

    def at(minutes: float) -> int:
        return t0 + int(minutes * MINUTE_MS)

    workload = {"cluster": "prod-use1", "namespace": ns, "pod": pod, "image": "acme/chatbot:1.2", "host": "node-1"}
    alice, bob = f"user-{m}-alice", f"user-{m}-bob"
    key1, key2 = f"key-{m}-1", f"key-{m}-2"
    events = [
        # Shadow AI: the chatbot looks up api.openai.com, then connects to the address it got.
        net_event(
            m, 1, at(1), class_uid=DNS_ACTIVITY, activity="dns_query", src_ip="10.1.1.1", dst_host="api.openai.com",
            entity_id=pod_entity, entities=[pod_entity, ns_entity, ent.ip("10.1.1.1"), ent.ip(OPENAI_IP)],
            **workload,
        ),
        net_event(
            m, 2, at(2), class_uid=NETWORK_ACTIVITY, activity="network_connect", src_ip="10.1.1.1",
            dst_ip=OPENAI_IP, dst_port=443, bytes_out=5000, entity_id=pod_entity,
            entities=[pod_entity, ns_entity, ent.ip("10.1.1.1"), ent.ip(OPENAI_IP)], **workload,
        ),
        # Inbound and internal traffic of the same pod: not egress / not external.
        net_event(
            m, 3, at(3), class_uid=NETWORK_ACTIVITY, activity="network_listen", dst_port=8080,
            entity_id=pod_entity, entities=[pod_entity, ns_entity], **workload,
        ),
        net_event(
            m, 4, at(4), class_uid=NETWORK_ACTIVITY, activity="network_connect", src_ip="10.1.1.1",
            dst_ip="10.0.0.5", dst_port=5432, bytes_out=100, entity_id=pod_entity,
            entities=[pod_entity, ns_entity, ent.ip("10.0.0.5")], **workload,
        ),
        net_event(
            m, 5, at(5), class_uid=PROCESS_ACTIVITY, activity="process_exec", process_name="python3",
            entity_id=pod_entity, entities=[pod_entity, ns_entity], message="python3 app.py", **workload,
        ),
        # Another workload reaches the same (shared CDN) address without having resolved an AI host.
        net_event(
            m, 6, at(6), class_uid=NETWORK_ACTIVITY, activity="network_connect", cluster="prod-use1",
            namespace=other_ns, pod="web-0", host="node-2", src_ip="10.1.1.2", dst_ip=OPENAI_IP, dst_port=443,
            bytes_out=900, entity_id=ent.pod(other_ns, "web-0"),
        ),
        # The sanctioned gateway calls Anthropic: allowed.
        net_event(
            m, 7, at(7), class_uid=DNS_ACTIVITY, activity="dns_query", cluster="prod-use1", namespace=gw_ns,
            pod="llm-gateway-bcdfghjkl-bcdfg", host="node-3", src_ip="10.1.1.3", dst_host="api.anthropic.com",
            entity_id=ent.pod(gw_ns, "llm-gateway-bcdfghjkl-bcdfg"), entities=[ent.ip("160.79.104.10")],
        ),
        net_event(
            m, 8, at(8), class_uid=NETWORK_ACTIVITY, activity="network_connect", cluster="prod-use1",
            namespace=gw_ns, pod="llm-gateway-bcdfghjkl-bcdfg", host="node-3", src_ip="10.1.1.3",
            dst_ip="160.79.104.10", dst_port=443, bytes_out=7000, entity_id=ent.pod(gw_ns, "llm-gateway"),
        ),
        # A VM outside Kubernetes connects to an Azure OpenAI subdomain by name.
        net_event(
            m, 9, at(9), class_uid=NETWORK_ACTIVITY, activity="network_connect", host=f"vm-{m}",
            src_ip="10.2.0.9", dst_host=f"acme-{m}.openai.azure.com", dst_ip="20.1.1.1", dst_port=443,
            bytes_out=700, entity_id=ent.host(f"vm-{m}"),
        ),
    ]
    # Inference: alice's key from four networks, bob's from one; one API call without a model.
    for i in range(4):
        events.append(
            Event(
                event_id=f"ev-{m}-inf-a{i}", time_ms=at(10 + i), source="gateway", class_uid=API_ACTIVITY,
                activity="chat_completion", principal=alice, api_key_id=key1, src_ip=f"198.51.100.{i + 1}",
                model_id="gpt-4o", tokens_in=1_000_000_000 + i, tokens_out=2_000, user_agent="curl/8",
                entity_id=ent.apikey(key1), entities=[ent.apikey(key1), ent.principal(alice)],
            )
        )
    for i in range(2):
        events.append(
            Event(
                event_id=f"ev-{m}-inf-b{i}", time_ms=at(20 + i), source="gateway", class_uid=API_ACTIVITY,
                activity="chat_completion", principal=bob, api_key_id=key2, src_ip="198.51.100.50",
                model_id="claude-3-haiku", tokens_in=500, tokens_out=100, entity_id=ent.apikey(key2),
                entities=[ent.apikey(key2), ent.principal(bob)],
            )
        )
    events.append(
        Event(
            event_id=f"ev-{m}-list", time_ms=at(22), source="cloudtrail", class_uid=API_ACTIVITY,
            activity="list_foundation_models", principal=bob, api_key_id=key2, src_ip="198.51.100.50",
            entity_id=ent.principal(bob),
        )
    )
    ds.events = events
    insert_json(client, f"{db}.events", [e.to_dict() for e in events])

    findings = [
        Finding(
            finding_id=f"f-{m}-1", detector="shadow_ai_egress", title="Workload calls a third-party AI API",
            maturity="stable", severity="medium", time_ms=at(10.5), entity_id=pod_entity,
            entities=[pod_entity, ns_entity], summary="chatbot reached api.openai.com",
            atlas_techniques=["AML.T0040"], evidence_event_ids=[f"ev-{m}-1", f"ev-{m}-2"], ai_asset=True,
        ),
        Finding(
            finding_id=f"f-{m}-2", detector="reverse_shell", title="Shell with network socket", maturity="stable",
            severity="high", time_ms=at(30), entity_id=pod_entity, entities=[pod_entity], summary="bash -i",
            attack_techniques=["T1059.004"], anomaly_score=0.9, attributes={"cmd": "bash -i"},
        ),
    ]
    # A finding redelivered: the same row twice; FINAL shows it once.
    insert_json(client, f"{db}.findings", [f.to_dict() for f in [*findings, findings[1]]])

    technique = f"AML.T{m}"
    alert1 = Alert(
        alert_id=f"alert-{m}-1", first_seen=at(10.5), last_seen=at(30), severity="medium", risk_score=40.0,
        detectors=["shadow_ai_egress"], atlas_techniques=[technique, "AML.T0040"], attack_techniques=[],
        tactics=["exfiltration"], entities=[pod_entity, ns_entity], primary_entity=pod_entity,
        summary="shadow AI egress from chatbot", evidence_event_ids=[f"ev-{m}-1"], finding_ids=[f"f-{m}-1"],
        maturity="stable", version=1, updated_ms=at(11),
    )
    alert1_v2 = Alert(**{**alert1.to_dict(), "severity": "high", "risk_score": 80.0, "status": "acknowledged",
                         "detectors": ["shadow_ai_egress", "reverse_shell"], "attack_techniques": ["T1059.004"],
                         "finding_ids": [f"f-{m}-1", f"f-{m}-2"], "version": 2, "updated_ms": at(31)})
    alert2 = Alert(
        alert_id=f"alert-{m}-2", first_seen=at(40), last_seen=at(41), severity="low", risk_score=30.0,
        detectors=["prompt_injection"], atlas_techniques=[f"{technique}.001"], attack_techniques=[], tactics=[],
        entities=[ent.apikey(key1)], primary_entity=ent.apikey(key1), summary="prompt injection",
        evidence_event_ids=[], finding_ids=[], maturity="incubating",
    )
    insert_json(client, f"{db}.alerts", [alert1.to_dict(), alert2.to_dict()])
    insert_json(client, f"{db}.alerts", [alert1_v2.to_dict()])  # the update: a higher version

    def asset(n: int, first_seen: int, updated: int, **fields: Any) -> dict[str, Any]:
        return {"asset_id": f"asset-{m}-{n}", "kind": "model_server", "namespace": ns, "first_seen": first_seen,
                "last_seen": first_seen + HOUR_MS, "updated_ms": updated, **fields}

    insert_json(
        client,
        f"{db}.inventory",
        [
            asset(1, at(5), at(5), name="ollama (old name)", runtimes=["ollama"]),
            asset(1, at(5), at(50), name="ollama", runtimes=["ollama"], models=["llama3:8b"], public_exposure=1,
                  attributes={"port": "11434"}),
            asset(2, at(6), at(6), name="vllm", runtimes=["vllm"], sanctioned=1),
            asset(3, t0 - 10 * 24 * HOUR_MS, at(7), name="old triton", runtimes=["triton"]),
        ],
    )
    source = f"src-{m}"
    insert_json(
        client,
        f"{db}.dead_letters",
        [
            {"time_ms": at(1), "reason": "invalid JSON at line 3", "source": source, "stage": "normalize",
             "raw": "{oops", "raw_encoding": "utf-8"},
            {"time_ms": at(2), "reason": "invalid JSON at line 17", "source": source, "stage": "normalize",
             "raw": "{again", "raw_encoding": "utf-8"},
            {"time_ms": at(3), "reason": "record of 2000000 bytes is over 1048576", "source": source,
             "stage": "publish", "raw": "", "raw_encoding": "base64"},
        ],
    )
    return ds


@pytest.fixture(scope="module")
def ro(service_settings: Settings) -> Iterator[Client]:
    client = connect(service_settings, readonly=True, database=service_settings.clickhouse.database)
    yield client
    client.close()


@pytest.fixture(scope="module")
def ds(service_settings: Settings) -> Dataset:
    client = connect(service_settings)
    try:
        return seed(client, service_settings.clickhouse.database)
    finally:
        client.close()


HUNTS = load_hunts()


def hunt(ro: Client, name: str, **params: Any) -> list[dict[str, Any]]:
    columns, rows = run_hunt(ro, HUNTS[name], params)
    assert isinstance(rows, Rows) and not rows.truncated
    return [dict(zip(columns, row, strict=True)) for row in rows]


def ms(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp() * 1000) if value.tzinfo is None else int(value.timestamp() * 1000)


# -- every saved hunt on the dataset


def test_top_token_principals(ro: Client, ds: Dataset) -> None:
    rows = [r for r in hunt(ro, "top_token_principals", **ds.window, limit="10000") if ds.marker in r["principal"]]
    assert [(r["principal"], r["api_key_id"]) for r in rows] == [
        (f"user-{ds.marker}-alice", f"key-{ds.marker}-1"),
        (f"user-{ds.marker}-bob", f"key-{ds.marker}-2"),
    ]
    alice, bob = rows
    assert (alice["requests"], alice["tokens_in"], alice["tokens_out"]) == (4, 4_000_000_006, 8_000)
    assert alice["tokens"] == 4_000_008_006 and alice["networks"] == 4 and alice["models"] == ["gpt-4o"]
    assert (bob["requests"], bob["tokens_in"], bob["tokens_out"], bob["networks"]) == (2, 1000, 200, 1)
    assert ms(alice["first_seen"]) == ds.at(10) and ms(alice["last_seen"]) == ds.at(13)
    # The top of the whole window is alice (a billion tokens a call), and the source filter applies.
    assert hunt(ro, "top_token_principals", **ds.window, limit="1")[0]["principal"] == f"user-{ds.marker}-alice"
    bedrock = hunt(ro, "top_token_principals", **ds.window, source="bedrock", limit="10000")
    assert not [r for r in bedrock if ds.marker in r["principal"]]


def test_new_ai_workloads(ro: Client, ds: Dataset) -> None:
    since = {"since": text_time(ds.t0)}
    rows = [r for r in hunt(ro, "new_ai_workloads", **since, limit="100000") if ds.marker in r["asset_id"]]
    assert [r["asset_id"] for r in rows] == [f"asset-{ds.marker}-1", f"asset-{ds.marker}-2"]  # exposed first
    first = rows[0]
    assert first["name"] == "ollama" and first["models"] == ["llama3:8b"]  # the latest version only
    assert first["public_exposure"] == 1 and first["sanctioned"] == 0 and first["attributes"] == {"port": "11434"}
    unsanctioned = hunt(ro, "new_ai_workloads", **since, unsanctioned_only="1", limit="100000")
    assert [r["asset_id"] for r in unsanctioned if ds.marker in r["asset_id"]] == [f"asset-{ds.marker}-1"]


def test_shadow_ai_egress(ro: Client, ds: Dataset) -> None:
    rows = [
        r
        for r in hunt(ro, "shadow_ai_egress", **ds.window, sanctioned_namespaces=ds.sanctioned_namespace, limit="10000")
        if ds.marker in r["workload"]
    ]
    by_workload = {(r["workload"], r["ai_host"]): r for r in rows}
    assert set(by_workload) == {
        (f"{ds.namespace}/chatbot", "api.openai.com"),  # looked up, then connected by address
        (f"vm-{ds.marker}", f"acme-{ds.marker}.openai.azure.com"),  # a subdomain of a listed host
    }
    chatbot = by_workload[(f"{ds.namespace}/chatbot", "api.openai.com")]
    assert (chatbot["dns_lookups"], chatbot["connects"], chatbot["bytes_out"], chatbot["pods"]) == (1, 1, 5000, 1)
    assert chatbot["images"] == ["acme/chatbot:1.2"] and chatbot["cluster"] == "prod-use1"
    vm = by_workload[(f"vm-{ds.marker}", f"acme-{ds.marker}.openai.azure.com")]
    assert (vm["connects"], vm["bytes_out"]) == (1, 700)
    # Without the gateway's namespace sanctioned, its Anthropic traffic shows; a host list narrows it.
    unsanctioned = hunt(ro, "shadow_ai_egress", **ds.window, sanctioned_namespaces="", hosts="api.anthropic.com")
    gateway = [r for r in unsanctioned if ds.marker in r["workload"]]
    assert [(r["workload"], r["connects"], r["dns_lookups"], r["bytes_out"]) for r in gateway] == [
        (f"{ds.sanctioned_namespace}/llm-gateway", 1, 1, 7000)
    ]
    array_literal = hunt(ro, "shadow_ai_egress", **ds.window, hosts="['api.anthropic.com']", sanctioned_namespaces="")
    assert [r["workload"] for r in array_literal if ds.marker in r["workload"]] == [
        f"{ds.sanctioned_namespace}/llm-gateway"
    ]


def test_entity_timeline(ro: Client, ds: Dataset) -> None:
    rows = hunt(ro, "entity_timeline", entity=ds.entity, since=text_time(ds.t0 - HOUR_MS))
    got = [(r["kind"], r["id"]) for r in rows]
    m = ds.marker
    assert got == [
        ("event", f"ev-{m}-1"),
        ("event", f"ev-{m}-2"),
        ("event", f"ev-{m}-3"),
        ("event", f"ev-{m}-4"),
        ("event", f"ev-{m}-5"),
        ("alert", f"alert-{m}-1"),  # first seen at 10.5 min, sorts before the finding of the same time
        ("finding", f"f-{m}-1"),
        ("finding", f"f-{m}-2"),  # inserted twice, shown once
    ]
    assert [ms(r["time"]) for r in rows] == sorted(ms(r["time"]) for r in rows)
    alert = rows[5]
    assert alert["severity"] == "high" and "acknowledged v2" in alert["what"]  # the latest version
    assert rows[4]["summary"] == "python3 app.py" and rows[4]["severity"] == "informational"
    assert hunt(ro, "entity_timeline", entity=ds.entity, since=text_time(ds.t0 - HOUR_MS), limit="3")[-1]["id"] == (
        f"ev-{m}-3"
    )


def test_alerts_by_technique(ro: Client, ds: Dataset) -> None:
    technique = f"AML.T{ds.marker}"
    rows = hunt(ro, "alerts_by_technique", **ds.window, technique=technique)
    assert [(r["technique"], r["alerts"], r["open"], r["max_risk"]) for r in rows] == [
        (technique, 1, 0, 80.0),  # two versions of one alert: counted once, at version 2 (acknowledged)
        (f"{technique}.001", 1, 1, 30.0),  # a sub-technique matches its parent's filter
    ]
    assert rows[0]["riskiest_alerts"] == [f"alert-{ds.marker}-1"] and rows[0]["severities"] == ["high"]
    everything = {r["technique"]: r for r in hunt(ro, "alerts_by_technique", **ds.window, limit="100000")}
    assert everything[technique]["alerts"] == 1


def test_keys_from_many_networks(ro: Client, ds: Dataset) -> None:
    rows = [r for r in hunt(ro, "keys_from_many_networks", **ds.window, limit="100000") if ds.marker in r["api_key_id"]]
    assert [(r["api_key_id"], r["networks"], r["requests"]) for r in rows] == [(f"key-{ds.marker}-1", 4, 4)]
    assert rows[0]["src_ips"] == [f"198.51.100.{i}" for i in range(1, 5)]
    assert rows[0]["principals"] == [f"user-{ds.marker}-alice"]
    low = hunt(ro, "keys_from_many_networks", **ds.window, min_networks="1", limit="100000")
    assert {r["api_key_id"] for r in low if ds.marker in r["api_key_id"]} == {
        f"key-{ds.marker}-1",
        f"key-{ds.marker}-2",
    }


def test_dead_letters_by_reason(ro: Client, ds: Dataset) -> None:
    rows = hunt(ro, "dead_letters_by_reason", **ds.window, source=f"src-{ds.marker}")
    assert [(r["stage"], r["reason_pattern"], r["records"]) for r in rows] == [
        ("normalize", "invalid JSON at line N", 2),
        ("publish", "record of N bytes is over N", 1),
    ]
    assert rows[0]["example_reason"] == "invalid JSON at line 3" and rows[0]["example_raw"] == "{oops"


def test_top_egress_destinations(ro: Client, ds: Dataset) -> None:
    rows = hunt(ro, "top_egress_destinations", **ds.window, namespace=ds.namespace)
    assert [(r["destination"], r["bytes_out"], r["connects"], r["dns_queries"]) for r in rows] == [
        (OPENAI_IP, 5000, 1, 0),
        ("api.openai.com", 0, 0, 1),
    ]
    assert rows[0]["sample_workloads"] == [f"{ds.namespace}/chatbot"] and rows[0]["ports"] == [443]
    internal = hunt(ro, "top_egress_destinations", **ds.window, namespace=ds.namespace, include_internal="1")
    assert {r["destination"] for r in internal} == {OPENAI_IP, "api.openai.com", "10.0.0.5"}


def test_every_saved_hunt_runs_with_its_defaults(ro: Client, ds: Dataset) -> None:
    for name, saved in HUNTS.items():
        params = {"entity": ds.entity} if "entity" in saved.params else {}
        columns, _ = run_hunt(ro, saved, params)
        assert columns, name


# -- the materialized views


def test_views_aggregate_what_was_inserted(ro: Client, ds: Dataset) -> None:
    inference = ro.query(
        "SELECT principal, sum(requests), sum(tokens_in), sum(tokens_out), uniqMerge(src_ips) "
        "FROM inference_hourly WHERE hour = {hour:DateTime} AND principal LIKE {like:String} "
        "GROUP BY principal ORDER BY principal",
        parameters={"hour": text_time(ds.t0)[:19], "like": f"user-{ds.marker}-%"},
    ).result_rows
    m = ds.marker
    # The cloudtrail call without a model is not inference.
    assert inference == [(f"user-{m}-alice", 4, 4_000_000_006, 8_000, 4), (f"user-{m}-bob", 2, 1000, 200, 1)]
    egress = ro.query(
        "SELECT workload, destination, dst_port, sum(connects), sum(dns_queries), sum(bytes_out), uniqMerge(pods) "
        "FROM egress_hourly WHERE hour = {hour:DateTime} AND namespace IN {ns:Array(String)} "
        "GROUP BY workload, destination, dst_port ORDER BY workload, destination",
        parameters={"hour": text_time(ds.t0)[:19], "ns": [ds.namespace, f"other-{m}"]},
    ).result_rows
    assert egress == [
        (f"{ds.namespace}/chatbot", "10.0.0.5", 5432, 1, 0, 100, 1),
        (f"{ds.namespace}/chatbot", OPENAI_IP, 443, 1, 0, 5000, 1),
        (f"{ds.namespace}/chatbot", "api.openai.com", 0, 0, 1, 0, 1),
        (f"other-{m}/web", OPENAI_IP, 443, 1, 0, 900, 1),  # StatefulSet ordinal dropped; listen not counted
    ]


# -- read-only


@pytest.fixture()
def scratch(ch, service_settings: Settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A table of this test's own to aim writes at: if read-only ever broke, only it would suffer."""
    table = f"hunt_scratch_{uuid.uuid4().hex[:8]}"
    ch.command(f"CREATE TABLE {service_settings.clickhouse.database}.{table} (a UInt8) ENGINE = MergeTree ORDER BY a")
    ch.command(f"INSERT INTO {service_settings.clickhouse.database}.{table} VALUES (1)")  # noqa: S608 - db from settings
    yield table
    ch.command(f"DROP TABLE IF EXISTS {service_settings.clickhouse.database}.{table}")


def scratch_rows(ch, service_settings: Settings, table: str) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    return list(ch.query(f"SELECT a FROM {service_settings.clickhouse.database}.{table}").result_rows)  # noqa: S608


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO {table} VALUES (2)",
        "DROP TABLE {table}",
        "ALTER TABLE {table} DELETE WHERE 1",
        "TRUNCATE TABLE {table}",
        "CREATE TABLE {table}_2 (a UInt8) ENGINE = Memory",
        "SELECT * FROM {table} SETTINGS max_result_rows = 0",
    ],
)
def test_writes_are_refused_through_the_cli(ch, service_settings: Settings, scratch: str, sql: str) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(hunt_app, ["--sql", sql.format(table=scratch)], obj=service_settings)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: refused: hunts are read-only (ClickHouse: ")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert scratch_rows(ch, service_settings, scratch) == [(1,)]


def test_writes_are_refused_through_run_sql(ro: Client, ch, service_settings: Settings, scratch: str) -> None:  # type: ignore[no-untyped-def]
    for client in (ro, ch):  # even a writable client: every hunt query carries readonly=1
        with pytest.raises(ReadOnlyRefused, match="refused: hunts are read-only"):
            run_sql(client, f"INSERT INTO {service_settings.clickhouse.database}.{scratch} VALUES (2)")  # noqa: S608
        with pytest.raises(ReadOnlyRefused):
            run_sql(client, f"DROP TABLE {service_settings.clickhouse.database}.{scratch}")
    assert scratch_rows(ch, service_settings, scratch) == [(1,)]


def test_cli_runs_a_saved_hunt_as_json(service_settings: Settings, ds: Dataset) -> None:
    args = ["entity_timeline", "--param", f"entity={ds.entity}", "-p", f"since={text_time(ds.t0 - HOUR_MS)}"]
    result = CliRunner().invoke(hunt_app, [*args, "--format", "json"], obj=service_settings)
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows][:2] == [f"ev-{ds.marker}-1", f"ev-{ds.marker}-2"]
    assert rows[0]["time"].endswith("Z")

    cut = CliRunner().invoke(hunt_app, [*args, "--max-rows", "2", "-f", "csv"], obj=service_settings)
    assert cut.exit_code == 0 and len(cut.stdout.splitlines()) == 3  # header + 2 rows
    assert "cut at --max-rows 2" in cut.stderr


def test_cli_param_errors_name_the_hunt_file_and_param(service_settings: Settings, ds: Dataset) -> None:
    def run(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(hunt_app, list(args), obj=service_settings)

    missing = run("entity_timeline")
    assert missing.exit_code == 2 and "entity_timeline.sql" in missing.stderr and "'entity'" in missing.stderr
    unknown = run("entity_timeline", "-p", f"entity={ds.entity}", "-p", "colour=red")
    assert unknown.exit_code == 2 and "unknown param 'colour'" in unknown.stderr
    typed = run("entity_timeline", "-p", f"entity={ds.entity}", "-p", "limit=lots")
    assert typed.exit_code == 2 and "entity_timeline.sql" in typed.stderr and "'limit'" in typed.stderr
    assert "UInt32" in typed.stderr
    when = run("entity_timeline", "-p", f"entity={ds.entity}", "-p", "since=last tuesday")
    assert when.exit_code == 2 and "'since'" in when.stderr and "DateTime64(3)" in when.stderr


def test_adhoc_sql_with_bound_params_and_timeout(service_settings: Settings, ro: Client) -> None:
    columns, rows = run_sql(ro, "SELECT {n:UInt8} + 1 AS n, {h:Array(String)} AS h", {"n": "41", "h": "a,b"})
    assert columns == ["n", "h"] and rows == [(42, ["a", "b"])]
    result = CliRunner().invoke(
        hunt_app, ["--sql", "SELECT count() FROM numbers(100000000000000)", "--timeout", "1"], obj=service_settings
    )
    assert result.exit_code == 1 and "timed out after 1 s" in result.stderr


# -- redelivery


def test_redelivered_events_are_counted_once(ch, ds: Dataset) -> None:  # type: ignore[no-untyped-def]
    marker = f"redeliver-{uuid.uuid4().hex[:8]}"
    batch = [
        Event(event_id=f"{marker}-{i}", time_ms=ds.at(45 + i), source="gateway", class_uid=API_ACTIVITY,
              activity="chat_completion", principal=marker, model_id="gpt-4o", tokens_in=10).to_dict()
        for i in range(3)
    ]
    table = f"{ds.db}.events"
    token = f"{marker}-batch-1"
    insert_json(ch, table, batch, insert_deduplication_token=token)
    insert_json(ch, table, batch, insert_deduplication_token=token)  # a retried insert: dropped at once

    def count(final: str = "") -> int:
        sql = f"SELECT count() FROM {table} {final} WHERE principal = {{p:String}}"  # noqa: S608 - table from settings
        return int(ch.query(sql, parameters={"p": marker}).result_rows[0][0])

    assert count() == 3
    insert_json(ch, table, batch)  # redelivered in another batch: stored again, collapsed by FINAL
    assert count("FINAL") == 3
    assert count() in (3, 6)  # 6 until a background merge collapses them
    distinct = ch.query(
        f"SELECT uniqExact(event_id) FROM {table} WHERE principal = {{p:String}}",  # noqa: S608 - table from settings
        parameters={"p": marker},
    )
    assert distinct.result_rows == [(3,)]
