"""``aiwarden estate learn``: a proposed estate file from what the estate already does.

An estate without allowlists yet runs the worker in learning mode for a while
(``AIWARDEN_DETECTION__LEARNING_UNTIL``: the allowlist rules' findings are recorded, not alerted), then
asks ClickHouse what each namespace, principal and key did meanwhile, read-only over the ``events`` table:

* AI workloads (an AI runtime in the image, process or command line, the detectors' own vocabulary):
  their namespaces → ``approved_namespaces``, their images → ``approved_images`` (without tag);
* AI API hosts each namespace reached (DNS, connects) → ``sanctioned_ai_egress``;
* models invoked → ``approved_models``, and who invoked them → ``approved_model_users``;
* principals that wrote training data (the estate's ``training_buckets`` / ``training_prefixes``) →
  ``approved_data_writers``.

The proposal is the estate (``--base``, else the defaults) with what was learned added, each learned
entry commented with where it came from (events, first and last seen, an example); what the estate
already allowed stays as it was. Nothing is approved by being seen: review it, then use it as the
estate file (``aiwarden config check`` validates it; a running worker reloads it).
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml

from detectors.config import DetectionConfig
from detectors.policy import Policy
from infra.estate import EstateFileError, load

estate_app = typer.Typer(no_args_is_help=True)
QUERY_TIMEOUT_S = 300

ROW_LIMIT = 10_000  # groups per query; an estate with more is summarized by the busiest

QUERIES: dict[str, str] = {
    "workloads": """
        SELECT namespace, image, process_name, any(process_cmdline), count(), min(time_ms), max(time_ms)
        FROM events
        WHERE time_ms >= {since:Int64} AND time_ms < {until:Int64} AND namespace != ''
          AND source IN ('falco', 'native', 'k8s_audit')
        GROUP BY namespace, image, process_name ORDER BY count() DESC LIMIT {limit:UInt32}""",
    "egress": """
        SELECT namespace, dst_host, count(), min(time_ms), max(time_ms)
        FROM events
        WHERE time_ms >= {since:Int64} AND time_ms < {until:Int64} AND namespace != '' AND dst_host != ''
        GROUP BY namespace, dst_host ORDER BY count() DESC LIMIT {limit:UInt32}""",
    "models": """
        SELECT model_id, principal, count(), min(time_ms), max(time_ms), uniqExact(api_key_id)
        FROM events
        WHERE time_ms >= {since:Int64} AND time_ms < {until:Int64} AND model_id != ''
          AND source IN {sources:Array(String)}
        GROUP BY model_id, principal ORDER BY count() DESC LIMIT {limit:UInt32}""",
    "data_writers": """
        SELECT principal, splitByChar('/', resource)[1] AS bucket, any(resource), count(), min(time_ms), max(time_ms)
        FROM events
        WHERE time_ms >= {since:Int64} AND time_ms < {until:Int64} AND principal != '' AND resource != ''
          AND api_operation IN {operations:Array(String)} AND api_status = 'success'
        GROUP BY principal, bucket ORDER BY count() DESC LIMIT {limit:UInt32}""",
}


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Seen:
    """How often and when something was seen, with an example of it."""

    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    example: str = ""

    def add(self, count: int, first_ms: int, last_ms: int, example: str = "") -> None:
        self.first_ms = min(self.first_ms, first_ms) if self.count else first_ms
        self.last_ms = max(self.last_ms, last_ms)
        self.count += count
        self.example = self.example or example

    def comment(self) -> str:
        example = f"; e.g. {self.example}" if self.example else ""
        return f"learned: {self.count} events, {_when(self.first_ms)} .. {_when(self.last_ms)}{example}"


@dataclass
class Proposal:
    """What the estate did in ``since_ms`` .. ``until_ms`` that its allowlists do not yet allow."""

    since_ms: int
    until_ms: int
    namespaces: dict[str, Seen] = field(default_factory=dict)
    images: dict[str, Seen] = field(default_factory=dict)
    egress: dict[str, dict[str, Seen]] = field(default_factory=dict)
    models: dict[str, Seen] = field(default_factory=dict)
    model_users: dict[str, Seen] = field(default_factory=dict)
    data_writers: dict[str, Seen] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not any((self.namespaces, self.images, self.egress, self.models, self.model_users,
                        self.data_writers))


def image_prefix(image: str) -> str:
    """``registry/repo:tag`` or ``repo@sha256:…`` → ``registry/repo`` (approved_images are prefixes)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def learn(client: Any, config: DetectionConfig, since_ms: int, until_ms: int,
          settings: dict[str, Any] | None = None) -> Proposal:
    """Ask ClickHouse (``client``: read-only) what the estate did; keep what ``config`` does not allow yet."""
    policy = Policy.of(config)
    proposal = Proposal(since_ms, until_ms)
    params: dict[str, Any] = {"since": since_ms, "until": until_ms, "limit": ROW_LIMIT,
                              "sources": sorted(config.inference_sources),
                              "operations": list(config.data_write_operations)}

    def rows(name: str) -> list[Any]:
        return list(client.query(QUERIES[name], parameters=params, settings=settings or {}).result_rows)

    for namespace, image, process, cmdline, n, first, last in rows("workloads"):
        runtime = policy.runtime_in(image) or policy.runtime_in(process) or policy.runtime_in(cmdline[:512])
        if not runtime:
            continue
        what = f"{runtime} ({process or 'process'}{f', image {image}' if image else ''})"
        if namespace not in policy.approved_namespaces:
            proposal.namespaces.setdefault(namespace, Seen()).add(n, first, last, what)
        if image and config.approved_images and not policy.image_approved(image):
            proposal.images.setdefault(image_prefix(image), Seen()).add(n, first, last, f"{image} in {namespace}")
    for namespace, host, n, first, last in rows("egress"):
        host = host.lower().rstrip(".")
        if policy.is_ai_host(host) and not policy.egress_sanctioned(namespace, host):
            proposal.egress.setdefault(namespace, {}).setdefault(host, Seen()).add(n, first, last)
    for model, principal, n, first, last, keys in rows("models"):
        if not any(fnmatch.fnmatchcase(model.lower(), p.lower()) for p in config.approved_models):
            proposal.models.setdefault(model, Seen()).add(n, first, last, principal and f"by {principal}")
        if principal and not policy.model_user_approved(principal):
            proposal.model_users.setdefault(principal, Seen()).add(n, first, last, f"{model}, {keys} key(s)")
    for principal, bucket, resource, n, first, last in rows("data_writers"):
        target = policy.training_target(bucket) or policy.training_target(resource)
        if target and not policy.data_writer_approved(principal):
            proposal.data_writers.setdefault(principal, Seen()).add(n, first, last, f"wrote {target}")
    return proposal


