"""Shells, reverse shells and package installs in model servers (ATLAS AML.T0050; ATT&CK T1059.004,
T1609, T1105).

Per workload, one finding per kind and window, kinds:

* ``reverse_shell`` (critical in an AI workload, high elsewhere): a command line with a reverse-shell
  pattern (``/dev/tcp/``, ``nc -e``, ``socat ... exec:``, ``python -c ...socket...connect``,
  ``mkfifo ... nc``, ``perl``/``ruby``/``php`` socket one-liners), or the Falco rule "Redirect
  STDOUT/STDIN to Network Connection in Container" in an AI workload;
* ``shell`` (high): a shell (``shells``) whose parent is a model server (``model_server_parents``) in
  an AI workload (image with an AI runtime, an approved AI namespace, or a GPU workload), or Falco's
  "Terminal shell in container" there; notebooks (``interactive_images``) are exempt for generic
  interpreters;
* ``package_install`` (medium): ``pip install`` / ``apt-get install`` / ``apk add`` / ``curl | sh`` ...
  or Falco's "Launch Package Management Process in Container" in an AI workload outside
  ``package_install_namespaces``;
* other Falco rules of ``shell_falco_rules`` in an AI workload count as ``shell``.

State per workload: the window of the last finding of each kind (~40 bytes).
"""

from __future__ import annotations

import re
from functools import lru_cache

from detectors.base import Detector, State, workload_name
from detectors.config import DetectionConfig
from schemas.envelope import DETECTION_FINDING, PROCESS_ACTIVITY, Event
from schemas.findings import Finding

REVERSE_SHELL = re.compile(
    r"/dev/(tcp|udp)/"
    r"|\b(nc|ncat|netcat|nc\.traditional)\b[^|;]*\s-[a-z]*[ec]\b"
    r"|\bsocat\b.*\bexec:"
    r"|\bpython[0-9.]*\b.*-c\b.*\bsocket\b.*\bconnect\b"
    r"|\bmkfifo\b.*\b(nc|ncat|netcat|openssl)\b"
    r"|\bperl\b.*-e\b.*\bsocket\b"
    r"|\bruby\b.*-rsocket\b"
    r"|\bphp\b.*-r\b.*\bfsockopen\b"
    r"|\b(bash|sh|zsh)\b\s+-i\b.*[>&]\s*/dev/",
    re.IGNORECASE,
)
PACKAGE_INSTALL = re.compile(
    r"\b(pip[0-9.]*|uv pip|poetry|conda|mamba|micromamba)\s+(install|add)\b"
    r"|\bpython[0-9.]*\s+-m\s+pip\s+install\b"
    r"|\b(apt|apt-get|aptitude)\s+(-\S+\s+)*install\b"
    r"|\b(apk)\s+add\b|\b(yum|dnf|microdnf|zypper)\s+(-\S+\s+)*install\b"
    r"|\bnpm\s+(i|install)\s+-g\b"
    r"|\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b",
    re.IGNORECASE,
)
CACHED_CMDLINE_CHARS = 1024


@lru_cache(maxsize=4096)
def _cached_search(pattern: re.Pattern[str], cmdline: str) -> bool:
    return pattern.search(cmdline) is not None


def matches(pattern: re.Pattern[str], cmdline: str) -> bool:
    """``pattern`` found in ``cmdline``; the answer is cached for the command lines that recur all day
    (probes, cron jobs, servers restarting), which are short."""
    if len(cmdline) > CACHED_CMDLINE_CHARS:
        return pattern.search(cmdline) is not None
    return _cached_search(pattern, cmdline)


REVERSE_RULES = frozenset(
    {"Redirect STDOUT/STDIN to Network Connection in Container", "Netcat Remote Code Execution in Container"}
)
PACKAGE_RULES = frozenset({"Launch Package Management Process in Container"})
PHRASES = {
    "reverse_shell": "spawned a reverse shell",
    "shell": "spawned a shell",
    "package_install": "installed packages in the running container",
}


