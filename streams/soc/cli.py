"""``aiwarden users|tokens`` (accounts, written to Kafka by an operator) and the SOC commands that act
through a worker's API with a token: ``aiwarden alerts ack|assign|resolve|comment``."""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import replace
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from infra import services
from infra.settings import Settings
from streams import topics
from streams.soc.accounts import AccountError, Accounts, new_token, new_user, now_ms, record
from streams.soc.audit import audit_record, cli_actor
from streams.soc.compacted import TopicView, produce

users_app = typer.Typer(no_args_is_help=True)
tokens_app = typer.Typer(no_args_is_help=True)
err = Console(stderr=True)


def _settings(ctx: typer.Context) -> Settings:
    from streams.hunt import settings_of

    try:
        return services.resolved(settings_of(ctx), need=("kafka",))
    except services.ServiceError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


def read_accounts(settings: Settings, timeout_s: float = 30.0) -> Accounts:
    """The accounts topic read to its end."""
    accounts = Accounts()
    view = TopicView(settings, topics.ACCOUNTS, accounts.apply).start()
    try:
        if not view.caught_up.wait(timeout_s):
            msg = f"could not read {topics.ACCOUNTS} within {timeout_s:.0f} s (run `aiwarden migrate`?)"
            raise RuntimeError(msg)
    finally:
        view.stop()
    return accounts


def write(settings: Settings, records: list[tuple[bytes, bytes]], action: str, target: str,
          detail: dict[str, Any]) -> None:
    """Account records and their audit record (the operator's OS user, ``via`` cli)."""
    actor, host = cli_actor()
    produce(settings, topics.ACCOUNTS, list(records))
    produce(settings, topics.AUDIT, [audit_record(actor, "operator", "cli", host, action, target, detail)])


def ensure_admin(settings: Settings, name: str = "admin") -> str | None:
    """On an installation without users: create ``name`` (admin) with a generated password, write the
    password to ``<state dir>/admin-password`` (mode 0600) and return it; else None."""
    if read_accounts(settings).users:
        return None
    password = secrets.token_urlsafe(15)
    write(settings, [record(new_user(name, "admin", password))], "user add", name, {"role": "admin", "first": True})
    path = settings.state_dir.resolve() / "admin-password"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(0o600)
    path.chmod(0o600)
    path.write_text(password + "\n")
    return password


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name (lower-case letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help="viewer, analyst, responder or admin.")] = "viewer",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Add a user, or change an existing user's role and password (their sessions end)."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    try:
        user = new_user(name, role, password)
    except AccountError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = _settings(ctx)
    existed = name in read_accounts(settings).users
    write(settings, [record(user)], "user change" if existed else "user add", name, {"role": role})
    err.print(f"{'changed' if existed else 'added'} {name} ({role})")


@users_app.command("list")
def users_list(ctx: typer.Context) -> None:
    """Users with their role and state."""
    accounts = read_accounts(_settings(ctx))
    table = Table("user", "role", "state", "changed", "tokens")
    for user in sorted(accounts.users.values(), key=lambda u: u.name):
        live = sum(1 for t in accounts.tokens.values() if t.user == user.name and not t.revoked)
        table.add_row(user.name, user.role, "disabled" if user.disabled else "enabled",
                      time.strftime("%Y-%m-%d %H:%M", time.gmtime(user.updated_ms / 1000)), str(live))
    Console().print(table)


