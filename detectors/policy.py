"""A compiled view of ``DetectionConfig``: regexes, frozensets and networks, built once per config.

Detectors read allowlists through ``Policy`` so the hot path never re-parses a list: globs become one
case-insensitive regex per list, CIDRs ``ipaddress`` networks, and the answers for strings that recur
all day (images, hosts, process names, IPs) are cached.

>>> policy = Policy.of(DetectionConfig())
>>> policy.runtime_in("vllm/vllm-openai:v0.6.3")
'vllm'
>>> policy.runtime_in("grafana/grafana:11.2.2")
''
>>> policy.is_external("203.0.113.9"), policy.is_external("10.0.3.17")
(True, False)
>>> estate = Policy.of(DetectionConfig(sanctioned_ai_egress={"ai-platform": ("api.openai.com",)}))
>>> estate.egress_sanctioned("ai-platform", "api.openai.com"), estate.egress_sanctioned("web", "api.openai.com")
(True, False)
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable
from functools import lru_cache

from detectors.config import DetectionConfig

_CACHE = 4096


def _never(_value: str) -> bool:
    return False


def glob_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """One compiled regex for a list of ``fnmatch`` globs (case-insensitive); an empty list matches nothing."""
    parts = [fnmatch.translate(p) for p in patterns if p]
    if not parts:
        return _never
    regex = re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE)
    return lambda value: regex.match(value) is not None


def token_regex(tokens: Iterable[str]) -> re.Pattern[str]:
    """Whole-token alternation: a token must not touch a letter or digit on either side."""
    ordered = sorted({t.lower() for t in tokens if t}, key=len, reverse=True)
    body = "|".join(re.escape(t) for t in ordered) or "(?!)"
    return re.compile(rf"(?<![a-z0-9])({body})(?![a-z0-9])", re.IGNORECASE)


def role_of(principal: str) -> str:
    """The role ARN behind an assumed-role session ARN (``arn:aws:sts::1:assumed-role/r/s`` ->
    ``arn:aws:iam::1:role/r``); any other principal as is."""
    if ":assumed-role/" not in principal:
        return principal
    head, _, rest = principal.partition(":assumed-role/")
    role = rest.split("/", 1)[0]
    return head.replace("arn:aws:sts::", "arn:aws:iam::", 1) + f":role/{role}"


# Session names an AWS SDK or agent makes up when the caller sets none: a new one at every credential
# refresh (boto3's botocore-session-<epoch>, the Go/Java/JS SDKs' own), or an instance, task or pod id.
_GENERATED_SESSION = re.compile(
    r"(?:botocore-session|aws-go-sdk|aws-sdk-[a-z]+(?:-session)?|aws-[a-z]+-sdk-session|boto3-session)-\d{9,}"
    r"|\d{9,}|[0-9a-f]{32}|i-[0-9a-f]{8,17}|(?:.*-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.IGNORECASE,
)


@lru_cache(maxsize=_CACHE)
def caller_identity(principal: str) -> str:
    """Whose usual behaviour a call belongs to: an assumed-role session whose name an SDK or agent made up
    (``_GENERATED_SESSION``: a new session per credential refresh, instance or task) is its role
    (``role_of``), so a service's baselines outlive its sessions; any other principal (a person's or a named
    session, a user, a gateway user) is itself.

    >>> caller_identity("arn:aws:sts::1:assumed-role/chat-app/botocore-session-1733140000")
    'arn:aws:iam::1:role/chat-app'
    >>> caller_identity("arn:aws:sts::1:assumed-role/AWSReservedSSO_Dev_0a1b/ana@example.com")
    'arn:aws:sts::1:assumed-role/AWSReservedSSO_Dev_0a1b/ana@example.com'
    """
    if ":assumed-role/" not in principal:
        return principal
    session = principal.rsplit("/", 1)[-1]
    return role_of(principal) if _GENERATED_SESSION.fullmatch(session) else principal


class Policy:
    """Allowlists and vocabularies of one ``DetectionConfig``, compiled for the hot path."""

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config
        c = config
        self.approved_namespaces = frozenset(c.approved_namespaces)
        self.approved_images = tuple(p.rstrip("*") for p in c.approved_images)
        self.interactive_images = tuple(p.rstrip("*") for p in c.interactive_images)
        self._runtime = token_regex(c.ai_runtimes)
        self.model_exts = tuple(e.lower() for e in c.model_file_extensions)
        self.ambiguous_exts = tuple(e.lower() for e in c.ambiguous_model_extensions)
        self.model_markers = tuple(m.lower() for m in c.model_path_markers)
        self.serving = frozenset(p.lower() for p in c.serving_processes)
        self.interpreters = frozenset(p.lower() for p in c.generic_interpreters)
        self.serving_markers = tuple(m.lower() for m in c.serving_cmdline_markers)
        self.gpu_host = glob_matcher(c.gpu_host_patterns)
        self.gpu_devices = tuple(c.gpu_device_prefixes)
        self.ai_host = glob_matcher(c.ai_api_hosts)
        self._egress = {ns: glob_matcher(hosts) for ns, hosts in c.sanctioned_ai_egress.items()}
        self._egress_any: Callable[[str], bool] = self._egress.get("*", _never)
        self.model_ports = frozenset(c.model_ports)
        self._server_hint = token_regex(c.model_server_hints)
        self.exposure_namespaces = frozenset(c.approved_exposure_namespaces)
        self.exposure_types = frozenset(t.lower() for t in c.exposure_types)
        self.public_cidrs = frozenset(c.public_cidrs)
        self.shells = frozenset(c.shells)
        self.server_parents = frozenset(p.lower() for p in c.model_server_parents)
        self.package_namespaces = frozenset(c.package_install_namespaces)
        self.shell_rules = frozenset(c.shell_falco_rules)
        self.miner_processes = frozenset(p.lower() for p in c.miner_processes)
        self.miner_ports = frozenset(c.miner_ports)
        self.miner_domain = glob_matcher(c.miner_domains)
        self.miner_rules = frozenset(c.miner_falco_rules)
        self._miner_strong = [re.compile(r, re.IGNORECASE) for r in c.miner_strong_flags]
        self._miner_weak = [re.compile(r, re.IGNORECASE) for r in c.miner_weak_flags]
        self.miner_weak_needed = c.miner_weak_flags_needed
        self.scratch_dirs = tuple(c.scratch_dirs)
        self.upload_tools = frozenset(c.upload_tools)
        self.archive_tools = frozenset(c.archive_tools)
        self._internal = tuple(ipaddress.ip_network(n, strict=False) for n in c.internal_cidrs)
        self.training_buckets = frozenset(c.training_buckets)
        self.training_prefixes = tuple(c.training_prefixes)
        self.data_writes = frozenset(c.data_write_operations)
        self.registry_ops = frozenset(c.registry_operations)
        self.logging_ops = dict(c.logging_operations)
        self._trusted = glob_matcher(c.approved_principals)
        self._data_writers = glob_matcher(c.approved_data_writers)
        self._registry = glob_matcher(c.approved_registry_principals)
        self._logging = glob_matcher(c.approved_logging_principals)
        self.inference_sources = frozenset(c.inference_sources)
        self.ai_services = frozenset(c.ai_cloud_services)
        self._approved_model = glob_matcher(c.approved_models)
        self._model_user = glob_matcher(c.approved_model_users)
        # per-instance caches (strings that recur all day)
        self.runtime_in = lru_cache(maxsize=_CACHE)(self._runtime_in)
        self.is_external = lru_cache(maxsize=_CACHE)(self._is_external)
        self.is_ai_host = lru_cache(maxsize=_CACHE)(self.ai_host)
        self.server_hint = lru_cache(maxsize=_CACHE)(self._server_hint_in)
        self.is_model_file = lru_cache(maxsize=_CACHE)(self._is_model_file)
        self.is_gpu_host = lru_cache(maxsize=256)(self.gpu_host)
        # the inventory asks these for every observation of a model, key or cloud service
        self.approved_model = lru_cache(maxsize=_CACHE)(self._approved_model)
        self.model_user_approved = lru_cache(maxsize=_CACHE)(self._model_user_approved)

    @staticmethod
    def of(config: DetectionConfig) -> Policy:
        """The shared ``Policy`` of ``config`` (equal configs share one)."""
        return _policy_of(config.model_dump_json())

    # --- vocabularies ---------------------------------------------------------------------------
    def _runtime_in(self, text: str) -> str:
        """The first AI runtime token in ``text`` (lower-case), or ''."""
        if not text:
            return ""
        found = self._runtime.search(text)
        return found.group(1).lower() if found else ""

    def _server_hint_in(self, text: str) -> str:
        found = self._server_hint.search(text) if text else None
        return found.group(1).lower() if found else ""

    def _is_model_file(self, path: str) -> bool:
        low = path.lower()
        if low.endswith(self.model_exts):
            return not low.endswith(self.ambiguous_exts) or any(m in low for m in self.model_markers)
        # content-addressed blobs (ollama sha256-…) under a model directory
        return "/.ollama/models/blobs/" in low

    def is_serving(self, process: str, cmdline: str) -> bool:
        """A model server reading its own weights: a serving process, or an interpreter running a server."""
        name = process.lower()
        if name in self.serving:
            return True
        if name in self.interpreters or name.startswith("python"):
            low = cmdline.lower()
            return any(m in low for m in self.serving_markers)
        return False

    def _is_external(self, address: str) -> bool:
        """A routable address outside ``internal_cidrs`` ('' and junk are not external)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.is_multicast or ip.is_unspecified:
            return False
        return not any(ip.version == net.version and ip in net for net in self._internal)

    def miner_flags(self, cmdline: str, exe: str, cwd: str = "") -> str:
        """Why a command line is a miner's by its flags ('' if it is not): one strong flag, or
        ``miner_weak_flags_needed`` weak signals (a binary in a scratch directory counts as one)."""
        if not cmdline:
            return ""
        cmd = cmdline[:1024]
        for regex in self._miner_strong:
            found = regex.search(cmd)
            if found:
                return f"miner flag {found.group(0).strip()[:40]!r}"
        weak = [m.group(0).strip()[:40] for m in (r.search(cmd) for r in self._miner_weak) if m]
        if not weak:
            return ""
        start = exe or cmd.split(" ", 1)[0]
        if start.startswith(self.scratch_dirs) or (cwd and cwd.startswith(self.scratch_dirs) and "/" not in start):
            weak.append(f"started from {start.rsplit('/', 1)[0] if '/' in start else cwd}")
        if len(weak) >= self.miner_weak_needed:
            return "miner flags " + ", ".join(repr(w) for w in weak)
        return ""

    # --- allowlists -----------------------------------------------------------------------------
    def egress_sanctioned(self, namespace: str, host: str) -> bool:
        if self._egress_any(host):
            return True
        allowed = self._egress.get(namespace)
        return allowed is not None and allowed(host)

    def image_approved(self, image: str) -> bool:
        return bool(image) and image.startswith(self.approved_images)

    def workload_sanctioned(self, namespace: str, image: str) -> bool:
        """An AI workload is sanctioned in an approved namespace running an approved image (or no image known)."""
        if namespace not in self.approved_namespaces:
            return False
        return not self.approved_images or not image or self.image_approved(image)

    def _principal(self, matcher: Callable[[str], bool], principal: str) -> bool:
        if not principal:
            return False
        if matcher(principal) or self._trusted(principal):
            return True
        role = role_of(principal)
        return role != principal and (matcher(role) or self._trusted(role))

    def data_writer_approved(self, principal: str) -> bool:
        return self._principal(self._data_writers, principal)

    def registry_approved(self, principal: str) -> bool:
        return self._principal(self._registry, principal)

    def logging_approved(self, principal: str) -> bool:
        return self._principal(self._logging, principal)

    def _model_user_approved(self, principal: str) -> bool:
        return self._principal(self._model_user, principal)

    def training_target(self, resource: str) -> str:
        """The training bucket (or 'bucket/prefix') an S3 ``bucket/key`` resource falls in, or ''."""
        bucket = resource.split("/", 1)[0]
        if bucket in self.training_buckets:
            return bucket
        for prefix in self.training_prefixes:
            if resource.startswith(prefix):
                return prefix
        return ""


@lru_cache(maxsize=16)
def _policy_of(config_json: str) -> Policy:
    return Policy(DetectionConfig.model_validate_json(config_json))
