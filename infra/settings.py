"""One frozen settings object, built once from the environment and passed down.

Every field reads ``AIWARDEN_<NAME>`` (nested: ``AIWARDEN_<GROUP>__<NAME>``). Nothing else in
aiwarden reads ``os.environ``. Unset service addresses mean "start the local one". ``AIWARDEN_CONFIG``
names an estate file (``infra.estate``) holding the detection and containment settings; environment
variables override it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from detectors.config import DetectionConfig
from infra.estate import CONFIG_ENV, EstateFileSource


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers (host:port,…). Unset: the local broker is started."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when the protocol is SASL_*."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    ssl_cafile: Path | None = Field(None, description="CA bundle for SSL/SASL_SSL.")
    ssl_certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS with SSL/SASL_SSL.")
    ssl_keyfile: Path | None = Field(None, description="Private key (PEM) of the client certificate.")
    ssl_check_hostname: bool = Field(True, description="Check the broker's certificate matches its host name.")
    partitions: int = Field(4, ge=1, description="Partitions of every aiwarden topic created by up/migrate.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of aiwarden topics.")
    version: str = Field("4.1.1", description="Apache Kafka version of the local broker (Maven artifact).")
    heap: str = Field("768m", description="JVM heap (-Xmx) of the local broker.")


class ClickHouseSettings(_Group):
    url: str | None = Field(
        None, description="ClickHouse HTTP(S) URL, e.g. https://ch:8443. Unset: the local chdb server is started."
    )
    database: str = Field("aiwarden", description="Database holding aiwarden's tables.")
    username: str = Field("default", description="ClickHouse user.")
    password: SecretStr = Field(SecretStr(""), description="ClickHouse password (never logged).")
    verify_tls: bool = Field(True, description="Verify the server certificate on https URLs.")
    ca_cert: Path | None = Field(None, description="CA bundle for https URLs.")
    client_cert: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS on https URLs.")
    client_cert_key: Path | None = Field(None, description="Private key (PEM) of the client certificate.")
    timeout_s: int = Field(
        120, ge=1, description="Longest wait for one ClickHouse request; the sink retries an insert that times out."
    )
    ttl_days: int = Field(90, ge=1, description="Days rows are kept in the events and findings tables.")
    cluster: str | None = Field(None, description="Cluster name: DDL runs ON CLUSTER with replicated tables.")


class WorkerSettings(_Group):
    app_id: str = Field(
        "aiwarden", description="Application id: prefix of the consumer groups, changelog and internal topics."
    )
    web_port: int = Field(0, ge=0, le=65535, description="Worker web server port; 0 picks a free one.")
    web_bind: str = Field(
        "127.0.0.1", description="Address the worker web server (console, /metrics) listens on. Every endpoint "
        "but /health asks for a sign-in or an API token; serve it over HTTPS (a TLS-terminating proxy) when it "
        "is not loopback."
    )
    session_timeout_s: float = Field(
        10.0, gt=0, description="Kafka consumer session timeout; low keeps group joins quick."
    )
    sink_batch_rows: int = Field(10_000, ge=1, description="Rows per ClickHouse insert batch.")
    sink_batch_seconds: float = Field(1.0, gt=0, description="Longest wait before a partial batch is inserted.")
    batch_records: int = Field(
        1_000, ge=1, description="Most records the pipeline engine takes from Kafka in one batch."
    )
    commit_interval_s: float = Field(
        0.1, gt=0, description="How often the pipeline commits its Kafka transaction (outputs, changed state and "
        "input offsets together); each hop's records become visible downstream at a commit."
    )
    transaction_timeout_s: float = Field(
        10.0, ge=1, description="Kafka transaction timeout: how long consumers may wait on the open transaction "
        "of a worker that died and was not restarted."
    )
    state_store: Literal["memory", "rocksdb"] = Field(
        "memory", description="Where the pipeline keeps committed per-entity state: memory (rebuilt from the "
        "changelog at assignment) or rocksdb (on disk under the state dir; replays only the changelog's tail)."
    )
    instance_id: str | None = Field(
        None, description="This worker's stable name in its group (its Kafka transactional id); unset: "
        "<host name>-<n>, the first slot under the state dir not held by a running worker."
    )
    checkpoint_interval_s: float = Field(
        30.0, gt=0, description="How often anomaly models are checkpointed to their changelog table."
    )
    estate_reload_interval_s: float = Field(
        5.0, gt=0, description="How often the worker checks the estate file (AIWARDEN_CONFIG) for changes; a valid "
        "change applies to detection and the containment policy from the next batch on, an invalid one is logged "
        "and the settings in use stay."
    )


IngestEndpoint = Literal["k8s-audit", "falco", "otlp", "litellm", "scan"]


class IngestSettings(_Group):
    max_record_bytes: int = Field(1_048_576, ge=1024, description="Largest raw record accepted; larger go to the DLQ.")
    max_depth: int = Field(32, ge=2, description="Deepest JSON nesting accepted.")
    max_string_chars: int = Field(65_536, ge=64, description="Longest string value accepted in a record.")
    prompt_chars: int = Field(2_048, ge=0, description="Prompt text kept in the envelope (truncated beyond).")
    port: int = Field(9480, ge=0, le=65535, description="Port `aiwarden ingest` listens on (0 picks a free one).")
    bind: str = Field(
        "127.0.0.1",
        description="Address `aiwarden ingest` listens on; set 0.0.0.0 (with tokens and TLS) to take senders "
        "from other hosts or a load balancer.",
    )
    tokens: dict[IngestEndpoint, tuple[str, ...]] = Field(
        {},
        description="Endpoint (k8s-audit, falco, otlp, litellm, scan) -> SHA-256 hex digests of the bearer tokens it "
        "accepts (`aiwarden ingest token` makes one). An endpoint with none refuses every request unless mutual "
        "TLS is on.",
    )
    max_body_bytes: int = Field(
        16_777_216, ge=1024, description="Largest request body `aiwarden ingest` accepts (413 beyond), decompressed."
    )
    delivery_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for Kafka to confirm a request's records before `aiwarden ingest` "
        "answers 503 (the sender retries; event ids are deterministic, so nothing is counted twice)."
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After (seconds) sent with a 503 while Kafka is unavailable.")
    tls_certfile: Path | None = Field(None, description="Server certificate (PEM) of `aiwarden ingest`; set: HTTPS.")
    tls_keyfile: Path | None = Field(None, description="Private key (PEM) of the ingest server certificate.")
    tls_client_cafile: Path | None = Field(
        None, description="CA bundle of client certificates: set, `aiwarden ingest` requires mutual TLS."
    )

    @field_validator("tokens")
    @classmethod
    def _digests(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for endpoint, digests in value.items():
            for digest in digests:
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                    msg = f"AIWARDEN_INGEST__TOKENS[{endpoint!r}]: not a SHA-256 hex digest (64 hex characters)"
                    raise ValueError(msg)
        return {endpoint: tuple(d.lower() for d in digests) for endpoint, digests in value.items()}


class ContainmentSettings(_Group):
    webhook_url: str | None = Field(None, description="Where containment webhooks are delivered (unset: none sent).")
    secret: SecretStr = Field(
        SecretStr(""), description="Standard Webhooks signing secret (whsec_<base64> or plain; never logged)."
    )
    policy_path: Path = Field(
        Path(__file__).resolve().parent / "containment-policy.yaml",
        description="YAML containment policy (rules, allowlists, blast-radius limits, dry-run); the default acts "
        "on alerts about AI assets the inventory knows, in no particular namespace. In an estate file a relative "
        "path is relative to the estate file.",
    )
    dry_run: bool = Field(True, description="Record containment actions as dry_run and send nothing.")
    max_attempts: int = Field(8, ge=1, description="Delivery attempts before an action is dead-lettered.")
    backoff_base_s: float = Field(0.5, gt=0, description="First retry delay (exponential, full jitter).")
    backoff_cap_s: float = Field(60.0, gt=0, description="Longest retry delay.")
    timeout_s: float = Field(5.0, gt=0, description="Timeout of one delivery attempt.")
    concurrency: int = Field(4, ge=1, description="Deliveries in flight per endpoint.")
    max_action_age_s: float = Field(
        3600.0, gt=0, description="An action not delivered this long after its decision expires unexecuted."
    )
    release_on_resolutions: tuple[Literal["true_positive", "false_positive", "benign", "duplicate"], ...] = Field(
        ("false_positive", "benign"),
        description="Resolving an alert as one of these, by a responder (or admin), releases the containment "
        "carried out for it (its release webhooks are sent, as POST /actions/{id}/release does); an analyst's "
        "resolution keeps it and says so. Empty: releases are only ever explicit.",
    )


class SigmaSettings(_Group):
    rules: tuple[Path, ...] = Field(
        (),
        description="Sigma rule files or folders (searched recursively) loaded besides the built-in pack, as a JSON "
        "list (AIWARDEN_SIGMA__RULES='[\"/etc/aiwarden/sigma\"]'); a bad rule is logged with its file, the rest load.",
    )
    pack: bool = Field(True, description="Load aiwarden's own Sigma rule pack (detectors/sigma/rules).")
    reload_interval_s: float = Field(
        5.0, gt=0, description="How often the worker checks rule files for changes and reloads what changed."
    )


class SecurityLakeSettings(_Group):
    bucket: str | None = Field(
        None, description="Amazon Security Lake bucket (aws-security-data-lake-<region>-<id>) `aiwarden security-lake` "
        "writes OCSF Parquet to; unset: the writer refuses to start."
    )
    prefix: str = Field(
        "ext/aiwarden", description="Key prefix Security Lake gave the custom source: ext/<source name> (or "
        "ext/<source name>/<source version>)."
    )
    region: str | None = Field(None, description="AWS Region of the lake: the region=… partition and the S3 client's.")
    account_id: str | None = Field(
        None, description="AWS account id (or the external id chosen for the custom source): the accountId=… partition."
    )
    endpoint_url: str | None = Field(
        None, description="S3 endpoint; unset: AWS's own (set for an S3-compatible store)."
    )
    access_key_id: str | None = Field(None, description="AWS access key id; unset: boto3's default credential chain.")
    secret_access_key: SecretStr | None = Field(None, description="AWS secret access key (never logged).")
    session_token: SecretStr | None = Field(
        None, description="AWS session token of temporary credentials (never logged)."
    )
    flush_records: int = Field(10_000, ge=1, description="OCSF records buffered before a Parquet object is written.")
    flush_interval_s: float = Field(
        300.0, gt=0, description="Longest wait before buffered records are written (Security Lake wants objects every "
        "5 minutes to 1 day)."
    )


class AuthSettings(_Group):
    session_secret: SecretStr = Field(
        SecretStr(""), description="Key signing console session cookies and CSRF "
        "tokens; workers behind one address must share it. Empty: generated once into <state dir>/session-secret."
    )
    session_ttl_s: int = Field(
        8 * 3600, ge=60, description="A console session expires this long after sign-in."
    )
    cookie_secure: bool = Field(
        True, description="Mark the session cookie Secure (sent over HTTPS only; "
        "browsers also send it to http://localhost). Turn off only for plain HTTP on a trusted network."
    )
    max_failures: int = Field(
        5, ge=1, description="Failed sign-ins of one user within lockout_s that lock it."
    )
    lockout_s: int = Field(
        300, ge=1, description="How long a locked user cannot sign in (and the window "
        "failures are counted in)."
    )
    max_attempts_per_ip: int = Field(
        30, ge=1, description="Sign-in attempts one address may make per minute."
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without authentication (for a scraper "
        "on a trusted network); otherwise a scraper sends an API token as a bearer token."
    )


class OIDCSettings(_Group):
    issuer: str | None = Field(
        None, description="OpenID Connect issuer URL (its /.well-known/openid-configuration is read); unset: "
        "console sign-in with local accounts only."
    )
    client_id: str = Field("aiwarden", description="OpenID Connect client id of the console.")
    client_secret: SecretStr = Field(SecretStr(""), description="OpenID Connect client secret (never logged).")
    redirect_url: str | None = Field(
        None, description="The callback URL registered at the provider (…/auth/oidc/callback); unset: derived "
        "from the address the browser used."
    )
    groups_claim: str = Field("groups", description="ID token claim holding the user's groups.")
    role_groups: dict[str, tuple[str, ...]] = Field(
        {}, description="Role -> provider groups that grant it, as JSON ({\"admin\": [\"soc-admins\"], "
        "\"analyst\": [\"soc\"]}); a user gets the highest role any of their groups grants, none: refused."
    )
    scopes: str = Field("openid email profile", description="Scopes asked for at sign-in.")


class ClientSettings(_Group):
    url: str | None = Field(
        None, description="The worker web server the SOC commands (alerts ack, actions, "
        "exceptions) talk to, e.g. http://127.0.0.1:6066."
    )
    token: SecretStr = Field(
        SecretStr(""), description="The API token those commands send (never logged)."
    )


class Settings(BaseSettings):
    """aiwarden settings; env prefix ``AIWARDEN_``, nested delimiter ``__``."""

    model_config = SettingsConfigDict(
        env_prefix="AIWARDEN_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    config: Path | None = Field(
        None, description="Estate file (YAML, sections detection and containment) read below the environment; "
        "the worker reloads it on change (infra/estate.py)."
    )
    state_dir: Path = Field(Path(".aiwarden"), description="Where local services keep data, logs and ports.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "aiwarden", description="Downloads shared by checkouts (Kafka's jars)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    worker: WorkerSettings = WorkerSettings()
    ingest: IngestSettings = IngestSettings()
    detection: DetectionConfig = DetectionConfig()
    containment: ContainmentSettings = ContainmentSettings()
    sigma: SigmaSettings = SigmaSettings()
    security_lake: SecurityLakeSettings = SecurityLakeSettings()
    auth: AuthSettings = AuthSettings()
    oidc: OIDCSettings = OIDCSettings()
    client: ClientSettings = ClientSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the estate file (argument ``config``, else ``AIWARDEN_CONFIG``)."""
        given = init_settings.init_kwargs.get("config") if isinstance(init_settings, InitSettingsSource) else None
        path = given or os.environ.get(CONFIG_ENV, "")
        estate = (EstateFileSource(settings_cls, Path(path)),) if path else ()
        return (init_settings, env_settings, *estate, dotenv_settings, file_secret_settings)


