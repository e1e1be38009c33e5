"""Every threshold and allowlist the detectors read, in one frozen pydantic model.

Allowlists are named lists, Falco style: tuning a deployment means changing a list here (or the
environment variable the owner maps to it), never editing a detector. Principal, host and image
lists are glob patterns (``fnmatch``: ``*`` matches anything, ``?`` one character), matched
case-insensitively; image lists are prefixes (a trailing ``*`` is implied).

The defaults describe no one: well-known AI API hosts, model server images and processes, miner
pools and ports, and empty estate lists (namespaces, buckets, roles, principals). An estate brings its
own in a file (``AIWARDEN_CONFIG``, ``infra.estate``); the simulator's is ``streams/simulator/estate.yaml``.
With no ``approved_namespaces`` the unsanctioned-AI-workload rule stays silent (nothing is sanctioned
yet, so nothing can be unsanctioned) while the inventory still lists every AI workload.

>>> config = DetectionConfig(window_s=30)
>>> config.window_ms
30000
>>> DetectionConfig.model_validate({"miner_ports": [3333]}).miner_ports
(3333,)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PhrasePattern(BaseModel):
    """A regex over prompts, gated by cheap keywords: the regex runs only on prompts that contain one of
    ``keywords`` (a plain substring test on the lower-cased prompt), so most prompts cost a few
    substring tests. Every match of ``pattern`` must contain one of the keywords (empty: always run)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(description="Regular expression (case-insensitive unless case_sensitive).")
    keywords: tuple[str, ...] = Field((), description="Substrings one of which every match contains.")
    case_sensitive: bool = Field(False, description="Match the original prompt, case-sensitively.")

    def __init__(self, pattern: str, keywords: tuple[str, ...] = (), case_sensitive: bool = False) -> None:
        super().__init__(pattern=pattern, keywords=keywords, case_sensitive=case_sensitive)