class ModelServerShell(Detector):
    id = "model_server_shell"
    title = "Shell, reverse shell or package install in a model server"
    maturity = "stable"
    severity = "high"
    tactics = ("execution",)
    atlas = ("AML.T0050",)
    attack = ("T1059.004", "T1609", "T1105")
    classes = frozenset({PROCESS_ACTIVITY, DETECTION_FINDING})
    sources = frozenset({"falco", "native"})
    description = __doc__ or ""

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        self._memo: tuple[str, tuple[str, str]] = ("", ("", ""))

    def ai_context(self, event: Event) -> str:
        """Why the workload counts as an AI workload ('' if it does not)."""
        policy = self.policy
        runtime = policy.runtime_in(event.image)
        if runtime:
            return f"{runtime} image"
        if event.namespace in policy.approved_namespaces:
            return "AI namespace"
        if event.extra.get("gpu") == "true":
            return "GPU workload"
        return ""

    def classify(self, event: Event) -> tuple[str, str]:
        """``(kind, detail)`` of a suspicious execution, ``("", "")`` if none."""
        if self._memo[0] != event.event_id:
            self._memo = (event.event_id, self._classify(event))
        return self._memo[1]

    def _classify(self, event: Event) -> tuple[str, str]:
        if not event.entity_id:
            return "", ""
        policy = self.policy
        cmd = event.process_cmdline
        if cmd and matches(REVERSE_SHELL, cmd):
            return "reverse_shell", cmd[:160]
        rule = event.rule if event.source == "falco" else ""
        if rule and rule in policy.shell_rules:
            if not self.ai_context(event):
                return "", ""
            if rule in REVERSE_RULES:
                return "reverse_shell", f"Falco: {rule}"
            if rule in PACKAGE_RULES:
                if event.namespace in policy.package_namespaces:
                    return "", ""
                return "package_install", f"Falco: {rule} ({cmd[:120] or event.process_name})"
            return "shell", f"Falco: {rule} ({event.process_name} from {event.parent_process_name or '?'})"
        if event.class_uid != PROCESS_ACTIVITY:
            return "", ""
        name = event.process_name.rsplit("/", 1)[-1]
        parent = event.parent_process_name.rsplit("/", 1)[-1].lower()
        if name in policy.shells and parent in policy.server_parents:
            generic = parent.startswith("python") or parent in ("uvicorn", "gunicorn")
            if generic and event.image.startswith(policy.interactive_images):
                return "", ""
            if self.ai_context(event):
                return "shell", f"{name} spawned by {event.parent_process_name}"
            return "", ""
        if cmd and matches(PACKAGE_INSTALL, cmd):
            if event.namespace in policy.package_namespaces or not self.ai_context(event):
                return "", ""
            return "package_install", cmd[:160]
        return "", ""

    def state_key(self, event: Event) -> str | None:
        kind, _ = self.classify(event)
        return event.entity_id if kind else None

    def detect(self, event: Event, state: State) -> list[Finding]:
        kind, detail = self.classify(event)
        if not kind or self.rate_limited(state, event.time_ms, slot=kind[:2]):
            return []
        context = self.ai_context(event)
        severity = self.severity
        if kind == "reverse_shell":
            severity = "critical" if context else "high"
        elif kind == "package_install":
            severity = "medium"
        where = f"model server {workload_name(event)}" if context else f"workload {workload_name(event)}"
        summary = f"{where[0].upper()}{where[1:]} {PHRASES[kind]}: {detail}"
        return [
            self.finding(
                event=event,
                entity_id=event.entity_id,
                discriminator=f"{self.window(event.time_ms)}:{kind}",
                summary=summary,
                severity=severity,
                ai_asset=bool(context),
                attributes={
                    "kind": kind,
                    "phrase": PHRASES[kind],
                    "ai_context": context,
                    "ai_workload": "true" if context else "false",
                },
            )
        ]