def estate_settings(path: Path) -> Settings:
    """The settings a worker started now with estate file ``path`` would have (the environment over the
    file): what a reload applies. Raises ``EstateFileError`` / ``ValidationError`` naming the problem."""
    return Settings(config=path)


def env_var_names(model: type[BaseModel] = Settings, prefix: str = "AIWARDEN_") -> dict[str, str]:
    """Every setting's env var, mapped to its description (the README table is checked against it)."""
    names: dict[str, str] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(env_var_names(annotation, f"{prefix}{name.upper()}__"))
        else:
            names[f"{prefix}{name.upper()}"] = field.description or ""
    return names


def markdown_table() -> str:
    """The README's settings table, generated from the fields (``python -m infra.settings``)."""
    lines = ["| env var | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
                continue
            default = field.default
            if isinstance(default, SecretStr):
                shown = "empty" if not default.get_secret_value() else "(set)"
            elif default is None:
                shown = "unset"
            elif name == "cache_dir":
                shown = "`~/.cache/aiwarden`"
            elif name == "policy_path":
                shown = "`infra/containment-policy.yaml`"
            elif isinstance(default, tuple | list | frozenset):
                shown = "`" + ", ".join(str(v) for v in default)[:80] + ("…`" if len(str(default)) > 82 else "`")
            elif isinstance(default, dict):
                shown = f"{len(default)} entries" if default else "`{}`"
            else:
                shown = f"`{default}`"
            lines.append(f"| `{prefix}{name.upper()}` | {shown} | {field.description or ''} |")

    walk(Settings, "AIWARDEN_")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