# --- the proposed estate file ------------------------------------------------------------------------------

LEARNED_FIELDS = ("approved_namespaces", "approved_images", "sanctioned_ai_egress", "approved_models",
                  "approved_model_users", "approved_data_writers")


def _quoted(value: str) -> str:
    return orjson.dumps(value).decode()  # a JSON string is a YAML double-quoted scalar


def _list(name: str, kept: tuple[str, ...], learned: dict[str, Seen], indent: str = "  ") -> list[str]:
    lines = [f"{indent}{name}:"]
    lines += [f"{indent}  - {_quoted(v)}" for v in kept]
    lines += [f"{indent}  - {_quoted(v)}  # {seen.comment()}" for v, seen in learned.items() if v not in kept]
    if len(lines) == 1:
        return [f"{indent}{name}: []"]
    return lines


def render(proposal: Proposal, config: DetectionConfig, base: dict[str, Any], source: str) -> str:
    """The proposed estate file: ``base`` (an estate file's sections) with the learned entries added."""
    detection = dict(base.get("detection", {}))
    lines = [
        f"# Proposed by `aiwarden estate learn` from the events in ClickHouse, {_when(proposal.since_ms)} .. "
        f"{_when(proposal.until_ms)} (UTC), over {source}.",
        "# Entries marked 'learned' are what the estate did then that its allowlists did not allow yet;",
        "# being seen does not make them right: review each, delete what should alert, then",
        "#   aiwarden config check <this file>   and use it as AIWARDEN_CONFIG (a running worker reloads it).",
        "detection:",
    ]
    lines += _list("approved_namespaces", config.approved_namespaces, proposal.namespaces)
    lines += _list("approved_images", config.approved_images, proposal.images)
    lines.append("  sanctioned_ai_egress:")
    namespaces = dict.fromkeys([*config.sanctioned_ai_egress, *proposal.egress])
    for namespace in namespaces:
        lines += _list(_quoted(namespace), config.sanctioned_ai_egress.get(namespace, ()),
                       proposal.egress.get(namespace, {}), indent="    ")
    lines += _list("approved_models", config.approved_models, proposal.models)
    lines += _list("approved_model_users", config.approved_model_users, proposal.model_users)
    lines += _list("approved_data_writers", config.approved_data_writers, proposal.data_writers)
    rest = {name: value for name, value in detection.items() if name not in LEARNED_FIELDS}
    if rest:
        lines.append("  # the base estate's other detection settings, as they were")
        lines += ["  " + line for line in yaml.safe_dump(rest, sort_keys=False).splitlines()]
    if base.get("containment"):
        lines += yaml.safe_dump({"containment": base["containment"]}, sort_keys=False).splitlines()
    return "\n".join(lines) + "\n"