class DetectionConfig(BaseModel):
    """Thresholds and named allowlists for every detector, inventory and correlation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- windows and warm-up -----------------------------------------------------------------------
    window_s: int = Field(60, ge=1, description="Tumbling window length in event-time seconds (rate limits, features).")
    warmup_windows: int = Field(
        5, ge=0, description="Closed windows an entity needs before its own EWMA baseline is trusted."
    )
    warmup_observations: int = Field(
        256, ge=1, description="Windows a class-level anomaly model must learn before it may fire."
    )
    ewma_alpha: float = Field(0.2, gt=0, le=1, description="Weight of the newest window in per-entity EWMA baselines.")
    max_evidence: int = Field(20, ge=1, le=20, description="Evidence event ids kept per finding / alert.")

    # --- learning mode -----------------------------------------------------------------------------
    learning_until: datetime | None = Field(
        None, description="Learning mode for an estate without allowlists yet: until this time (ISO 8601, UTC "
        "unless it says; compared with event time) findings of learning_detectors are recorded on "
        "aiwarden.suppressed (ClickHouse suppressed_findings, exception 'learning'), not alerted; `aiwarden "
        "estate learn` then proposes the allowlists. Unset: off.",
    )
    learning_detectors: tuple[str, ...] = Field(
        ("shadow_ai_egress", "unsanctioned_ai_workload", "data_poisoning"),
        description="The allowlist rules learning mode holds back (the others alert as ever).",
    )

    # --- workloads -------------------------------------------------------------------------------
    approved_namespaces: tuple[str, ...] = Field(
        (),
        description="Namespaces allowed to run AI workloads (model servers, notebooks, AI API clients); empty: "
        "unsanctioned_ai_workload stays silent until an estate names them.",
    )
    approved_images: tuple[str, ...] = Field(
        (
            "vllm/vllm-openai",
            "ghcr.io/huggingface/text-generation-inference",
            "nvcr.io/nvidia/tritonserver",
            "ollama/ollama",
            "ghcr.io/ggerganov/llama.cpp",
            "rayproject/ray-ml",
            "quay.io/jupyter/",
        ),
        description="Image prefixes approved for AI workloads; an AI workload must be in an approved namespace "
        "AND run an approved image to be sanctioned (empty list: namespace alone decides).",
    )
    ai_runtimes: tuple[str, ...] = Field(
        (
            "torch", "pytorch", "torchrun", "torchserve", "transformers", "vllm", "tritonserver", "triton",
            "text-generation-inference", "text-generation-launcher", "text-generation-server", "ollama",
            "llama.cpp", "llama-server", "llama_cpp", "ray", "ray::servereplica", "sglang", "tensorrt-llm",
            "deepspeed", "onnxruntime",
        ),
        description="AI runtime tokens looked for (whole-token, case-insensitive) in process names, command lines "
        "and image names.",
    )
    model_file_extensions: tuple[str, ...] = Field(
        (".safetensors", ".gguf", ".pt", ".pth", ".onnx", ".bin", ".ckpt", ".h5", ".tflite", ".mlmodel", ".engine",
         ".plan"),
        description="Model weight file extensions.",
    )
    ambiguous_model_extensions: tuple[str, ...] = Field(
        (".bin", ".pt", ".h5", ".plan", ".engine"),
        description="Extensions that count as model files only under a model directory (model_path_markers).",
    )
    model_path_markers: tuple[str, ...] = Field(
        ("/models/", "/models--", "/model/", "/.ollama/models/", "/checkpoints/", "/weights/", "/huggingface/"),
        description="Path fragments of model directories; also marks extension-less blobs (ollama) as weights.",
    )
    serving_processes: tuple[str, ...] = Field(
        ("vllm", "text-generation-launcher", "text-generation-server", "tritonserver", "ollama", "llama-server",
         "ray::ServeReplica", "torchserve", "sglang"),
        description="Processes that legitimately read model weights (the model servers themselves).",
    )
    generic_interpreters: tuple[str, ...] = Field(
        ("python", "python3", "python3.8", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
         "java", "node", "uvicorn", "gunicorn"),
        description="Interpreters that count as serving processes only when their command line names a server.",
    )
    serving_cmdline_markers: tuple[str, ...] = Field(
        ("vllm", "text-generation", "tritonserver", "torchserve", "ray::", "api_server", "uvicorn", "gunicorn",
         "sglang", "llama_cpp.server", "llama-server"),
        description="Command-line fragments that make a generic interpreter a model server.",
    )
    gpu_host_patterns: tuple[str, ...] = Field(
        ("*gpu*", "p4d*", "p5*", "g5.*", "g6.*", "*a100*", "*h100*"),
        description="Host name globs of GPU nodes (a native agent's gpu flag counts too).",
    )
    gpu_device_prefixes: tuple[str, ...] = Field(
        ("/dev/nvidia", "/dev/dri/", "/dev/kfd"), description="Device paths whose open means GPU access."
    )

    # --- shadow AI egress ------------------------------------------------------------------------
    ai_api_hosts: tuple[str, ...] = Field(
        (
            "api.openai.com", "*.openai.azure.com", "api.anthropic.com", "generativelanguage.googleapis.com",
            "*-aiplatform.googleapis.com", "api.mistral.ai", "api.cohere.ai", "api.cohere.com", "api.groq.com",
            "api.together.xyz", "api.together.ai", "api.deepseek.com", "api.perplexity.ai", "api.fireworks.ai",
            "api-inference.huggingface.co", "api.x.ai", "openrouter.ai", "bedrock-runtime.*.amazonaws.com",
            "runtime.sagemaker.*.amazonaws.com",
        ),
        description="Hosts of AI APIs (globs). A DNS query / connect to one is checked against sanctioned_ai_egress.",
    )
    sanctioned_ai_egress: dict[str, tuple[str, ...]] = Field(
        {"kube-system": ("*",)},  # cluster DNS resolves on behalf of every pod
        description="Namespace -> AI API host globs its workloads may reach; key '*' applies to every namespace.",
    )

    # --- exposure --------------------------------------------------------------------------------
    model_ports: tuple[int, ...] = Field(
        (8000, 8001, 8002, 8080, 8081, 8082, 11434, 8888, 4000, 5000, 6006, 7860, 8265, 8501, 10001, 30000),
        description="Ports model servers / AI tools listen on (vLLM, Triton, TGI, Ollama, Jupyter, LiteLLM, MLflow,"
        " TensorBoard, Gradio, Ray dashboard/client, Streamlit, SGLang).",
    )
    model_server_hints: tuple[str, ...] = Field(
        ("vllm", "tgi", "text-generation", "triton", "ollama", "llama", "llm", "model", "inference", "torchserve",
         "kserve", "ray", "mlflow", "jupyter", "gradio", "sglang", "embedder", "rag"),
        description="Name fragments of Services / Ingresses that front a model server.",
    )
    approved_exposure_namespaces: tuple[str, ...] = Field(
        ("ingress-nginx",), description="Namespaces where LoadBalancer / NodePort / Ingress objects are expected."
    )
    exposure_types: tuple[str, ...] = Field(
        ("LoadBalancer", "NodePort"), description="Service types that expose a workload outside the cluster."
    )
    public_cidrs: tuple[str, ...] = Field(("0.0.0.0/0", "::/0"), description="CIDRs meaning 'the whole internet'.")

    # --- shells, miners --------------------------------------------------------------------------
    shells: tuple[str, ...] = Field(("bash", "sh", "dash", "zsh", "ash", "ksh", "busybox"), description="Shells.")
    model_server_parents: tuple[str, ...] = Field(
        ("python", "python3", "python3.10", "python3.11", "python3.12", "vllm", "tritonserver",
         "text-generation-launcher", "text-generation-server", "ollama", "uvicorn", "gunicorn", "ray",
         "ray::ServeReplica", "raylet", "llama-server", "torchserve"),
        description="Parents whose shell children are suspicious in an AI workload.",
    )
    interactive_images: tuple[str, ...] = Field(
        ("quay.io/jupyter/",), description="Image prefixes of notebooks, where shells from python are expected."
    )
    package_install_namespaces: tuple[str, ...] = Field(
        (), description="Namespaces where installing packages in a running container is expected."
    )
    shell_falco_rules: tuple[str, ...] = Field(
        ("Terminal shell in container", "Redirect STDOUT/STDIN to Network Connection in Container",
         "Launch Package Management Process in Container", "Netcat Remote Code Execution in Container",
         "Run shell untrusted", "System user interactive", "Launch Remote File Copy Tools in Container"),
        description="Falco rules that model_server_shell reports when they fire in an AI workload.",
    )
    agent_rule_min_priority: Literal["debug", "informational", "notice", "warning", "error", "critical"] = Field(
        "warning", description="Lowest priority of a Falco / runtime-agent rule hit that agent_rule_hit reports when "
        "it fires in an AI workload.",
    )
    agent_rule_ignore: tuple[str, ...] = Field(
        (), description="Falco / runtime-agent rules agent_rule_hit never reports (exact rule names)."
    )
    miner_processes: tuple[str, ...] = Field(
        ("xmrig", "xmr-stak", "ethminer", "t-rex", "nbminer", "lolminer", "phoenixminer", "gminer", "teamredminer",
         "nanominer", "cpuminer", "minerd", "ccminer", "bminer", "srbminer-multi", "kawpowminer", "xmrig-cuda"),
        description="Crypto-miner process names.",
    )
    miner_strong_flags: tuple[str, ...] = Field(
        (r"--donate-level", r"--cpu-priority", r"--randomx-", r"--nicehash", r"--cpu-max-threads-hint",
         r"(?:^|\s)(?:-a|--algo)[= ]+(?:rx/|cn/|cn-|kawpow|ethash|etchash|autolykos|randomx|cryptonight|argon2|"
         r"ghostrider|kheavyhash|octopus|equihash|x16r|progpow)",
         r"(?:^|\s)--coin[= ]+(?:xmr|monero|rvn|etc|erg|zeph|kas)\b"),
        description="Regexes over a command line (case-insensitive) each of which alone marks a miner, whatever the "
        "process is called (SigmaHQ's Linux crypto-mining rule keys on such flags).",
    )
    miner_weak_flags: tuple[str, ...] = Field(
        (r"(?:^|\s)(?:-o|--url)[= ]+(?:(?:[a-z0-9-]+\.)+[a-z0-9-]+|\d{1,3}(?:\.\d{1,3}){3}):\d{2,5}\b",
         r"(?:^|\s)(?:-u|--user|--wallet)[= ]+\S{6,}", r"(?:^|\s)(?:-p|--pass)[= ]+x\b", r"--cuda\b",
         r"--opencl\b", r"--no-cpu\b", r"(?:^|\s)(?:-t|--threads)[= ]+\d+.*(?:-o|--url)[= ]"),
        description="Regexes over a command line that mark a miner when miner_weak_flags_needed of them match (a "
        "process started from a scratch_dirs directory counts as one).",
    )
    miner_weak_flags_needed: int = Field(
        3, ge=1, description="Weak miner signals needed together (see miner_weak_flags)."
    )
    scratch_dirs: tuple[str, ...] = Field(
        ("/tmp/", "/dev/shm/", "/var/tmp/", "/run/user/", "/dev/mqueue/"),  # noqa: S108 - paths matched, not used
        description="Writable scratch directories; a binary started from one is a weak miner signal.",
    )
    miner_ports: tuple[int, ...] = Field(
        (3333, 4444, 5555, 7777, 14444, 45700), description="Mining-pool ports (stratum)."
    )
    miner_domains: tuple[str, ...] = Field(
        ("pool.*", "*.pool.*", "*-pool.*", "*.nanopool.org", "*.2miners.com", "*.f2pool.com", "*.nicehash.com",
         "*.supportxmr.com", "*.hashvault.pro", "*.moneroocean.stream", "*.minexmr.com", "*.ethermine.org",
         "*.herominers.com", "*.unmineable.com", "*.c3pool.com", "*.xmrpool.eu", "*.flypool.org",
         "*.miningpoolhub.com"),
        description="Mining-pool host globs (DNS queries).",
    )
    miner_falco_rules: tuple[str, ...] = Field(
        ("Detect outbound connections to common miner pool ports", "Detect crypto miners using the Stratum protocol",
         "Detect outbound connections to common miner pools"),
        description="Falco miner rules.",
    )

    # --- networks ---------------------------------------------------------------------------------
    internal_cidrs: tuple[str, ...] = Field(
        ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
         "0.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128"),
        description="Internal address ranges (RFC 1918, loopback, link-local, CGNAT, ULA).",
    )

    # --- weights exfiltration ---------------------------------------------------------------------
    exfil_bytes: int = Field(
        50_000_000, ge=1, description="Bytes sent to new external destinations after a weights read that fire."
    )
    exfil_window_s: int = Field(900, ge=1, description="How long after a weights read an upload counts (seconds).")
    upload_tools: tuple[str, ...] = Field(
        ("curl", "wget", "scp", "sftp", "rsync", "rclone", "aws", "gsutil", "gcloud", "azcopy", "az", "s3cmd", "mc",
         "nc", "ncat", "netcat", "socat", "ftp", "lftp", "croc", "transfer", "oras", "huggingface-cli"),
        description="Processes that upload files; after a non-serving weights read, one connecting to a new external "
        "address fires when the agent reports no byte counts (Falco).",
    )
    archive_tools: tuple[str, ...] = Field(
        ("tar", "zip", "7z", "7za", "gzip", "pigz", "zstd", "xz", "bzip2", "split", "dd", "rsync", "scp", "rclone",
         "cp"),
        description="Processes that pack or copy files; a weights read by one, then any new external address from the "
        "workload, fires when the agent reports no byte counts.",
    )

    # --- cloud: training data, registry, logging ------------------------------------------------
    training_buckets: tuple[str, ...] = Field(
        (), description="Buckets whose every object is training data."
    )
    training_prefixes: tuple[str, ...] = Field(
        (),
        description="'bucket/prefix' of training data or model artifacts inside other buckets.",
    )
    data_write_operations: tuple[str, ...] = Field(
        ("PutObject", "DeleteObject", "DeleteObjects", "CopyObject", "CompleteMultipartUpload", "RestoreObject",
         "PutObjectAcl", "PutBucketPolicy", "DeleteBucket"),
        description="S3 operations that change training data.",
    )
    approved_data_writers: tuple[str, ...] = Field(
        (), description="Principals (globs; assumed-role sessions match by role ARN too) that write "
        "training data."
    )
    data_writer_learning_s: int = Field(
        0, ge=0, description="Event-time learning period per bucket: writers seen in it are learned, not flagged (0: "
        "rely on approved_data_writers alone, as in the simulator; set e.g. 86400 for a new deployment).",
    )
    max_writers_per_bucket: int = Field(24, ge=1, le=64, description="Writers remembered per bucket (LRU).")
    registry_operations: tuple[str, ...] = Field(
        ("CreateModelPackage", "UpdateModelPackage", "DeleteModelPackage", "CreateModelPackageGroup",
         "UpdateModelPackageGroup", "DeleteModelPackageGroup", "PutModelPackageGroupPolicy",
         "DeleteModelPackageGroupPolicy", "UpdateModelCard", "DeleteModelCard", "CreateModel", "DeleteModel"),
        description="SageMaker model-registry writes.",
    )
    approved_registry_principals: tuple[str, ...] = Field(
        (), description="Principals allowed to change the model registry (globs)."
    )
    logging_operations: dict[str, str] = Field(
        {
            "DeleteModelInvocationLoggingConfiguration": "critical",
            "PutModelInvocationLoggingConfiguration": "medium",
            "DeleteGuardrail": "high",
            "UpdateGuardrail": "medium",
            "StopLogging": "critical",
            "DeleteTrail": "critical",
            "UpdateTrail": "high",
            "PutEventSelectors": "high",
            "PutInsightSelectors": "medium",
            "DeleteEventDataStore": "high",
        },
        description="Operations that weaken AI / cloud audit logging, with the severity of a successful call.",
    )
    approved_logging_principals: tuple[str, ...] = Field(
        (), description="Principals allowed to change logging and guardrails (globs)."
    )
    approved_principals: tuple[str, ...] = Field(
        (), description="Break-glass principals trusted by every cloud rule (globs)."
    )

    # --- inference: extraction / cost / inversion / injection / keys ----------------------------
    inference_sources: tuple[str, ...] = Field(
        ("gateway", "bedrock", "otel_genai"),
        description="Sources whose events are model invocations with tokens and prompts.",
    )
    anomaly_threshold: float = Field(
        0.995, gt=0, le=1, description="Calibrated anomaly score (0..1: the share of recent windows that scored "
        "lower) at or above which a closed window fires."
    )
    anomaly_min_requests: int = Field(
        20, ge=1, description="Requests a window needs before an anomaly model may fire on it."
    )
    hst_trees: int = Field(10, ge=1, description="HalfSpaceTrees: number of trees.")
    hst_height: int = Field(6, ge=1, description="HalfSpaceTrees: tree height.")
    hst_window: int = Field(64, ge=2, description="HalfSpaceTrees: reference window (observations).")
    hst_margin: float = Field(
        1.0, ge=0, description="HalfSpaceTrees span -margin .. 1+margin of the min-max scaled range (headroom "
        "for windows beyond anything seen)."
    )
    model_seed: int = Field(42, description="Seed of every river model (determinism).")
    extraction_volume_factor: float = Field(
        8.0, gt=1, description="Guard: window requests over this many times the key's EWMA baseline ..."
    )
    extraction_min_requests: int = Field(60, ge=1, description="... and at least this many requests in the window ...")
    extraction_max_distance: float = Field(
        0.35, ge=0, le=1, description="... with mean consecutive-prompt distance (0 same .. 1 unrelated) below this."
    )
    extraction_near_duplicate: float = Field(
        0.25, ge=0, le=1, description="Consecutive prompts closer than this count as a near-duplicate pair."
    )
    extraction_sweep_pairs: int = Field(
        30, ge=2, description="Sweep guard: prompts compared with the key's recent ones in one window needed ..."
    )
    extraction_sweep_fraction: float = Field(
        0.7, gt=0, le=1, description="... of which at least this share are near-duplicates."
    )
    cost_volume_factor: float = Field(
        10.0, gt=1, description="Guard: window tokens over this many times the key's EWMA baseline ..."
    )
    cost_min_tokens: int = Field(200_000, ge=1, description="... and at least this many tokens in the window.")
    cost_huge_completion: int = Field(
        16_000, ge=1, description="Guard: one completion of at least this many output tokens (huge max_tokens)."
    )
    cost_heavy_request_tokens: int = Field(
        4_000, ge=1, description="A request of at least this many tokens (in + out) is max-length."
    )
    cost_heavy_requests: int = Field(
        10, ge=1, description="Guard: this many max-length requests in one window ..."
    )
    cost_heavy_factor: float = Field(
        3.0, gt=1, description="... and (once the key is warm) tokens/request over this many times its EWMA."
    )
    cost_long_completion: int = Field(
        1_024, ge=1, description="Mix guard: completions of at least this many output tokens are long; the guard "
        "watches the share of the key's completions above its usual output-token tail (never below this) ..."
    )
    cost_mix_min_long: int = Field(
        10, ge=1, description="... and fires (once the key is warm) on at least this many in one window ..."
    )
    cost_mix_share: float = Field(
        0.05, gt=0, le=1, description="... making at least this share of the window's requests."
    )
    cost_mix_usual: float = Field(
        0.01, gt=0, lt=1, description="A key's usual tail: the output-token buckets (powers of two) above which "
        "at most this share of its completions fell (EWMA over its windows)."
    )
    mix_baseline_requests: int = Field(
        50, ge=1, description="Requests a key's usual mix (output-token buckets, near-duplicate share) must be "
        "learned from before the mix guards judge it (a busy key is ready within a window, whatever warmup_windows)."
    )
    mix_drift_windows: int = Field(
        30, ge=1, description="Active windows in a row an entity must fire in before the level it fires on becomes "
        "its usual (its mix, top template and templates are learned from the window anyway): a key that changed its "
        "traffic for good stops raising a finding every window; its alert stays, and the class model never learns "
        "a window that fired."
    )
    extraction_mix_min_pairs: int = Field(
        20, ge=2, description="Mix guard (warm key): near-duplicate prompt pairs in one window needed ..."
    )
    extraction_mix_share: float = Field(
        0.15, gt=0, le=1, description="... making a share of the window's prompt pairs at least this much over the "
        "key's usual share (EWMA), and at least three times it."
    )
    inversion_min_matches: int = Field(
        5, ge=1, description="Training-data probing prompts in one window from one caller that fire."
    )
    inversion_patterns: tuple[PhrasePattern, ...] = Field(
        (
            PhrasePattern(
                r"\b(repeat|recite|reproduce|quote|continue)\b.{0,60}\b(records?|notes?|training data|word for word)\b",
                ("repeat", "recite", "reproduce", "quote", "continue"),
            ),
            PhrasePattern(r"\b(training|fine-?tuning) (data|set|examples?|records?)\b", ("training", "tuning")),
            PhrasePattern(r"\brecall\b.{0,30}\b(record|patient|customer|user|employee|example)s?\b", ("recall",)),
            PhrasePattern(r"\bpatient\b.{0,40}\b(id|record|name|diagnos\w*|mrn|dob)\b", ("patient",)),
            PhrasePattern(
                r"\b(ssn|social security( number)?|date of birth|mrn|medical record number|passport number)\b",
                ("ssn", "social security", "date of birth", "mrn", "medical record", "passport"),
            ),
            PhrasePattern(
                r"\b(record|patient|customer|user|employee|account|member) ?(id|no\.?|number|#)\s*[:#]?\s*\d{3,}",
                ("record", "patient", "customer", "user", "employee", "account", "member"),
            ),
            PhrasePattern(r"\bcomplete (the|this) (record|row|entry)\b", ("complete",)),
        ),
        description="Phrases of prompts probing for training data (model inversion).",
    )
    inversion_sequence_run: int = Field(
        5, ge=2, description="Consecutive prompts whose numeric identifier steps by +1..+3 that count as enumeration."
    )
    injection_patterns: tuple[PhrasePattern, ...] = Field(
        (
            PhrasePattern(
                r"\b(ignore|disregard|forget|override)\b.{0,30}\b(previous|prior|above|earlier|all|your)\b.{0,20}"
                r"\b(instructions?|prompts?|rules|directions|guidelines)\b",
                ("ignore", "disregard", "forget", "override"),
            ),
            PhrasePattern(r"\bdo anything now\b|\bjailbr[eo]a?k(en|ed|ing)?\b", ("anything now", "jailbr")),
            PhrasePattern(
                r"\b(?i:you are|you're|as|act as|called|named|become|enable|activate|hi|hello) DAN\b"
                r"|\bDAN (?i:mode|has no|can do|stands for|which)\b",
                ("DAN",),
                case_sensitive=True,
            ),
            PhrasePattern(
                r"\b(developer|dev|god|debug|admin|sudo|unrestricted|unfiltered) mode\b", (" mode",)
            ),
            PhrasePattern(
                r"\b(print|reveal|show|repeat|output|display|leak|tell me)\b.{0,30}\b(system|initial|hidden|original) "
                r"(prompt|instructions?|message)\b",
                ("prompt", "instruction", "message"),
            ),
            PhrasePattern(
                r"\byou are no longer\b|\bpretend (that )?you (are|have) no (restrictions|rules|limits|guidelines)\b",
                ("no longer", "pretend"),
            ),
            PhrasePattern(
                r"\bnew instructions?:|\b(system|assistant) ?override\b|<\|?(im_start|system)\|?>",
                ("instruction", "override", "<"),
            ),
            PhrasePattern(
                r"\bwithout (any )?(ethical|moral|content|safety|guidelines|restrictions|rules|filters|limits)\b"
                r"( (restrictions|guidelines|filters|limits))?",
                ("without",),
            ),
            PhrasePattern(r"\brepeat the (words|text|lines|sentences) above\b", ("repeat the",)),
            PhrasePattern(r"\bact as my (deceased|dead|late) grand(mother|ma|father|pa)\b", ("grand",)),
            PhrasePattern(r"\b(safety|content) (policy|filter) is (now )?(disabled|off)\b", ("disabled", " off")),
        ),
        description="Jailbreak / prompt-injection phrases.",
    )
    injection_campaign_matches: int = Field(
        3, ge=1, description="Injection matches in one window from one caller that make a campaign (high)."
    )
    injection_single_finding: bool = Field(
        False, description="Also report a single injection match (low severity); off to keep false alerts down."
    )
    key_recent_ips: int = Field(8, ge=1, le=16, description="Client IPs remembered per API key (LRU).")
    key_recent_agents: int = Field(4, ge=1, le=16, description="User agents remembered per API key (LRU, hashed).")
    key_warmup_requests: int = Field(5, ge=1, description="Requests an API key needs before new IPs are judged.")
    key_warmup_s: int = Field(10, ge=0, description="... and the event-time age it needs (seconds).")
    key_volume_factor: float = Field(
        5.0, gt=1, description="A window with this many times the key's EWMA requests is a volume jump."
    )
    key_volume_min_requests: int = Field(30, ge=1, description="... and at least this many requests in the window.")

    # --- inventory / correlation ------------------------------------------------------------------
    ai_cloud_services: tuple[str, ...] = Field(
        ("bedrock", "bedrock-runtime", "bedrock-agent", "bedrock-agent-runtime", "sagemaker", "sagemaker-runtime",
         "comprehend", "textract", "rekognition", "kendra", "q", "qbusiness", "aiplatform"),
        description="Cloud API services that are AI services (inventory).",
    )
    approved_models: tuple[str, ...] = Field(
        (),
        description="Models (globs over model ids) approved for use (inventory).",
    )
    approved_model_users: tuple[str, ...] = Field(
        (),
        description="Principals / gateway users approved to invoke models (inventory api_key sanctioned flag).",
    )
    inventory_max_list: int = Field(
        8, ge=1, le=8, description="Runtimes / models / principals kept per inventory item."
    )
    correlation_window_s: int = Field(
        1800, ge=1, description="Findings on one anchor within this many seconds of the alert's last one join it."
    )
    max_alert_entities: int = Field(32, ge=1, description="Entities kept per alert.")
    max_alert_findings: int = Field(64, ge=1, description="Finding ids kept per alert (redelivery dedup).")
    extraction_template_share: float = Field(
        0.08, gt=0, le=1, description="Template guard (warm key): one prompt template (digits aside) repeated "
        "extraction_mix_min_pairs times or more, making a share of the window's prompts at least this much over the "
        "key's usual top-template share (EWMA), and at least three times it unless the key does not usually send "
        "that template: a sweep diluted in the key's traffic."
    )

    # --- vulnerable AI packages (vulnerable_ai_workload) ------------------------------------------------
    ai_packages: tuple[str, ...] = Field(
        ("torch", "torchvision", "torchaudio", "transformers", "vllm", "text-generation-inference",
         "text-generation-server", "tritonclient", "tritonserver", "ray", "langchain", "langchain-*", "langgraph",
         "llama-index", "llama-index-*", "mlflow", "mlflow-skinny", "onnxruntime", "onnxruntime-*", "tokenizers",
         "safetensors", "gradio", "gradio-client", "accelerate", "sentence-transformers", "openai", "anthropic",
         "huggingface-hub", "diffusers", "peft", "bitsandbytes", "xformers", "deepspeed", "tensorflow",
         "tensorflow-*", "keras", "jax", "jaxlib", "llama-cpp-python", "ollama", "litellm", "fastchat", "fschat",
         "tensorrt", "tensorrt-llm", "triton", "optimum", "datasets", "tiktoken"),
        description="Packages that make an image an AI workload (globs over names normalized per PEP 503: "
                    "lower case, runs of '-', '_', '.' as '-'); a JSON list in the env var.",
    )
    ai_package_entry_points: dict[str, tuple[str, ...]] = Field(
        {"vllm": ("vllm", "vllm.entrypoints"),
         "text-generation-inference": ("text-generation-launcher", "text-generation-server",
                                       "text_generation_server"),
         "text-generation-server": ("text-generation-server", "text_generation_server"),
         "tritonserver": ("tritonserver",),
         "ray": ("ray", "raylet", "ray.util.client.server", "ray.serve"),
         "mlflow": ("mlflow", "mlflow.server"),
         "gradio": ("gradio",),
         "torch": ("torchrun", "torch.distributed.run"),
         "deepspeed": ("deepspeed",),
         "accelerate": ("accelerate",),
         "llama-cpp-python": ("llama_cpp.server",),
         "litellm": ("litellm",),
         "fastchat": ("fastchat.serve",),
         "fschat": ("fastchat.serve",)},
        description="Per AI package, executables and Python modules (``-m``) whose start marks the package in use, "
                    "besides ``python -m <module>`` and files under ``…/site-packages/<module>/``.",
    )
    vuln_priority_critical: int = Field(
        85, ge=1, le=100,
        description="Priority score (0..100) from which a vulnerability on a workload is critical priority "
                    "and raises a finding.",
    )
    vuln_priority_high: int = Field(
        65, ge=1, le=100, description="... high priority from this score."
    )
    vuln_priority_medium: int = Field(
        40, ge=1, le=100,
        description="... medium priority from this score.",
    )
    vuln_priority_low: int = Field(
        15, ge=1, le=100,
        description="... low priority from this score (below it: none).",
    )
    vuln_in_use_refresh_s: int = Field(
        3600, ge=1,
        description="How often (event-time seconds) a workload's in-use last-seen time is refreshed in the "
                    "vulnerabilities rows.",
    )

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000

    @property
    def learning_until_ms(self) -> int:
        """``learning_until`` as epoch ms (0: not learning)."""
        if self.learning_until is None:
            return 0
        until = self.learning_until
        return int((until if until.tzinfo else until.replace(tzinfo=UTC)).timestamp() * 1000)
