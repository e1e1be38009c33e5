"""The one normalized event every source is turned into.

Flat on purpose: one ClickHouse row per event, cheap to build and encode on the hot path. Field
groups follow OCSF (class/category/severity/time, actor, device/workload, cloud, api, src/dst
endpoint); ``raw`` keeps the original record as JSON text.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from operator import itemgetter
from typing import Any

# OCSF class ids used by aiwarden (https://schema.ocsf.io), with their class and category names.
OCSF_CLASSES: dict[int, tuple[str, str]] = {
    1001: ("File System Activity", "System Activity"),
    1007: ("Process Activity", "System Activity"),
    2002: ("Vulnerability Finding", "Findings"),
    2004: ("Detection Finding", "Findings"),
    4001: ("Network Activity", "Network Activity"),
    4003: ("DNS Activity", "Network Activity"),
    6003: ("API Activity", "Application Activity"),
}
FILE_ACTIVITY, PROCESS_ACTIVITY, VULNERABILITY_FINDING, DETECTION_FINDING = 1001, 1007, 2002, 2004
NETWORK_ACTIVITY, DNS_ACTIVITY, API_ACTIVITY = 4001, 4003, 6003

# OCSF severity_id
SEVERITY_NAMES = ("unknown", "informational", "low", "medium", "high", "critical", "fatal")

SOURCES = ("falco", "native", "cloudtrail", "k8s_audit", "bedrock", "gateway", "otel_genai",
           "trivy", "trivy_operator", "grype", "cyclonedx")


@dataclass(slots=True)
class Event:
    """A normalized security event; ``entities`` lists every identifier (see ``schemas.entities``)."""

    event_id: str
    time_ms: int
    source: str
    class_uid: int
    activity: str
    severity_id: int = 1
    message: str = ""
    # actor
    principal: str = ""
    api_key_id: str = ""
    user_agent: str = ""
    # device / workload
    cluster: str = ""
    namespace: str = ""
    pod: str = ""
    container_id: str = ""
    image: str = ""
    host: str = ""
    # process and file
    process_name: str = ""
    process_cmdline: str = ""
    parent_process_name: str = ""
    file_path: str = ""
    # cloud and api
    cloud_provider: str = ""
    account_id: str = ""
    region: str = ""
    api_service: str = ""
    api_operation: str = ""
    api_status: str = ""
    request_id: str = ""
    resource: str = ""
    # network endpoints
    src_ip: str = ""
    dst_ip: str = ""
    dst_port: int = 0
    dst_host: str = ""
    bytes_out: int = 0
    # inference
    model_id: str = ""
    model_endpoint: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    prompt: str = ""
    # keys and context
    entity_id: str = ""
    entities: list[str] = field(default_factory=list)
    rule: str = ""
    tags: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def class_name(self) -> str:
        return OCSF_CLASSES[self.class_uid][0]

    @property
    def category_name(self) -> str:
        return OCSF_CLASSES[self.class_uid][1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Build from a decoded dict; unknown keys are a ``TypeError`` (the caller dead-letters it).

        A dict with exactly every field (what ``to_dict`` and the normalize agent write) is passed
        positionally: ``cls(**data)`` with ~45 keys decoded by orjson costs ~10 µs, since decoded keys
        are not the interned parameter names and CPython then matches each keyword by string compare.
        Anything else (missing, unknown keys) goes through ``cls(**data)``, defaults and errors included.
        """
        if type(data) is dict and len(data) == _FIELD_COUNT and cls is Event:
            try:
                values = _field_values(data)
            except KeyError:  # an unknown key in place of a field: let cls(**data) say which
                pass
            else:
                return cls(*values)
        return cls(**data)


EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Event))
_FIELD_COUNT = len(EVENT_FIELDS)
_field_values = itemgetter(*EVENT_FIELDS)


# blake2b states that have hashed ``<source>\0`` already: copying one is cheaper than a new hash.
_ID_SEEDS = {source: hashlib.blake2b(source.encode() + b"\0", digest_size=16) for source in SOURCES}


def event_id(source: str, identity: str | bytes) -> str:
    """Deterministic id: the vendor's record id when it has one, else the raw bytes.

    The same record always gets the same id, so redelivery and re-publishing never double it.
    """
    seed = _ID_SEEDS.get(source)
    digest = seed.copy() if seed is not None else hashlib.blake2b(source.encode() + b"\0", digest_size=16)
    digest.update(identity.encode() if isinstance(identity, str) else identity)
    return digest.hexdigest()


def unique(ids: list[str]) -> list[str]:
    """Entity ids without blanks or repeats, in first-seen order."""
    return [i for i in dict.fromkeys(ids) if i and i[-1] != ":"]
