"""The reference quarantine receiver: ``aiwarden receiver``.

A small HTTP server that takes aiwarden's signed response-action webhooks (Standard Webhooks, see
``streams.containment.signing``) and shows, or applies, what a Kubernetes cluster would do:

* ``POST /`` or ``POST /webhook``: a JSON body ``{"action": ..., "target": "pod:<ns>/<name>",
  "alert": {...}, "evidence": [...]}``. The signature and timestamp are verified first (401 with a
  JSON error otherwise). A ``webhook-id`` seen before with the same body is answered with the first
  response plus ``"duplicate": true`` and nothing is done again; with a different body it is a
  replay and gets 409. Ids are remembered the newest ``max_ids`` of them and only as long as their
  timestamp could still verify (tolerance plus a margin): an older delivery fails the timestamp
  check anyway. With ``state_path`` (``--state``) each handled id is also appended to a JSON-lines
  file, written before the answer and read back on start: a receiver restarted after it acted but
  before the sender saw the answer still refuses to act twice.
* ``quarantine_workload`` of a pod: a JSON merge patch labelling the pod ``aiwarden.io/quarantine=true``
  (annotated with the alert id) and a deny-all ingress+egress NetworkPolicy selecting that label.
  ``block_egress``: label ``aiwarden.io/egress-blocked=true`` and an egress-only deny-all policy.
  They are printed as YAML, or applied with ``kubectl`` when asked for and installed.
* ``release_workload`` / ``unblock_egress`` of a pod: a merge patch taking that label (and the
  annotation) off again, so the pod leaves the NetworkPolicy's selection.
* Other actions (``revoke_api_key``, ``restore_api_key``, ``suspend_principal``, ``notify``, or a
  non-pod target) are acknowledged and printed.
* ``GET /health``: 200 with the counters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
import yaml

from streams.containment.signing import DEFAULT_TOLERANCE_S, ID_HEADER, SignatureError, secret_key, verify

log = logging.getLogger(__name__)

DEFAULT_PORT = 8787
DEFAULT_HOST = "127.0.0.1"
MAX_BODY_BYTES = 1_048_576
MAX_IDS = 100_000
ID_MARGIN_S = 60.0
KUBECTL_TIMEOUT_S = 30.0

ACTIONS = ("quarantine_workload", "block_egress", "revoke_api_key", "suspend_principal", "notify",
           "release_workload", "unblock_egress", "restore_api_key")

QUARANTINE_LABEL = "aiwarden.io/quarantine"
EGRESS_LABEL = "aiwarden.io/egress-blocked"
ALERT_ANNOTATION = "aiwarden.io/quarantine-alert"
MANAGED_BY = {"app.kubernetes.io/managed-by": "aiwarden"}
# Kubernetes names: a DNS-1123 label (namespace) and subdomain (pod).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_POD = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
#: release webhook -> the label it takes off the pod (the NetworkPolicy stays for other contained pods)
POD_RELEASES = {"release_workload": QUARANTINE_LABEL, "unblock_egress": EGRESS_LABEL}
COUNTERS = ("received", "verified", "rejected_signature", "replayed", "duplicates", "bad_request", "handled")


class BadDelivery(Exception):
    """A verified delivery whose body cannot be acted on (400)."""


@dataclass(slots=True)
class _Seen:
    body_hash: str
    seen_at: float
    response: dict[str, Any]


def parse_pod_target(target: str) -> tuple[str, str] | None:
    """``pod:<ns>/<name>`` → (ns, name); None for any other entity or an invalid name."""
    kind, sep, rest = target.partition(":")
    if kind != "pod" or not sep:
        return None
    namespace, sep, name = rest.partition("/")
    if not sep or not _NAMESPACE.fullmatch(namespace) or not _POD.fullmatch(name):
        return None
    return namespace, name


def render_manifests(action: str, namespace: str, pod: str, alert_id: str) -> list[dict[str, Any]]:
    """What a cluster would apply to contain one pod: the label merge patch, then the NetworkPolicy."""
    egress_only = action == "block_egress"
    label = EGRESS_LABEL if egress_only else QUARANTINE_LABEL
    patch: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace},
        "patchType": "application/merge-patch+json",
        "patch": {"metadata": {"labels": {label: "true"}, "annotations": {ALERT_ANNOTATION: alert_id}}},
    }
    policy: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "aiwarden-block-egress" if egress_only else "aiwarden-quarantine",
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
        },
        # No rules for the listed directions: all such traffic of the selected pods is denied.
        "spec": {
            "podSelector": {"matchLabels": {label: "true"}},
            "policyTypes": ["Egress"] if egress_only else ["Ingress", "Egress"],
        },
    }
    return [patch, policy]


def render_release(action: str, namespace: str, pod: str) -> list[dict[str, Any]]:
    """What a cluster would apply to release one pod: a merge patch removing the containment label."""
    return [{
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace},
        "patchType": "application/merge-patch+json",
        "patch": {"metadata": {"labels": {POD_RELEASES[action]: None}, "annotations": {ALERT_ANNOTATION: None}}},
    }]


class Receiver:
    """The receiver: ``start_in_thread()`` (tests) or ``serve_forever()`` (CLI), then ``shutdown()``.

    The socket is bound on construction (port 0 picks a free one); use it as a context manager or
    call ``shutdown()`` so that it is closed.
    """

    def __init__(
        self,
        secret: str | bytes,
        port: int = DEFAULT_PORT,
        kubectl: bool = False,
        out: TextIO | None = None,
        *,
        host: str = DEFAULT_HOST,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_ids: int = MAX_IDS,
        clock: Callable[[], float] = time.time,
        state_path: Path | None = None,
    ) -> None:
        self._key = secret_key(secret)
        self.kubectl = kubectl
        self.out = out if out is not None else sys.stdout
        self.tolerance_s = tolerance_s
        self.max_ids = max_ids
        self.clock = clock
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.handled_ids: Counter[str] = Counter()  # times each id was acted on (never above 1)
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self.state_path = state_path
        if state_path is not None:
            self._load_state(state_path)
        self._lock = threading.Lock()  # one delivery at a time: dedupe, act, remember
        self._out_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False
        self._server = _Server((host, port), _Handler, self)

    def __repr__(self) -> str:  # never shows the secret
        return f"Receiver(address={self.address!r}, kubectl={self.kubectl})"

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    # -- lifecycle

    def serve_forever(self) -> None:
        """Serve until ``shutdown()`` (from another thread) or KeyboardInterrupt."""
        self._serving = True
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._serving = False

    def start_in_thread(self) -> int:
        """Serve from a daemon thread; returns the bound port."""
        if self._thread is None:
            self._serving = True
            self._thread = threading.Thread(target=self.serve_forever, name="aiwarden-receiver", daemon=True)
            self._thread.start()
        return self.port

    def shutdown(self) -> None:
        """Stop serving, join the thread and close the socket (idempotent)."""
        if self._serving:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if not self._closed:
            self._closed = True
            self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- deliveries

    def _count(self, name: str) -> None:
        with self._out_lock:
            self.counters[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._out_lock:
            return dict(self.counters)

    def _forget_old(self, now: float) -> None:
        horizon = now - (self.tolerance_s * 2 + ID_MARGIN_S)  # a timestamp may be up to tolerance ahead
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if len(self._seen) <= self.max_ids and oldest.seen_at >= horizon:
                break
            self._seen.popitem(last=False)

    def _load_state(self, path: Path) -> None:
        """Remember the ids a previous run handled (still within the horizon), then compact the file."""
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    seen = _Seen(str(entry["body_hash"]), float(entry["seen_at"]), dict(entry["response"]))
                    self._seen[str(entry["id"])] = seen
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash mid-write
                self._seen.move_to_end(str(entry["id"]))
            self._forget_old(self.clock())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(self._state_line(msg_id, seen) for msg_id, seen in self._seen.items()))
        tmp.replace(path)

    @staticmethod
    def _state_line(msg_id: str, seen: _Seen) -> str:
        return json.dumps({"id": msg_id, **asdict(seen)}) + "\n"

    def _remember(self, msg_id: str, seen: _Seen) -> None:
        self._seen[msg_id] = seen
        self.handled_ids[msg_id] += 1
        if self.state_path is not None:
            with self.state_path.open("a") as state:  # before the answer: a crash after it cannot act twice
                state.write(self._state_line(msg_id, seen))
                state.flush()

    def deliver(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """Handle one POSTed delivery: (HTTP status, JSON response)."""
        self._count("received")
        try:
            verify(self._key, headers, body, now=self.clock(), tolerance_s=self.tolerance_s)
        except SignatureError as exc:
            self._count("rejected_signature")
            return 401, {"ok": False, "error": exc.reason}
        self._count("verified")
        msg_id = str(headers.get(ID_HEADER))
        body_hash = hashlib.sha256(body).hexdigest()
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            seen = self._seen.get(msg_id)
            if seen is not None:
                if seen.body_hash != body_hash:
                    self._count("replayed")
                    return 409, {"ok": False, "error": "webhook-id already used with a different body", "id": msg_id}
                self._count("duplicates")
                return 200, {**seen.response, "duplicate": True}
            try:
                response = self._act(msg_id, body)
            except BadDelivery as exc:
                self._count("bad_request")
                return 400, {"ok": False, "error": str(exc), "id": msg_id}
            self._remember(msg_id, _Seen(body_hash, now, response))
            self._count("handled")
            return 200, {**response, "duplicate": False}

    def _act(self, msg_id: str, body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            msg = "body is not JSON"
            raise BadDelivery(msg) from None
        if not isinstance(payload, dict):
            msg = "body is not a JSON object"
            raise BadDelivery(msg)
        action, target = payload.get("action"), payload.get("target")
        if not isinstance(action, str) or not isinstance(target, str):
            msg = "body needs string fields action and target"
            raise BadDelivery(msg)
        if action not in ACTIONS:
            msg = f"unknown action {action[:64]!r} (known: {', '.join(ACTIONS)})"
            raise BadDelivery(msg)
        raw_alert = payload.get("alert")
        alert: dict[str, Any] = raw_alert if isinstance(raw_alert, dict) else {}
        alert_id = str(alert.get("alert_id") or alert.get("id") or "")[:253]
        response: dict[str, Any] = {"ok": True, "id": msg_id, "action": action, "target": target}
        pod = parse_pod_target(target) if action in ("quarantine_workload", "block_egress", *POD_RELEASES) else None
        if pod is None:
            response["outcome"] = "acknowledged"
            self._print(
                f"# {msg_id}: {action} {target} (alert {alert_id or '-'}): acknowledged, nothing to apply\n"
                + yaml.safe_dump({"action": action, "target": target, "alert": alert}, sort_keys=False)
            )
            return response
        manifests = (render_release(action, pod[0], pod[1]) if action in POD_RELEASES
                     else render_manifests(action, pod[0], pod[1], alert_id))
        kubectl = shutil.which("kubectl") if self.kubectl else None
        if kubectl is None:
            response["outcome"] = "rendered"
            note = " (kubectl not found)" if self.kubectl else ""
            self._print(
                f"# {msg_id}: {action} {target} (alert {alert_id or '-'}): manifests{note}\n"
                + yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True)
            )
            return response
        response.update(self._apply(kubectl, manifests, pod[0], pod[1]))
        self._print(f"# {msg_id}: {action} {target} (alert {alert_id or '-'}): {response['outcome']}\n")
        return response

    def _apply(self, kubectl: str, manifests: list[dict[str, Any]], namespace: str, pod: str) -> dict[str, Any]:
        patch, *policies = manifests  # a release is the patch alone
        commands = [
            ([kubectl, "patch", "pod", pod, "-n", namespace, "--type=merge", "-p", json.dumps(patch["patch"])], None),
            *(([kubectl, "apply", "-f", "-"], yaml.safe_dump(policy, sort_keys=False)) for policy in policies),
        ]
        steps = []
        for argv, stdin in commands:
            try:
                done = subprocess.run(  # noqa: S603 - argv list, validated names, no shell
                    argv, input=stdin, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S, check=False
                )
                ok, detail = done.returncode == 0, (done.stdout if done.returncode == 0 else done.stderr)
            except (OSError, subprocess.TimeoutExpired) as exc:
                ok, detail = False, str(exc)
            steps.append({"command": " ".join(argv[1:4]), "ok": ok, "detail": detail.strip()[:500]})
            if not ok:
                break
        applied = len(steps) == len(commands) and all(step["ok"] for step in steps)
        return {"outcome": "applied" if applied else "failed", "steps": steps}

    def _print(self, text: str) -> None:
        with self._out_lock:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], receiver: Receiver) -> None:
        self.receiver = receiver
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "aiwarden-receiver"
    sys_version = ""
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/health":
            self._reply(200, {"status": "ok", "counters": self.server.receiver.snapshot()})
        else:
            self._reply(404, {"ok": False, "error": "not found"})

    def do_POST(self) -> None:
        if self.path.split("?")[0] not in ("/", "/webhook"):
            self._reply(404, {"ok": False, "error": "not found"})
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._reply(411, {"ok": False, "error": "Content-Length required"})
            return
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(413, {"ok": False, "error": f"body over {MAX_BODY_BYTES} bytes"})
            return
        body = self.rfile.read(length)
        status, payload = self.server.receiver.deliver(self.headers, body)
        self._reply(status, payload)


# -- command line

receiver_app = typer.Typer(
    help="Reference receiver of aiwarden's signed response-action webhooks (quarantine a pod, …).",
    add_completion=False,
)


@receiver_app.callback(invoke_without_command=True)
def receiver(
    ctx: typer.Context,
    secret: Annotated[
        str,
        typer.Option(
            "--secret",
            help="Webhook signing secret (whsec_<base64> or plain); default: AIWARDEN_CONTAINMENT__SECRET.",
            show_default=False,
        ),
    ] = "",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one).")] = (
        DEFAULT_PORT
    ),
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = DEFAULT_HOST,
    kubectl: Annotated[
        bool, typer.Option("--kubectl/--no-kubectl", help="Apply the manifests with kubectl instead of printing.")
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="JSON-lines file of handled webhook ids, kept across restarts."),
    ] = None,
) -> None:
    """Serve signed webhooks until Ctrl-C: verify, dedupe, then print (or kubectl-apply) the containment."""
    if ctx.invoked_subcommand is not None:
        return
    settings = ctx.find_root().obj
    if not secret and settings is not None and hasattr(settings, "containment"):
        secret = settings.containment.secret.get_secret_value()
    if not secret:
        typer.echo("error: no secret: pass --secret or set AIWARDEN_CONTAINMENT__SECRET", err=True)
        raise typer.Exit(2)
    try:
        server = Receiver(secret, port, kubectl, sys.stdout, host=host, state_path=state)
    except ValueError as exc:  # a bad secret: the message never contains it
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    bound_host, bound_port = server.address
    typer.echo(f"aiwarden receiver on http://{bound_host}:{bound_port}/ (kubectl: {kubectl}); Ctrl-C stops", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopping", err=True)
    finally:
        server.shutdown()