def since_ms_of(text: str, now_ms: int | None = None) -> int:
    """``7d`` / ``12h`` / ``30m`` ago, or an ISO 8601 time (UTC unless it says), as epoch ms."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in units:
        return now_ms - int(text[:-1]) * units[text[-1]] * 1000
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{text!r}: use a duration such as 7d, 12h or 30m, or an ISO 8601 time"
        raise ValueError(msg) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


@estate_app.command("learn")
def learn_command(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="Start of the learning period: a duration ago (7d, 12h) or an ISO time.")]
    = "7d",
    until: Annotated[str | None, typer.Option(help="Its end (default: now), the same way.")] = None,
    out: Annotated[Path, typer.Option(help="Where the proposed estate file is written.")] = Path("proposed.yaml"),
    base: Annotated[Path | None, typer.Option(help="The estate file to extend (default: AIWARDEN_CONFIG's, else "
                                                   "the defaults).")] = None,
) -> None:
    """Propose an estate file from what the estate did (read-only over ClickHouse), each entry with its source."""
    from infra import services
    from infra.clickhouse.client import connect
    from infra.clickhouse.cluster import hunt_database
    from infra.settings import Settings
    from streams.hunt import query_settings

    settings = ctx.obj
    if not isinstance(settings, Settings):
        raise TypeError("settings were not loaded")  # noqa: TRY003, EM101
    try:
        since_ms = since_ms_of(since)
        until_ms = since_ms_of(until) if until else int(time.time() * 1000)
        path = base or settings.config
        sections = load(path) if path else {}
        config = DetectionConfig.model_validate(sections.get("detection", {})) if base else settings.detection
    except (ValueError, EstateFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        resolved = settings if settings.clickhouse.url else services.resolved(settings, need=("clickhouse",))
        client = connect(resolved, readonly=True, database=hunt_database(resolved))
        proposal = learn(client, config, since_ms, until_ms, query_settings(ROW_LIMIT, QUERY_TIMEOUT_S))
    except Exception as exc:  # noqa: BLE001 - unreachable server, refused query: say which
        typer.echo(f"error: cannot learn from ClickHouse at {settings.clickhouse.url or 'the local server'}: {exc}",
                   err=True)
        raise typer.Exit(1) from None
    out.write_text(render(proposal, config, sections, str(path) if path else "the default settings"))
    learned = {"namespaces": proposal.namespaces, "images": proposal.images, "models": proposal.models,
               "model users": proposal.model_users, "data writers": proposal.data_writers}
    counts = ", ".join(f"{len(v)} {k}" for k, v in learned.items())
    hosts = sum(len(h) for h in proposal.egress.values())
    typer.echo(f"{out}: proposed ({counts}, {hosts} AI API host(s)); review it, then `aiwarden config check {out}`")