@users_app.command("disable")
def users_disable(ctx: typer.Context, name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Disable a user: sign-in, sessions and their tokens stop working on every worker."""
    settings = _settings(ctx)
    user = read_accounts(settings).users.get(name)
    if user is None:
        err.print(f"[bold red]error:[/] no user {name!r}")
        raise typer.Exit(1)
    write(settings, [record(replace(user, disabled=True, updated_ms=now_ms()))], "user disable", name, {})
    err.print(f"disabled {name}")


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user the token acts as (with that user's role).")],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    ttl_days: Annotated[int, typer.Option(help="Days until it expires (0: never).")] = 90,
) -> None:
    """Create an API token; it is printed once, on standard output, and only its digest is stored."""
    settings = _settings(ctx)
    if read_accounts(settings).active(user) is None:
        err.print(f"[bold red]error:[/] no enabled user {user!r}")
        raise typer.Exit(1)
    token, stored = new_token(user, label, ttl_days * 86400)
    write(settings, [record(stored)], "token create", user, {"token_id": stored.token_id, "label": label})
    err.print(f"token {stored.token_id} for {user}; keep it now, it is not shown again:")
    sys.stdout.write(token + "\n")


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Revoke an API token (by its id, the 16 hex digits after awt_)."""
    settings = _settings(ctx)
    stored = read_accounts(settings).tokens.get(token_id)
    if stored is None:
        err.print(f"[bold red]error:[/] no token {token_id[:40]!r}")
        raise typer.Exit(1)
    write(settings, [record(replace(stored, revoked=True))], "token revoke", stored.user, {"token_id": token_id})
    err.print(f"revoked {token_id}")


# -- commands that act through a worker's API


def api(ctx: typer.Context, method: str, path: str, body: Any = None) -> Any:
    """One request to the worker at ``AIWARDEN_CLIENT__URL`` with ``AIWARDEN_CLIENT__TOKEN``."""
    from streams.hunt import settings_of

    client = settings_of(ctx).client
    if not client.url or not client.token.get_secret_value():
        err.print("[bold red]error:[/] set AIWARDEN_CLIENT__URL (the worker) and AIWARDEN_CLIENT__TOKEN "
                  "(`aiwarden tokens create USER`)")
        raise typer.Exit(2)
    try:
        response = httpx.request(method, client.url.rstrip("/") + path, json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {client.token.get_secret_value()}"})
    except httpx.HTTPError as exc:
        err.print(f"[bold red]error:[/] {client.url}: {type(exc).__name__}")
        raise typer.Exit(1) from None
    try:
        value = response.json()
    except ValueError:
        value = {"error": response.text[:300]}
    if response.status_code >= 400:
        err.print(f"[bold red]error:[/] {response.status_code}: {value.get('error', value)}")
        raise typer.Exit(1)
    return value


def _triage(ctx: typer.Context, alert_ids: list[str], change: dict[str, Any]) -> None:
    result = api(ctx, "POST", "/alerts/triage", {"alert_ids": alert_ids, **change})
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


exceptions_app = typer.Typer(no_args_is_help=True)


@exceptions_app.command("list")
def exceptions_list(ctx: typer.Context) -> None:
    """Exceptions with their state (JSON lines)."""
    for row in api(ctx, "GET", "/exceptions"):
        sys.stdout.write(orjson.dumps(row).decode() + "\n")


@exceptions_app.command("add")
def exceptions_add(
    ctx: typer.Context,
    detector: Annotated[str, typer.Option(help="The detector whose findings it covers.")],
    entity: Annotated[str, typer.Option(help="An entity id or a glob (pod:ml-batch/*).")],
    reason: Annotated[str, typer.Option(help="Why these findings are benign.")],
    days: Annotated[float, typer.Option(help="Days until it expires.")] = 7.0,
) -> None:
    """Suppress a detector's findings on matching entities: recorded, no alert, no containment."""
    row = api(ctx, "POST", "/exceptions", {"detector": detector, "entity": entity, "reason": reason,
                                           "expires_in_s": int(days * 86400)})
    sys.stdout.write(orjson.dumps(row).decode() + "\n")


@exceptions_app.command("revoke")
def exceptions_revoke(ctx: typer.Context, exception_id: Annotated[str, typer.Argument(help="Its id.")]) -> None:
    """Revoke an exception: matching findings raise alerts again."""
    row = api(ctx, "POST", f"/exceptions/{exception_id}/revoke")
    sys.stdout.write(orjson.dumps(row).decode() + "\n")


actions_app = typer.Typer(no_args_is_help=True)


@actions_app.command("list")
def actions_list(
    ctx: typer.Context,
    pending: Annotated[bool, typer.Option(help="Only actions awaiting approval.")] = False,
    state: Annotated[str, typer.Option(help="Only this state: awaiting_approval, approved, denied, expired, "
                                             "sent, released.")] = "",
) -> None:
    """Containment actions people act on (JSON lines, newest first)."""
    wanted = "awaiting_approval" if pending else state
    for row in api(ctx, "GET", "/actions" + (f"?state={wanted}" if wanted else "")):
        sys.stdout.write(orjson.dumps(row).decode() + "\n")


@actions_app.command("approve")
def actions_approve(ctx: typer.Context, action_id: Annotated[str, typer.Argument(help="The action id.")]) -> None:
    """Approve an action held for approval (sent once enough distinct people approved)."""
    sys.stdout.write(orjson.dumps(api(ctx, "POST", f"/actions/{action_id}/approve", {})).decode() + "\n")


@actions_app.command("deny")
def actions_deny(ctx: typer.Context, action_id: Annotated[str, typer.Argument(help="The action id.")],
                 reason: Annotated[str, typer.Option(help="Why not.")]) -> None:
    """Deny an action held for approval."""
    row = api(ctx, "POST", f"/actions/{action_id}/deny", {"reason": reason})
    sys.stdout.write(orjson.dumps(row).decode() + "\n")


@actions_app.command("release")
def actions_release(ctx: typer.Context, action_id: Annotated[str, typer.Argument(help="The action id.")]) -> None:
    """Undo a carried-out quarantine, egress block or key revocation (a signed release webhook)."""
    sys.stdout.write(orjson.dumps(api(ctx, "POST", f"/actions/{action_id}/release", {})).decode() + "\n")


IDS = Annotated[list[str], typer.Argument(help="Alert id(s).")]


def add_alert_commands(alerts_app: typer.Typer) -> None:
    @alerts_app.command("ack")
    def ack(ctx: typer.Context, alert_ids: IDS) -> None:
        """Acknowledge alerts (someone is on it)."""
        _triage(ctx, alert_ids, {"status": "acknowledged"})

    @alerts_app.command("assign")
    def assign(ctx: typer.Context, alert_ids: IDS,
               to: Annotated[str, typer.Option(help="Assignee ('' to unassign).")]) -> None:
        """Assign alerts to someone."""
        _triage(ctx, alert_ids, {"assignee": to})

    @alerts_app.command("resolve")
    def resolve(ctx: typer.Context, alert_ids: IDS, resolution: Annotated[str, typer.Option(
            help="true_positive, false_positive, benign or duplicate.")]) -> None:
        """Resolve alerts with a resolution; by a responder, false_positive or benign also releases their
        containment (AIWARDEN_CONTAINMENT__RELEASE_ON_RESOLUTIONS)."""
        _triage(ctx, alert_ids, {"status": "resolved", "resolution": resolution})

    @alerts_app.command("comment")
    def comment(ctx: typer.Context, alert_ids: IDS, text: Annotated[str, typer.Option(help="The comment.")]) -> None:
        """Comment on alerts."""
        _triage(ctx, alert_ids, {"comment": text})
