"""The simulated organisation ("Acme") and its benign traffic.

Acme runs one AWS account (``418295730164``, ``us-east-1``) and two EKS clusters:

* ``prod-use1``: namespaces ``ml-prod`` (vLLM / TGI / Triton model servers, a RAG API, a vector DB),
  ``inference`` (Triton, vLLM, TGI, embedding workers), ``ai-platform`` (the LiteLLM gateway, the only
  workload allowed to reach OpenAI and Anthropic), ``data-eng`` (Airflow, Spark, ETL cron jobs that
  move data to S3), ``web``, ``marketing``, ``payments``, ``monitoring`` (Prometheus, node-exporter,
  fluent-bit, Grafana) and ``kube-system`` (CoreDNS). GPU nodes are ``gpu-node-N``, the rest ``node-N``.
* ``staging-use1``: ``ml-staging`` (Ollama, llama.cpp, Ray Serve workers, Jupyter notebooks) and
  ``ci`` (BuildKit runners, the only place ``pip install`` from PyPI is expected).

Benign behaviour (``Benign``): model servers answer exec health probes (``curl`` from ``runc``), load
their ``.safetensors`` / ``.gguf`` weights with the serving process, listen on their port and talk to
internal services; RAG and embedding services call Bedrock / SageMaker runtime (sanctioned egress);
Airflow and Spark pull from and upload large objects to S3; Falco emits its usual noise (API-server
contact from operators, packet sockets from node-exporter, S3 egress flagged by a sandbox rule).
CloudTrail shows S3 data events by pipeline roles on the training bucket, STS, EC2 ``Describe*`` by
Karpenter, Bedrock ``InvokeModel`` by app roles, SageMaker ``InvokeEndpoint``, IAM / Bedrock-logging
/ CloudTrail read calls by the security-audit role, model-registry writes by the MLOps admins.
Kubernetes audit has kubelets, controllers, operators' service accounts, the CI deployer and humans.
Bedrock invocation logs come from a handful of app roles and data scientists; the gateway serves
~300 API keys (``key-<16 hex>``) of services and people, each with a stable client IP, user agent
and model, a heavy-tailed volume and a diurnal rhythm, natural prompts and normal token counts.

Entity counts scale with ``world_size`` (default 200 workloads, ~100 principals, ~300 API keys).
Everything is drawn from one ``random.Random``: the same seed gives the same world.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from streams.simulator import formats as F

Record = dict[str, Any]
T = TypeVar("T")

ACCOUNT_ID = "418295730164"
REGION = "us-east-1"
PROD, STAGING = "prod-use1", "staging-use1"
TRAINING_BUCKET = "acme-ml-training-data"
ARTIFACT_BUCKET = "acme-model-artifacts"
LAKE_BUCKET = "acme-data-lake-raw"
REPORTS_BUCKET = "acme-analytics-reports"
WEB_BUCKET = "acme-web-assets"
ECR = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com"

# Public endpoints and the addresses they resolve to in this world.
EXTERNAL_HOSTS: dict[str, tuple[str, ...]] = {
    "bedrock-runtime.us-east-1.amazonaws.com": ("3.214.102.17", "52.44.108.93"),
    "runtime.sagemaker.us-east-1.amazonaws.com": ("52.94.225.28", "52.94.226.11"),
    "s3.us-east-1.amazonaws.com": ("52.216.208.56", "52.217.131.8", "54.231.193.40", "16.182.33.162"),
    "api.openai.com": ("162.159.140.245", "172.66.0.243"),
    "api.anthropic.com": ("160.79.104.10",),
    "generativelanguage.googleapis.com": ("142.250.65.74", "142.251.40.170"),
    "api.mistral.ai": ("104.18.21.201",),
    "huggingface.co": ("18.164.174.17", "18.164.174.55"),
    "pypi.org": ("151.101.0.223", "151.101.64.223"),
    "files.pythonhosted.org": ("151.101.1.63", "151.101.65.63"),
    "api.stripe.com": ("54.187.174.169", "54.187.205.235"),
    "www.google-analytics.com": ("142.250.80.46",),
    "fonts.googleapis.com": ("142.250.80.74",),
}
AI_API_HOSTS = (
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "api.mistral.ai",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "runtime.sagemaker.us-east-1.amazonaws.com",
)

# Internal services: "name.namespace" -> port; cluster IPs are 172.20.x.y (fixed by index).
SERVICES: dict[str, int] = {
    "llm-gateway.ai-platform": 4000,
    "vllm-llama-3-1-8b-instruct.ml-prod": 8000,
    "triton.inference": 8000,
    "qdrant.ml-prod": 6333,
    "redis.ml-prod": 6379,
    "rag-api.ml-prod": 8080,
    "postgres.data-eng": 5432,
    "kafka.data-eng": 9092,
    "spark-driver-svc.data-eng": 7078,
    "web-api.web": 8080,
    "redis.web": 6379,
    "payments-api.payments": 8443,
    "postgres.payments": 5432,
    "mysql.marketing": 3306,
    "otel-collector.monitoring": 4317,
    "prometheus.monitoring": 9090,
    "opensearch.monitoring": 9200,
    "ray-head.ml-staging": 6379,
    "mlflow.ml-staging": 5000,
    "kube-dns.kube-system": 53,
}
SERVICE_IPS: dict[str, str] = {s: f"172.20.{10 + i // 200}.{10 + i % 200}" for i, s in enumerate(SERVICES)}
K8S_API_IP = "172.20.0.1"


@dataclass(frozen=True)
class Kind:
    """A kind of workload: what it runs, where, and what it normally does."""

    app: str
    namespaces: tuple[str, ...]
    image: str
    proc: tuple[str, str, str, str, str]  # name, exe, cmdline, user, parent
    port: int
    weight: int
    acts: str  # "act:weight act:weight ..."
    gpu: bool = False
    peers: tuple[str, ...] = ()
    egress: tuple[str, ...] = ()
    models: tuple[tuple[str, str, int, str], ...] = ()  # slug, dir, shards, file pattern
    noise: str | None = None  # benign Falco rule this workload trips
    statefulset: bool = False


_MS = "probe:6 dns:4 conn:4 cfg:2 weights:2 listen:1"
KINDS: tuple[Kind, ...] = (
    Kind(
        "vllm",
        ("ml-prod", "inference", "ml-staging"),
        "vllm/vllm-openai:v0.6.3",
        (
            "python3",
            "/usr/bin/python3",
            "python3 -m vllm.entrypoints.openai.api_server --model {dir} --served-model-name {slug} "
            "--port 8000",
            "root",
            "containerd-shim",
        ),
        8000,
        14,
        _MS,
        gpu=True,
        peers=("otel-collector.monitoring", "redis.ml-prod"),
        egress=("s3.us-east-1.amazonaws.com",),
        models=(
            (
                "llama-3-1-8b-instruct",
                "/models/meta-llama/Llama-3.1-8B-Instruct",
                4,
                "model-{i:05d}-of-{n:05d}.safetensors",
            ),
            (
                "mistral-7b-instruct",
                "/models/mistralai/Mistral-7B-Instruct-v0.3",
                3,
                "model-{i:05d}-of-{n:05d}.safetensors",
            ),
            (
                "qwen2-5-14b-instruct",
                "/models/Qwen/Qwen2.5-14B-Instruct",
                8,
                "model-{i:05d}-of-{n:05d}.safetensors",
            ),
        ),
    ),
    Kind(
        "tgi",
        ("ml-prod", "inference"),
        "ghcr.io/huggingface/text-generation-inference:2.3.1",
        (
            "text-generation-launcher",
            "/usr/local/bin/text-generation-launcher",
            "text-generation-launcher --model-id {dir} --port 8080 --num-shard 1",
            "root",
            "containerd-shim",
        ),
        8080,
        6,
        _MS,
        gpu=True,
        peers=("otel-collector.monitoring",),
        egress=("s3.us-east-1.amazonaws.com",),
        models=(
            (
                "mistral-7b-instruct",
                "/data/models--mistralai--Mistral-7B-Instruct-v0.3/snapshots/e0bc86c23ce5aae1db576c8cca6f06f1f73af2db",
                3,
                "model-{i:05d}-of-{n:05d}.safetensors",
            ),
            (
                "gemma-2-9b-it",
                "/data/models--google--gemma-2-9b-it/snapshots/11c9b309abf73637e4b6f9a3fa1e92e615547819",
                4,
                "model-{i:05d}-of-{n:05d}.safetensors",
            ),
        ),
    ),
    Kind(
        "triton",
        ("inference", "ml-prod"),
        "nvcr.io/nvidia/tritonserver:24.08-py3",
        (
            "tritonserver",
            "/opt/tritonserver/bin/tritonserver",
            "tritonserver --model-repository=/models --http-port=8000 --grpc-port=8001",
            "triton-server",
            "containerd-shim",
        ),
        8000,
        8,
        _MS,
        gpu=True,
        peers=("otel-collector.monitoring",),
        egress=("s3.us-east-1.amazonaws.com",),
        models=(
            ("bge-reranker-large", "/models/bge-reranker-large/1", 1, "model.safetensors"),
            ("llama-guard-3-8b", "/models/llama-guard-3-8b/1", 4, "model-{i:05d}-of-{n:05d}.safetensors"),
        ),
    ),
    Kind(
        "rag-api",
        ("ml-prod",),
        f"{ECR}/rag-api:1.14.2",
        (
            "uvicorn",
            "/usr/local/bin/python3.12",
            "/usr/local/bin/python3.12 /usr/local/bin/uvicorn app.main:app --host 0.0.0.0 --port 8080 "
            "--workers 4",
            "app",
            "containerd-shim",
        ),
        8080,
        10,
        "probe:4 dns:3 conn:6 ext:6 cfg:1 listen:1",
        peers=(
            "llm-gateway.ai-platform",
            "qdrant.ml-prod",
            "redis.ml-prod",
            "vllm-llama-3-1-8b-instruct.ml-prod",
        ),
        egress=("bedrock-runtime.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com"),
    ),
    Kind(
        "qdrant",
        ("ml-prod",),
        "qdrant/qdrant:v1.12.1",
        (
            "qdrant",
            "/qdrant/qdrant",
            "./qdrant --uri http://qdrant-0.qdrant-headless:6335",
            "root",
            "containerd-shim",
        ),
        6333,
        3,
        "probe:4 dns:1 conn:2 cfg:2 listen:1",
        peers=("otel-collector.monitoring",),
        statefulset=True,
    ),
    Kind(
        "embedder",
        ("inference",),
        f"{ECR}/embedder:0.9.1",
        (
            "python",
            "/usr/local/bin/python3.11",
            "python -m embedder.worker --batch-size 64",
            "app",
            "containerd-shim",
        ),
        8080,
        6,
        "probe:3 dns:3 conn:3 ext:6 cfg:1",
        peers=("kafka.data-eng", "qdrant.ml-prod", "triton.inference"),
        egress=("runtime.sagemaker.us-east-1.amazonaws.com", "bedrock-runtime.us-east-1.amazonaws.com"),
    ),
    Kind(
        "ollama",
        ("ml-staging",),
        "ollama/ollama:0.3.14",
        ("ollama", "/bin/ollama", "/bin/ollama serve", "root", "containerd-shim"),
        11434,
        4,
        _MS,
        gpu=True,
        peers=("mlflow.ml-staging",),
        egress=("huggingface.co",),
        models=(
            (
                "llama3.1:8b",
                "/root/.ollama/models/blobs",
                1,
                "sha256-8eeb52dfb3bb9aefdf9d1ef24b3bdbcfbe82238798c4b918278320b6fcef18fe",
            ),
        ),
    ),
    Kind(
        "llama-cpp",
        ("ml-staging",),
        "ghcr.io/ggerganov/llama.cpp:server-cuda",
        (
            "llama-server",
            "/app/llama-server",
            "/app/llama-server -m {dir}/qwen2.5-7b-instruct-q4_k_m.gguf --host 0.0.0.0 --port 8080 -ngl 99",
            "root",
            "containerd-shim",
        ),
        8080,
        2,
        _MS,
        gpu=True,
        peers=("mlflow.ml-staging",),
        models=(("qwen2-5-7b-instruct-q4", "/models", 1, "qwen2.5-7b-instruct-q4_k_m.gguf"),),
    ),
    Kind(
        "ray-worker",
        ("ml-staging",),
        "rayproject/ray-ml:2.37.0-gpu",
        (
            "ray::ServeReplica",
            "/home/ray/anaconda3/bin/python3.11",
            "ray::ServeReplica:llm:LLMDeployment",
            "ray",
            "raylet",
        ),
        8000,
        6,
        "probe:3 dns:3 conn:6 cfg:1 weights:2 listen:1",
        gpu=True,
        peers=("ray-head.ml-staging", "mlflow.ml-staging"),
        egress=("s3.us-east-1.amazonaws.com",),
        models=(
            (
                "llama-3-1-70b-instruct",
                "/mnt/models/meta-llama/Llama-3.1-70B-Instruct",
                30,
                "model-{i:05d}-of-{n:05d}.safetensors",
            ),
        ),
        noise="Contact K8S API Server From Container",
    ),
    Kind(
        "jupyter",
        ("ml-staging",),
        "quay.io/jupyter/pytorch-notebook:cuda12-2024-10-28",
        (
            "jupyter-lab",
            "/opt/conda/bin/python3.11",
            "/opt/conda/bin/python3.11 /opt/conda/bin/jupyter-lab --ServerApp.ip=0.0.0.0 --no-browser",
            "jovyan",
            "tini",
        ),
        8888,
        6,
        "kernel:4 dns:2 conn:2 ext:3 cfg:2 pip:1",
        gpu=True,
        peers=("mlflow.ml-staging", "ray-head.ml-staging"),
        egress=("huggingface.co", "s3.us-east-1.amazonaws.com", "pypi.org", "files.pythonhosted.org"),
    ),
    Kind(
        "llm-gateway",
        ("ai-platform",),
        "ghcr.io/berriai/litellm:main-v1.50.2",
        (
            "litellm",
            "/usr/local/bin/python3.11",
            "/usr/local/bin/python3.11 /usr/local/bin/litellm --port 4000 --config /app/config.yaml",
            "root",
            "containerd-shim",
        ),
        4000,
        6,
        "probe:3 dns:3 conn:3 ext:9 cfg:1 listen:1",
        peers=("redis.ml-prod", "postgres.data-eng", "otel-collector.monitoring"),
        egress=("api.openai.com", "api.anthropic.com", "bedrock-runtime.us-east-1.amazonaws.com"),
    ),
    Kind(
        "airflow-worker",
        ("data-eng",),
        "apache/airflow:2.10.2-python3.11",
        (
            "airflow",
            "/home/airflow/.local/bin/python",
            "/home/airflow/.local/bin/python /home/airflow/.local/bin/airflow celery worker",
            "airflow",
            "dumb-init",
        ),
        8793,
        10,
        "cron:3 dns:3 conn:4 ext:6 cfg:1",
        peers=("postgres.data-eng", "kafka.data-eng", "redis.web"),
        egress=("s3.us-east-1.amazonaws.com",),
        noise="Unexpected outbound connection destination",
    ),
    Kind(
        "spark-executor",
        ("data-eng",),
        "apache/spark:3.5.3",
        (
            "java",
            "/opt/java/openjdk/bin/java",
            "/opt/java/openjdk/bin/java -Xmx8g -cp /opt/spark/conf/:/opt/spark/jars/* "
            "org.apache.spark.executor.CoarseGrainedExecutorBackend --driver-url "
            "spark://CoarseGrainedScheduler@spark-driver-svc:7078",
            "spark",
            "tini",
        ),
        7079,
        12,
        "dns:2 conn:4 ext:8 cfg:1",
        peers=("spark-driver-svc.data-eng", "kafka.data-eng"),
        egress=("s3.us-east-1.amazonaws.com",),
    ),
    Kind(
        "etl-cron",
        ("data-eng",),
        f"{ECR}/etl-jobs:2024.11.3",
        ("python", "/usr/local/bin/python3.11", "python /app/jobs/compact_partitions.py", "app", "sh"),
        0,
        6,
        "cron:6 dns:2 conn:3 ext:4 cfg:1",
        peers=("postgres.data-eng",),
        egress=("s3.us-east-1.amazonaws.com",),
    ),
    Kind(
        "frontend",
        ("web",),
        "nginx:1.27.2",
        ("nginx", "/usr/sbin/nginx", "nginx: worker process", "nginx", "nginx"),
        8080,
        14,
        "probe:4 dns:2 conn:6 cfg:2 listen:1",
        peers=("web-api.web",),
    ),
    Kind(
        "web-api",
        ("web",),
        f"{ECR}/web-api:3.2.0",
        ("node", "/usr/local/bin/node", "node /app/dist/server.js", "node", "containerd-shim"),
        8080,
        14,
        "probe:4 dns:3 conn:6 ext:2 cfg:1 listen:1",
        peers=("payments-api.payments", "redis.web", "rag-api.ml-prod", "llm-gateway.ai-platform"),
        egress=("s3.us-east-1.amazonaws.com",),
    ),
    Kind(
        "cms",
        ("marketing",),
        "wordpress:6.6-php8.2-apache",
        ("apache2", "/usr/sbin/apache2", "apache2 -DFOREGROUND", "www-data", "apache2"),
        80,
        5,
        "probe:4 dns:2 conn:4 ext:3 cfg:2",
        peers=("mysql.marketing",),
        egress=("www.google-analytics.com", "fonts.googleapis.com"),
    ),
    Kind(
        "analytics",
        ("marketing",),
        f"{ECR}/analytics-worker:0.4.7",
        (
            "python",
            "/usr/local/bin/python3.12",
            "python -m analytics.worker --queue events",
            "app",
            "containerd-shim",
        ),
        8000,
        4,
        "probe:2 dns:3 conn:4 ext:3 cfg:1 cron:1",
        peers=("mysql.marketing", "kafka.data-eng"),
        egress=("www.google-analytics.com", "s3.us-east-1.amazonaws.com"),
    ),
    Kind(
        "payments-api",
        ("payments",),
        f"{ECR}/payments-api:5.0.3",
        (
            "java",
            "/opt/java/openjdk/bin/java",
            "java -XX:MaxRAMPercentage=75 -jar /app/payments-api.jar",
            "app",
            "containerd-shim",
        ),
        8443,
        12,
        "probe:4 dns:2 conn:6 ext:3 cfg:1 listen:1",
        peers=("postgres.payments", "redis.web"),
        egress=("api.stripe.com",),
    ),
    Kind(
        "ledger",
        ("payments",),
        f"{ECR}/ledger:2.1.0",
        (
            "java",
            "/opt/java/openjdk/bin/java",
            "java -XX:MaxRAMPercentage=75 -jar /app/ledger.jar",
            "app",
            "containerd-shim",
        ),
        8080,
        6,
        "probe:4 dns:2 conn:6 cfg:1",
        peers=("postgres.payments", "kafka.data-eng"),
    ),
    Kind(
        "prometheus",
        ("monitoring",),
        "quay.io/prometheus/prometheus:v2.54.1",
        (
            "prometheus",
            "/bin/prometheus",
            "/bin/prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus",
            "nobody",
            "containerd-shim",
        ),
        9090,
        3,
        "scrape:10 dns:2 cfg:1",
        statefulset=True,
        noise="Contact K8S API Server From Container",
    ),
    Kind(
        "node-exporter",
        ("monitoring",),
        "quay.io/prometheus/node-exporter:v1.8.2",
        (
            "node_exporter",
            "/bin/node_exporter",
            "/bin/node_exporter --path.rootfs=/host",
            "nobody",
            "containerd-shim",
        ),
        9100,
        8,
        "cfg:4 listen:1",
        noise="Packet socket created in container",
    ),
    Kind(
        "fluent-bit",
        ("monitoring",),
        "cr.fluentbit.io/fluent/fluent-bit:3.1.9",
        (
            "fluent-bit",
            "/fluent-bit/bin/fluent-bit",
            "/fluent-bit/bin/fluent-bit -c /fluent-bit/etc/conf/fluent-bit.conf",
            "root",
            "containerd-shim",
        ),
        2020,
        8,
        "logs:8 conn:3 dns:1",
        peers=("opensearch.monitoring",),
        noise="Contact K8S API Server From Container",
    ),
    Kind(
        "grafana",
        ("monitoring",),
        "grafana/grafana:11.2.2",
        (
            "grafana",
            "/usr/share/grafana/bin/grafana",
            "grafana server --homepath=/usr/share/grafana",
            "grafana",
            "containerd-shim",
        ),
        3000,
        2,
        "probe:3 dns:2 conn:4 cfg:1",
        peers=("prometheus.monitoring", "opensearch.monitoring"),
    ),
    Kind(
        "buildkit",
        ("ci",),
        "moby/buildkit:v0.16.0",
        (
            "buildkitd",
            "/usr/bin/buildkitd",
            "buildkitd --addr unix:///run/buildkit/buildkitd.sock",
            "root",
            "containerd-shim",
        ),
        1234,
        4,
        "pip:5 ext:4 dns:2 cfg:1",
        egress=("pypi.org", "files.pythonhosted.org"),
    ),
    Kind(
        "coredns",
        ("kube-system",),
        "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/coredns:v1.11.3-eksbuild.1",
        ("coredns", "/coredns", "/coredns -conf /etc/coredns/Corefile", "root", "containerd-shim"),
        53,
        3,
        "probe:2 conn:6 cfg:1",
    ),
)
KIND_BY_APP = {k.app: k for k in KINDS}
MODEL_SERVER_APPS = ("vllm", "tgi", "triton", "ollama", "llama-cpp", "ray-worker")
CLUSTER_OF = {"ml-staging": STAGING, "ci": STAGING}


def _ai_egress() -> dict[str, tuple[str, ...]]:
    out: dict[str, set[str]] = {}
    for kind in KINDS:
        for ns in kind.namespaces:
            out.setdefault(ns, set()).update(h for h in kind.egress if h in AI_API_HOSTS)
    return {ns: tuple(sorted(hosts)) for ns, hosts in sorted(out.items()) if hosts}


# ---------------------------------------------------------------------------------------------
# principals that exist whatever the seed (so SANCTIONED can name them)

_SSO_HASH = {
    "DataScientist": "7c2e5a19d0b3f4e1",
    "Developer": "2b9d41c7e8a0f356",
    "DevAdmin": "635426549a280cc6",
    "MLOpsAdmin": "a41f09c3d7e2b858",
    "SecurityAdmin": "e90c2d17b4a6f3c2",
}


def sso_role(name: str) -> str:
    return f"aws-reserved/sso.amazonaws.com/AWSReservedSSO_{name}_{_SSO_HASH[name]}"


def role_session_arn(role: str, session: str) -> str:
    return f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role.rsplit('/', 1)[-1]}/{session}"


# (role, session, actions, source, user agent key)
AWS_SERVICE_ROLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "sagemaker-training-pipeline",
        "SageMaker",
        "s3_get_train:6 s3_put_train:2 s3_put_artifacts:2 sm_read:1",
        "boto",
    ),
    ("feature-etl-irsa", "airflow-feature-etl", "s3_get_lake:4 s3_put_train:3 s3_put_lake:2", "boto"),
    ("data-ingest-irsa", "data-ingest", "s3_put_lake:6 s3_get_lake:1", "boto"),
    ("chat-backend-role", "chat-backend", "bedrock_invoke:6 sts_whoami:1", "boto"),
    ("support-bot-role", "support-bot", "bedrock_invoke:6", "boto"),
    ("doc-summarizer-role", "doc-summarizer", "bedrock_invoke:5 s3_get_lake:1", "boto"),
    ("search-rerank-role", "search-rerank", "bedrock_invoke:4 sm_invoke:3", "boto"),
    ("code-assist-role", "code-assist", "bedrock_invoke:5", "boto"),
    ("inference-caller-irsa", "embedder", "sm_invoke:6", "boto"),
    ("karpenter-controller", "karpenter", "ec2_describe:8", "go"),
    ("security-audit", "prowler", "iam_read:4 logging_read:2 trail_read:2", "boto"),
    ("ci-deploy", "github-actions", "sts_assume:2 ecr_token:3 eks_describe:2", "go"),
    ("web-assets-irsa", "web-api", "s3_get_web:5", "js"),
)
BEDROCK_APP_ROLES = (
    "chat-backend-role",
    "support-bot-role",
    "doc-summarizer-role",
    "search-rerank-role",
    "code-assist-role",
)
TRAINING_WRITER_ROLES = ("sagemaker-training-pipeline", "feature-etl-irsa")
MLOPS_ADMINS = ("priya.raman", "tomas.eriksen")
SECURITY_ADMINS = ("grace.okafor",)

FIRST = (
    "alice",
    "bob",
    "carol",
    "dmitri",
    "elena",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jamal",
    "kenji",
    "lena",
    "marco",
    "nadia",
    "oscar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "tara",
    "umar",
    "vera",
    "wei",
    "ximena",
    "yusuf",
    "zoe",
    "amir",
    "beatriz",
    "chen",
    "dana",
    "emeka",
    "fatima",
    "gus",
    "hana",
    "ivan",
    "julia",
)
LAST = (
    "nguyen",
    "smith",
    "garcia",
    "kowalski",
    "okafor",
    "ito",
    "muller",
    "rossi",
    "haddad",
    "silva",
    "kim",
    "novak",
    "patel",
    "larsen",
    "dubois",
    "costa",
    "chen",
    "meyer",
    "ortiz",
    "sato",
)

UA_BOTO = (
    "Boto3/1.35.44 md/Botocore#1.35.44 ua/2.0 os/linux#5.10.227-219.884.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.11.10 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.44"
)
UA_GO = "aws-sdk-go-v2/1.32.2 os/linux lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.187.0"
UA_JS = "aws-sdk-js/3.675.0 ua/2.1 os/linux#5.10.227 lang/js md/nodejs#20.18.0 api/s3#3.675.0"
UA_CLI = (
    "aws-cli/2.18.11 md/awscrt#0.22.0 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.12.6 "
    "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#{cmd}"
)
UA_CONSOLE = "AWS Internal"
UAS = {"boto": UA_BOTO, "go": UA_GO, "js": UA_JS}

MODEL_IDS_BEDROCK = (
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "meta.llama3-1-70b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0",
)
GATEWAY_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "claude-3-5-sonnet-20241022",
    "llama-3.1-70b-instruct",
    "text-embedding-3-small",
)


SANCTIONED: dict[str, Any] = {
    "account_id": ACCOUNT_ID,
    "clusters": (PROD, STAGING),
    # namespaces allowed to run AI workloads (model servers, AI API clients)
    "ai_namespaces": ("ai-platform", "inference", "ml-prod", "ml-staging"),
    # every AI provider API host this world knows (sanctioned or not)
    "known_ai_hosts": AI_API_HOSTS,
    # the sanctioned AI endpoints, and per AI namespace the AI API hosts its workloads may reach
    # (api.openai.com / api.anthropic.com only from ai-platform, i.e. through the LLM gateway)
    "ai_hosts": (
        "bedrock-runtime.us-east-1.amazonaws.com",
        "runtime.sagemaker.us-east-1.amazonaws.com",
        "llm-gateway.ai-platform.svc.cluster.local",
    ),
    "ai_egress": _ai_egress(),
    "model_server_images": tuple(KIND_BY_APP[a].image for a in MODEL_SERVER_APPS),
    "model_server_processes": (
        "python3",
        "text-generation-launcher",
        "text-generation-server",
        "tritonserver",
        "ollama",
        "llama-server",
        "ray::ServeReplica",
        "vllm",
    ),
    "package_install_namespaces": ("ci", "ml-staging"),
    "gpu_node_prefix": "gpu-node-",
    "ai_ports": (8000, 8080, 11434, 8888, 4000, 8001),
    "loadbalancer_namespaces": ("web", "ingress-nginx"),
    "training_buckets": (TRAINING_BUCKET,),
    "training_bucket_writers": tuple(
        role_session_arn(r, s) for r, s, *_ in AWS_SERVICE_ROLES if r in TRAINING_WRITER_ROLES
    ),
    "model_registry_writers": tuple(role_session_arn(sso_role("MLOpsAdmin"), p) for p in MLOPS_ADMINS),
    "logging_admins": tuple(role_session_arn(sso_role("SecurityAdmin"), p) for p in SECURITY_ADMINS),
    "bedrock_principals": tuple(
        role_session_arn(r, s) for r, s, *_ in AWS_SERVICE_ROLES if r in BEDROCK_APP_ROLES
    ),
    "k8s_deployers": (
        "github-actions-deployer",
        "system:serviceaccount:argocd:argocd-application-controller",
    ),
    "internal_cidrs": ("10.0.0.0/8", "172.20.0.0/16"),
    "gateway_endpoints": ("/v1/chat/completions", "/v1/embeddings"),
}


# ---------------------------------------------------------------------------------------------
# entities of the world


@dataclass(slots=True)
class Workload:
    kind: Kind
    cluster: str
    namespace: str
    deployment: str
    pod: str
    container_id: str  # 64 hex, as a runtime reports it; entity ids use the first 12
    image: str
    image_repo: str
    image_tag: str
    node: str
    pod_ip: str
    gpu: bool
    process: tuple[str, str, str, str, str]
    model_slug: str = ""
    weights: tuple[tuple[str, int], ...] = ()  # (path, bytes)
    acts: tuple[str, ...] = ()


@dataclass(slots=True)
class AwsPrincipal:
    name: str  # role or user name
    arn: str  # userIdentity.arn as it appears in records (session ARN for roles)
    identity: Record
    source_ip: str
    user_agent: str
    acts: tuple[str, ...]
    human: bool = False


@dataclass(slots=True)
class K8sUser:
    username: str
    groups: list[str]
    source_ip: str
    user_agent: str
    acts: tuple[str, ...]
    namespaces: tuple[str, ...] = ()
    node: str = ""


@dataclass(slots=True)
class ApiKey:
    key_id: str
    user: str
    client_ip: str
    user_agent: str
    model: str
    endpoint: str
    weight: float
    peak_hour: float
    amplitude: float
    pt: tuple[int, int]
    ct: tuple[int, int]
    with_prompt: bool


@dataclass(slots=True)
class BedrockCaller:
    arn: str
    models: tuple[str, ...]
    system: str | None


def _parse_acts(spec: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in spec.split():
        name, _, weight = part.partition(":")
        out.extend([name] * int(weight or 1))
    return tuple(out)


def _rand5(rng: random.Random) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(rng.random() * 27)] for _ in range(5))


def _pod_hash(rng: random.Random) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(rng.random() * 27)] for _ in range(int(rng.random() * 2) + 9))


def _weights(rng: random.Random, kind: Kind, model: tuple[str, str, int, str]) -> tuple[tuple[str, int], ...]:
    slug, directory, shards, pattern = model
    files = []
    for i in range(1, shards + 1):
        name = pattern.format(i=i, n=shards)
        size = int(rng.uniform(3.6e9, 4.99e9)) if shards > 1 else int(rng.uniform(1.3e9, 4.9e9))
        files.append((f"{directory}/{name}", size))
    return tuple(files)


# ---------------------------------------------------------------------------------------------
# prompts


_Q_TEMPLATES = (
    "How do I {task} in {tech}?",
    "What is the best way to {task} with {tech}?",
    "Can you explain why {tech} might fail to {task}?",
    "Write a {tech} snippet that shows how to {task}.",
    "Summarize the attached notes about {topic} in five bullet points.",
    "Draft a polite reply to a customer asking about {topic}.",
    "What are the main risks of {topic} and how can we reduce them?",
    "Give me three talking points on {topic} for tomorrow's meeting.",
    'Translate this sentence into {lang}: "{sentence}"',
    "Rewrite this paragraph to be clearer: {sentence}",
    'Classify the sentiment of this review: "{sentence}"',
    "Extract the order number and date from: {sentence}",
    "Compare {tech} and {tech2} for {task}.",
    "What does this error mean in {tech}: {error}?",
    "Suggest a name for a feature that lets users {task}.",
)
_TASKS = (
    "paginate API results",
    "retry failed requests",
    "parse ISO dates",
    "deduplicate rows",
    "stream a large file",
    "cache expensive queries",
    "rotate log files",
    "validate user input",
    "batch database writes",
    "schedule a nightly job",
    "profile memory usage",
    "write unit tests",
    "handle timeouts",
    "merge two dataframes",
    "compress JSON payloads",
    "export a report to CSV",
    "resize images",
    "sort by multiple keys",
    "rate limit a client",
    "mock an HTTP server",
)
_TECH = (
    "Python",
    "pandas",
    "PostgreSQL",
    "Kubernetes",
    "React",
    "Go",
    "Spark",
    "Terraform",
    "FastAPI",
    "Kafka",
    "TypeScript",
    "Airflow",
    "Redis",
    "ClickHouse",
    "Rust",
    "Java",
)
_TOPICS = (
    "our Q4 roadmap",
    "the new refund policy",
    "data retention rules",
    "the onboarding checklist",
    "vendor security reviews",
    "the holiday support schedule",
    "GPU capacity planning",
    "the incident from last Tuesday",
    "customer churn in EMEA",
    "the pricing page redesign",
    "model evaluation results",
    "our hiring plan",
    "the migration to the new billing system",
    "accessibility improvements",
    "SLA commitments for enterprise customers",
)
_LANGS = ("French", "German", "Spanish", "Japanese", "Portuguese", "Italian", "Korean", "Dutch")
_SENTENCES = (
    "The delivery arrived two days late but the support team was very helpful.",
    "Order #48213 was placed on 14 March and shipped the next morning.",
    "Please find the updated invoice attached; the total now includes tax.",
    "We are excited to announce a new integration with our partners.",
    "The product works well, although the setup instructions were confusing.",
    "Our meeting is moved to Thursday at 3 pm in the large conference room.",
    "I was charged twice for the same subscription this month.",
    "Thanks for the quick turnaround on the design review.",
)
_ERRORS = (
    "connection reset by peer",
    "KeyError: 'user_id'",
    "OOMKilled",
    "deadlock detected",
    "certificate verify failed",
    "context deadline exceeded",
    "TypeError: undefined is not a function",
)
_ANSWERS = (
    "Here is a concise answer with the steps you asked for.",
    "Sure. The key points are summarized below.",
    "There are a few ways to approach this; the simplest is shown first.",
    "Based on the notes, the main takeaways are as follows.",
    "The error usually means the remote side closed the connection early.",
    "Here is a draft you can adapt to your tone.",
)


def _prompt_pool(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        tpl = rng.choice(_Q_TEMPLATES)
        tech, tech2 = rng.sample(_TECH, 2)
        out.append(
            tpl.format(
                task=rng.choice(_TASKS),
                tech=tech,
                tech2=tech2,
                topic=rng.choice(_TOPICS),
                lang=rng.choice(_LANGS),
                sentence=rng.choice(_SENTENCES),
                error=rng.choice(_ERRORS),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# the world


@dataclass
class World:
    """Every entity of the organisation, drawn from ``rng`` (see the module docstring)."""

    size: int
    nodes: dict[str, list[tuple[str, str, bool]]] = field(default_factory=dict)  # cluster -> (name, ip, gpu)
    workloads: list[Workload] = field(default_factory=list)
    aws: list[AwsPrincipal] = field(default_factory=list)
    aws_by_name: dict[str, AwsPrincipal] = field(default_factory=dict)
    humans: list[str] = field(default_factory=list)  # first.last
    k8s_users: list[K8sUser] = field(default_factory=list)
    keys: list[ApiKey] = field(default_factory=list)
    bedrock_callers: list[BedrockCaller] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, rng: random.Random, size: int = 200) -> World:
        size = max(30, int(size))
        world = cls(size=size)
        world._nodes(rng)
        world._workloads(rng)
        world._humans(rng)
        world._aws(rng)
        world._k8s(rng)
        world._keys(rng)
        world._bedrock(rng)
        world.prompts = _prompt_pool(rng, 1500)
        return world

    # --- infrastructure
    def _nodes(self, rng: random.Random) -> None:
        gpu_n, cpu_n = max(3, self.size // 25), max(4, self.size // 12)
        g = c = 0
        for cluster, share, net in ((PROD, 0.7, 0), (STAGING, 0.3, 1)):
            nodes: list[tuple[str, str, bool]] = []
            for _ in range(max(2, round(gpu_n * share))):
                g += 1
                nodes.append((f"gpu-node-{g}", f"10.{net}.{100 + g % 50}.{10 + g}", True))
            for _ in range(max(2, round(cpu_n * share))):
                c += 1
                nodes.append((f"node-{c}", f"10.{net}.{150 + c % 50}.{10 + c}", False))
            self.nodes[cluster] = nodes

    def _workloads(self, rng: random.Random) -> None:
        total_w = sum(k.weight for k in KINDS)
        used_ips: set[str] = set()
        for kind in KINDS:
            count = max(1, round(self.size * kind.weight / total_w))
            made = 0
            while made < count:
                ns = kind.namespaces[0] if made == 0 else rng.choice(kind.namespaces)
                cluster = CLUSTER_OF.get(ns, PROD)
                model = rng.choice(kind.models) if kind.models else None
                deployment = (
                    f"{kind.app}-{model[0].replace(':', '-').replace('.', '-')}" if model else kind.app
                )
                replicas = min(count - made, 1 + int(rng.random() * 3))
                pod_hash = _pod_hash(rng)
                candidates = [n for n in self.nodes[cluster] if n[2] == kind.gpu]
                for r in range(replicas):
                    if kind.statefulset:
                        pod = f"{deployment}-{r}"
                    elif kind.app == "node-exporter" or kind.app == "fluent-bit":
                        pod = f"{deployment}-{_rand5(rng)}"
                    else:
                        pod = f"{deployment}-{pod_hash}-{_rand5(rng)}"
                    node, _, _ = rng.choice(candidates)
                    net = 0 if cluster == PROD else 1
                    while True:
                        ip = f"10.{net}.{int(rng.random() * 96)}.{2 + int(rng.random() * 252)}"
                        if ip not in used_ips:
                            used_ips.add(ip)
                            break
                    repo, _, tag = kind.image.rpartition(":")
                    name, exe, cmd, user, parent = kind.proc
                    if model:
                        cmd = cmd.format(dir=model[1], slug=model[0])
                        if kind.app == "vllm" and rng.random() < 0.5:
                            name, exe, cmd = (
                                "vllm",
                                "/usr/local/bin/vllm",
                                f"vllm serve {model[1]} --port 8000",
                            )
                    self.workloads.append(
                        Workload(
                            kind=kind,
                            cluster=cluster,
                            namespace=ns,
                            deployment=deployment,
                            pod=pod,
                            container_id=F.hexid(rng, 64),
                            image=kind.image,
                            image_repo=repo,
                            image_tag=tag,
                            node=node,
                            pod_ip=ip,
                            gpu=kind.gpu,
                            process=(name, exe, cmd, user, parent),
                            model_slug=model[0] if model else "",
                            weights=_weights(rng, kind, model) if model else (),
                            acts=_parse_acts(kind.acts),
                        )
                    )
                    made += 1

    def _humans(self, rng: random.Random) -> None:
        n = max(12, self.size // 6)
        names = [f"{f}.{last}" for f in FIRST for last in LAST]
        rng.shuffle(names)
        fixed = list(MLOPS_ADMINS + SECURITY_ADMINS)
        self.humans = fixed + [h for h in names if h not in fixed][: n - len(fixed)]

    def _aws(self, rng: random.Random) -> None:
        created = "2026-11-25T06:12:40Z"
        for role, session, acts, ua in AWS_SERVICE_ROLES:
            rid = "AROA" + F.upper_id(rng, 17)
            ident = F.aws_identity_role(ACCOUNT_ID, role, session, rid, "ASIA" + F.upper_id(rng, 16), created)
            src = rng.choice(self.workloads).pod_ip
            self._add_aws(AwsPrincipal(role, ident["arn"], ident, src, UAS[ua], _parse_acts(acts)))
        groups = (
            ("DataScientist", "s3_get_train:4 sm_read:3 bedrock_invoke:2 sts_whoami:1 s3_get_artifacts:2"),
            ("Developer", "ec2_describe:3 s3_get_web:2 sts_whoami:1 eks_describe:2 denied:1"),
            ("DevAdmin", "iam_read:3 ec2_describe:3 eks_describe:1 trail_read:1"),
        )
        for i, person in enumerate(self.humans):
            if person in MLOPS_ADMINS:
                group, acts = "MLOpsAdmin", "registry_write:3 sm_read:4 s3_get_artifacts:2"
            elif person in SECURITY_ADMINS:
                group, acts = "SecurityAdmin", "logging_read:3 iam_read:3 trail_read:3"
            else:
                group, acts = groups[i % 3]
            role = sso_role(group)
            rid = "AROA" + F.upper_id(rng, 17)
            ident = F.aws_identity_role(ACCOUNT_ID, role, person, rid, "ASIA" + F.upper_id(rng, 16), created)
            src = f"10.8.{int(rng.random() * 64)}.{2 + int(rng.random() * 250)}"
            cmd = rng.choice(
                ("s3.cp", "sts.get-caller-identity", "ec2.describe-instances", "sagemaker.list-models")
            )
            self._add_aws(
                AwsPrincipal(
                    f"{group}/{person}",
                    ident["arn"],
                    ident,
                    src,
                    UA_CLI.format(cmd=cmd),
                    _parse_acts(acts),
                    human=True,
                )
            )
        ident = F.aws_identity_user(
            ACCOUNT_ID, "svc-legacy-reporting", "AIDA" + F.upper_id(rng, 17), "AKIA" + F.upper_id(rng, 16)
        )
        self._add_aws(
            AwsPrincipal(
                "svc-legacy-reporting",
                ident["arn"],
                ident,
                "10.0.3.41",
                UA_BOTO,
                _parse_acts("s3_get_reports:4"),
            )
        )

    def _add_aws(self, p: AwsPrincipal) -> None:
        self.aws.append(p)
        self.aws_by_name[p.name] = p

    def _k8s(self, rng: random.Random) -> None:
        kubelet_ua = "kubelet/v1.30.4 (linux/amd64) kubernetes/a51b3b7"
        for cluster in (PROD, STAGING):
            for name, ip, _ in self.nodes[cluster]:
                self.k8s_users.append(
                    K8sUser(
                        f"system:node:{name}",
                        ["system:nodes", "system:authenticated"],
                        ip,
                        kubelet_ua,
                        _parse_acts("kubelet_lease:4 kubelet_pod:3 kubelet_node:1"),
                        node=name,
                    )
                )
        ctrl_ip = "10.0.0.12"
        self.k8s_users += [
            K8sUser(
                "system:kube-controller-manager",
                ["system:authenticated"],
                ctrl_ip,
                "kube-controller-manager/v1.30.4 (linux/amd64) kubernetes/a51b3b7/leader-election",
                _parse_acts("lease:3 watch:3"),
            ),
            K8sUser(
                "system:serviceaccount:kube-system:replicaset-controller",
                ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
                ctrl_ip,
                "kube-controller-manager/v1.30.4 (linux/amd64) kubernetes/a51b3b7/system:serviceaccount:"
                "kube-system:replicaset-controller",
                _parse_acts("rs_update:3 watch:2"),
            ),
            K8sUser(
                "system:kube-scheduler",
                ["system:authenticated"],
                ctrl_ip,
                "kube-scheduler/v1.30.4 (linux/amd64) kubernetes/a51b3b7/scheduler",
                _parse_acts("bind:3 lease:2"),
            ),
        ]
        sa_groups = ["system:serviceaccounts", "system:authenticated"]
        for sa, acts, ua in (
            ("monitoring:prometheus", "watch:4 list:3", "Prometheus/2.54.1"),
            (
                "argocd:argocd-application-controller",
                "watch:3 deploy_patch:2 list:2",
                "argocd-application-controller/v2.12.4 (linux/amd64)",
            ),
            ("kube-system:karpenter", "watch:3 list:2 nodeclaim:1", "karpenter/v1.0.6"),
            ("ray-system:kuberay-operator", "watch:3 list:1", "kuberay-operator/v1.2.2"),
            ("data-eng:airflow-worker", "pod_create:2 list:2 pod_log:2", "kubernetes-python-client/30.1.0"),
            ("monitoring:fluent-bit", "get_pod:4", "fluent-bit/3.1.9"),
        ):
            pod = next((w for w in self.workloads if w.namespace == sa.split(":")[0]), self.workloads[0])
            self.k8s_users.append(
                K8sUser(f"system:serviceaccount:{sa}", sa_groups, pod.pod_ip, ua, _parse_acts(acts))
            )
        self.k8s_users.append(
            K8sUser(
                "github-actions-deployer",
                ["acme:ci-deployers", "system:authenticated"],
                "10.0.2.77",
                "kubectl/v1.30.5 (linux/amd64) kubernetes/74e84a9",
                _parse_acts("deploy_patch:4 cm_update:2 svc_create:1 get:2"),
                namespaces=("ml-prod", "inference", "web", "payments", "data-eng", "ai-platform"),
            )
        )
        for i, person in enumerate(self.humans[: max(6, len(self.humans) * 2 // 3)]):
            ml = i % 2 == 0
            self.k8s_users.append(
                K8sUser(
                    f"{person}@acme.example",
                    ["acme:ml-engineers" if ml else "acme:developers", "system:authenticated"],
                    self.aws_by_name[next(n for n in self.aws_by_name if n.endswith("/" + person))].source_ip,
                    rng.choice(
                        (
                            "kubectl/v1.31.1 (darwin/arm64) kubernetes/948afe5",
                            "kubectl/v1.30.5 (darwin/arm64) kubernetes/74e84a9",
                            "k9s/v0.32.5 (darwin/arm64)",
                        )
                    ),
                    _parse_acts("get:4 list:3 pod_log:2 exec:0"),
                    namespaces=("ml-prod", "ml-staging", "inference")
                    if ml
                    else ("web", "payments", "data-eng"),
                )
            )

    def _keys(self, rng: random.Random) -> None:
        services = (
            "svc-rag-api",
            "svc-support-bot",
            "svc-code-review",
            "svc-translate",
            "svc-summarizer",
            "svc-search",
            "svc-agent-runner",
            "svc-eval-harness",
            "svc-ticket-triage",
            "svc-docs-qa",
            "svc-sales-assist",
            "svc-moderation",
        )
        n_keys = max(40, self.size * 3 // 2)
        people = self.humans[: max(10, len(self.humans))]
        callers = [w for w in self.workloads if w.namespace in ("ml-prod", "web", "inference", "data-eng")]
        uas_svc = (
            "OpenAI/Python 1.51.2",
            "AsyncOpenAI/Python 1.51.2",
            "OpenAI/NodeJS 4.67.3",
            "langchain-openai/0.2.3 OpenAI/Python 1.51.2",
            "litellm/1.50.2",
        )
        uas_human = (
            "OpenAI/Python 1.51.2",
            "Cursor/0.42.3",
            "continue/0.8.55 (vscode)",
            "OpenAI/NodeJS 4.67.3",
        )
        seen: set[str] = set()
        for i in range(n_keys):
            service = i % 5 != 4
            while True:
                key_id = "key-" + F.hexid(rng, 16)
                if key_id not in seen:
                    seen.add(key_id)
                    break
            if service:
                user = services[int(rng.random() ** 1.5 * len(services))]
                ip = rng.choice(callers).pod_ip
                ua = rng.choice(uas_svc)
                embed = user in ("svc-search", "svc-docs-qa") and rng.random() < 0.5
                weight = rng.lognormvariate(0.0, 1.0) * 2.0
                amplitude = 0.25
            else:
                user = f"{rng.choice(people)}@acme.example"
                ip = f"10.8.{int(rng.random() * 64)}.{2 + int(rng.random() * 250)}"
                ua = rng.choice(uas_human)
                embed = False
                weight = rng.lognormvariate(-0.5, 0.8)
                amplitude = 0.7
            model = "text-embedding-3-small" if embed else rng.choice(GATEWAY_MODELS[:4])
            pt_lo = int(rng.uniform(50, 300))
            ct_lo = int(rng.uniform(50, 200))
            self.keys.append(
                ApiKey(
                    key_id=key_id,
                    user=user,
                    client_ip=ip,
                    user_agent=ua,
                    model=model,
                    endpoint="/v1/embeddings" if embed else "/v1/chat/completions",
                    weight=weight,
                    peak_hour=rng.uniform(13, 19) if not service else rng.uniform(0, 24),
                    amplitude=amplitude,
                    pt=(pt_lo, int(rng.uniform(pt_lo + 50, 800))),
                    ct=(0, 0) if embed else (ct_lo, int(rng.uniform(ct_lo + 50, 600))),
                    with_prompt=rng.random() < 0.8,
                )
            )

    def _bedrock(self, rng: random.Random) -> None:
        for role in BEDROCK_APP_ROLES:
            p = self.aws_by_name[role]
            models = tuple(rng.sample(MODEL_IDS_BEDROCK, 2))
            self.bedrock_callers.append(BedrockCaller(p.arn, models, "You are a helpful assistant for Acme."))
        for p in self.aws:
            if p.name.startswith("DataScientist/") and rng.random() < 0.5:
                self.bedrock_callers.append(BedrockCaller(p.arn, (rng.choice(MODEL_IDS_BEDROCK),), None))

    # --- look-ups used by scenarios
    def by_app(self, *apps: str) -> list[Workload]:
        return [w for w in self.workloads if w.kind.app in apps]

    def principal(self, name: str) -> AwsPrincipal:
        return self.aws_by_name[name]

    def key_share(self, key: ApiKey) -> float:
        """The key's average share of gateway traffic (for scenarios sizing their bursts)."""
        return key.weight / sum(k.weight for k in self.keys)


# ---------------------------------------------------------------------------------------------
# entity-aware record builders (used by the benign generator and by the scenarios)


def w_native(rng: random.Random, t: int, w: Workload, kind: str, process: Record, **sub: Record) -> Record:
    return F.native(
        t,
        int(rng.random() * 1000),
        kind,
        host=w.node,
        cluster=w.cluster,
        namespace=w.namespace,
        pod=w.pod,
        container_id=w.container_id,
        image=w.image,
        process=process,
        gpu=w.gpu,
        **sub,
    )


# What a scanner finds in the model server images (the Python packages; Trivy report of the image).
IMAGE_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "vllm": (("vllm", "0.6.3"), ("torch", "2.4.0"), ("transformers", "4.45.2"), ("tokenizers", "0.20.1"),
             ("safetensors", "0.4.5")),
}
SITE_PACKAGES = "usr/local/lib/python3.12/dist-packages"


def image_report(rng: random.Random, t: int, w: Workload, vulnerabilities: list[Record]) -> Record:
    """A Trivy report of ``w``'s image: its Python packages, with ``vulnerabilities``."""
    digest = "sha256:" + F.hexid(rng, 64)
    return F.trivy_image(t, F.uuid4(rng), w.image, digest, SITE_PACKAGES, list(IMAGE_PACKAGES.get(w.kind.app, ())),
                         vulnerabilities)


def main_proc(w: Workload) -> Record:
    name, exe, cmd, user, parent = w.process
    return F.proc(name, cmd, parent, exe, user)


def w_falco(
    rng: random.Random,
    t: int,
    w: Workload,
    rule: str,
    process: Record,
    evt_type: str,
    dst: tuple[str, int] | None = None,
) -> Record:
    if dst is not None:
        sport = 32768 + int(rng.random() * 28000)
        fd: dict[str, Any] = {
            "fd_name": f"{w.pod_ip}:{sport}->{dst[0]}:{dst[1]}",
            "sip": dst[0],
            "sport": dst[1],
            "rip": dst[0],
            "rport": dst[1],
        }
    else:
        fd = {}
    return F.falco(
        t,
        int(rng.random() * 1_000_000),
        rule,
        w.node,
        proc_name=process["name"],
        proc_cmdline=process["cmdline"],
        proc_pname=process["parent_name"],
        proc_exepath=process["exe"],
        user=process["user"],
        container_id=w.container_id,
        image_repo=w.image_repo,
        image_tag=w.image_tag,
        k8s_ns=w.namespace,
        k8s_pod=w.pod,
        evt_type=evt_type,
        **fd,
    )


def p_cloudtrail(
    rng: random.Random,
    t: int,
    p: AwsPrincipal,
    source: str,
    name: str,
    params: Record | None,
    resp: Record | None = None,
    *,
    read_only: bool,
    management: bool = True,
    tls_host: str | None = None,
    resources: list[Record] | None = None,
    additional: Record | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    error: tuple[str, str] | None = None,
) -> Record:
    s3 = source == "s3.amazonaws.com"
    return F.cloudtrail(
        t,
        event_source=source,
        event_name=name,
        region=REGION,
        source_ip=source_ip or p.source_ip,
        user_agent=user_agent or p.user_agent,
        identity=p.identity,
        request_parameters=params,
        response_elements=resp,
        request_id=F.hexid(rng, 16).upper() if s3 else F.uuid4(rng),
        event_id=F.uuid4(rng),
        read_only=read_only,
        management=management,
        account=ACCOUNT_ID,
        tls_host=tls_host,
        resources=resources,
        additional=additional,
        error_code=error[0] if error else None,
        error_message=error[1] if error else None,
    )


def s3_call(
    rng: random.Random,
    t: int,
    p: AwsPrincipal,
    name: str,
    bucket: str,
    key: str,
    size: int,
    source_ip: str | None = None,
    user_agent: str | None = None,
) -> Record:
    read = name in ("GetObject", "HeadObject")
    resp = (
        None
        if read or name == "DeleteObject"
        else {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"
            "5d1c3b8e-7a2f-4c90-9e61-0b8f4d2a7c13",
        }
    )
    return p_cloudtrail(
        rng,
        t,
        p,
        "s3.amazonaws.com",
        name,
        F.s3_object_params(bucket, key, REGION),
        resp,
        read_only=read,
        management=False,
        tls_host=f"{bucket}.s3.{REGION}.amazonaws.com",
        resources=F.s3_resources(ACCOUNT_ID, bucket, key),
        additional=F.s3_additional(0 if read else size, size if read else 0),
        source_ip=source_ip,
        user_agent=user_agent,
    )


def _rbac_reason(u: K8sUser) -> str:
    """The ``authorization.k8s.io/reason`` annotation RBAC writes for this kind of user."""
    name = u.username
    if name.startswith("system:serviceaccount:"):
        ns, sa = name.split(":")[2:4]
        return (
            f'RBAC: allowed by ClusterRoleBinding "{sa}" of ClusterRole "{sa}" to ServiceAccount "{sa}/{ns}"'
        )
    if name.startswith("system:"):
        role = name.removeprefix("system:")
        binding = f"system:{role}"
        return f'RBAC: allowed by ClusterRoleBinding "{binding}" of ClusterRole "{binding}" to User "{name}"'
    group = u.groups[0]
    role = "edit" if group in ("acme:ci-deployers", "acme:ml-engineers") else "view"
    binding = f"{group.split(':')[-1]}-{role}"
    return f'RBAC: allowed by ClusterRoleBinding "{binding}" of ClusterRole "{role}" to Group "{group}"'


def u_k8s(
    rng: random.Random,
    t: int,
    u: K8sUser,
    verb: str,
    group_version: str,
    resource: str,
    namespace: str | None,
    name: str | None = None,
    sub: str | None = None,
    *,
    code: int = 200,
    query: str = "",
    request_object: Record | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    level: str = "Metadata",
    reason: str | None = None,
) -> Record:
    group, _, version = group_version.rpartition("/")
    ref: Record = {"resource": resource}
    if namespace:
        ref["namespace"] = namespace
    if name:
        ref["name"] = name
    if group:
        ref["apiGroup"] = group
    ref["apiVersion"] = version
    if sub:
        ref["subresource"] = sub
    latency = 600 + int(rng.random() * 9000) if verb != "watch" else 1_000_000 + int(rng.random() * 4_000_000)
    return F.k8s_audit(
        t,
        int(rng.random() * 1000),
        latency,
        audit_id=F.uuid4(rng),
        verb=verb,
        request_uri=F.k8s_uri(group_version, namespace, resource, name, sub) + query,
        username=u.username,
        groups=u.groups,
        source_ip=source_ip or u.source_ip,
        user_agent=user_agent or u.user_agent,
        object_ref=ref,
        code=code,
        reason=_rbac_reason(u) if reason is None else reason,
        level=level,
        request_object=request_object,
    )


def gw_call(
    rng: random.Random,
    t: int,
    k: ApiKey,
    prompt: str | None,
    pt: int,
    ct: int,
    *,
    status: int = 200,
    client_ip: str | None = None,
    user_agent: str | None = None,
    latency_ms: int | None = None,
) -> Record:
    if latency_ms is None:
        latency_ms = 120 + int(ct * (9 + rng.random() * 14)) + int(pt * 0.2)
    return F.gateway(
        t,
        request_id=f"chatcmpl-{F.uuid4(rng)}",
        api_key_id=k.key_id,
        user=k.user,
        client_ip=client_ip or k.client_ip,
        user_agent=user_agent or k.user_agent,
        model=k.model,
        endpoint=k.endpoint,
        prompt_tokens=pt,
        completion_tokens=ct,
        latency_ms=latency_ms,
        status=status,
        prompt=prompt,
    )


def br_call(
    rng: random.Random,
    t: int,
    arn: str,
    model_id: str,
    prompt: str,
    answer: str,
    tokens_in: int,
    tokens_out: int,
    max_tokens: int,
    system: str | None = None,
    stop: str = "end_turn",
) -> Record:
    if model_id.startswith("anthropic."):
        operation = "InvokeModel"
        body_in = F.bedrock_invoke_body(prompt, max_tokens, system)
        body_out = F.bedrock_invoke_output(F.hexid(rng, 24), model_id, answer, tokens_in, tokens_out, stop)
    else:
        operation = "Converse"
        body_in = F.bedrock_converse_body(prompt, max_tokens)
        body_out = F.bedrock_converse_output(
            answer,
            tokens_in,
            tokens_out,
            300 + tokens_out * 18,
            "max_tokens" if stop == "max_tokens" else stop,
        )
    return F.bedrock(
        t,
        account=ACCOUNT_ID,
        arn=arn,
        region=REGION,
        request_id=F.uuid4(rng),
        operation=operation,
        model_id=model_id,
        input_body=body_in,
        tokens_in=tokens_in,
        output_body=body_out,
        tokens_out=tokens_out,
    )


# ---------------------------------------------------------------------------------------------
# what Falco alone reports of a runtime event (Falco-only estates)

SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ash"})
PACKAGE_TOOLS = frozenset({"pip", "pip3", "apt", "apt-get", "apk", "npm", "yum"})
MINER_POOL_PORTS = frozenset({3333, 4444, 5555, 7777, 14444, 14433, 45700})


def falco_view(record: Record, ms: int, names: dict[str, str]) -> Record | None:
    """The Falco alert a native agent event at ``ms`` would raise on a stock rule set (``names``: IP -> the name
    Falco's DNS cache resolved, for ``fd.sip.name``), or ``None`` when Falco reports nothing of it (DNS
    queries, listens). No byte counts: Falco's connect and open events carry none."""
    kind = record["kind"]
    process = record["process"]
    repo, _, tag = record["image"].rpartition(":")
    common = {
        "proc_name": process["name"], "proc_cmdline": process["cmdline"], "proc_pname": process["parent_name"],
        "proc_exepath": process["exe"], "user": process["user"], "container_id": record["container_id"],
        "image_repo": repo, "image_tag": tag, "k8s_ns": record["namespace"], "k8s_pod": record["pod"],
    }
    micros = int(record["time"][23:26])  # the native time's sub-millisecond digits
    if kind == "process_exec":
        name, cmdline = process["name"], process["cmdline"]
        if "stratum+" in cmdline:
            rule = "Detect crypto miners using the Stratum protocol"
        elif name in SHELLS:
            rule = "Terminal shell in container"
        elif name in PACKAGE_TOOLS:
            rule = "Launch Package Management Process in Container"
        else:
            rule = "Drop and execute new binary in container"
        return F.falco(ms, micros * 1000, rule, record["host"], evt_type="execve", **common)
    if kind == "file_open":
        return F.falco(ms, micros * 1000, "Read sensitive file untrusted", record["host"], evt_type="openat",
                       file_path=record["file"]["path"], **common)
    if kind == "network_connect":
        net = record["network"]
        dst, port = net["dst_ip"], net["dst_port"]
        rule = ("Detect outbound connections to common miner pool ports" if port in MINER_POOL_PORTS
                else "Unexpected outbound connection destination")
        sport = 32768 + micros % 28000
        return F.falco(ms, micros * 1000, rule, record["host"], evt_type="connect",
                       fd_name=f"{net['src_ip']}:{sport}->{dst}:{port}", sip=dst, sport=port, rip=dst, rport=port,
                       sip_name=names.get(dst), **common)
    return None


# ---------------------------------------------------------------------------------------------
# benign traffic

# source shares: runtime 45% (falco 5, native 40), cloud 25% (cloudtrail 15, k8s 10),
# inference 30% (bedrock 7, gateway 23)
SOURCE_SHARES: tuple[tuple[str, float], ...] = (
    ("falco", 0.05),
    ("native", 0.40),
    ("cloudtrail", 0.15),
    ("k8s_audit", 0.10),
    ("bedrock", 0.07),
    ("gateway", 0.23),
)


class Benign:
    """Draws one benign record at a time; all randomness from ``rng``; ``shares``: records per source
    (in ``SOURCE_SHARES``' order)."""

    def __init__(self, world: World, rng: random.Random,
                 shares: tuple[tuple[str, float], ...] = SOURCE_SHARES) -> None:
        self.world = world
        self.rng = rng
        cum = 0.0
        self._cuts: list[float] = []
        for _, share in shares:
            cum += share
            self._cuts.append(cum)
        self._noisy = [w for w in world.workloads if w.kind.noise]
        self._native_acts = {
            "probe": self._probe,
            "dns": self._dns,
            "conn": self._conn,
            "ext": self._ext,
            "cfg": self._cfg,
            "weights": self._weights,
            "listen": self._listen,
            "cron": self._cron,
            "pip": self._pip,
            "scrape": self._scrape,
            "logs": self._logs,
            "kernel": self._kernel,
        }
        self._aws_acts = {
            "s3_get_train": self._s3_get_train,
            "s3_put_train": self._s3_put_train,
            "s3_put_artifacts": self._s3_put_artifacts,
            "s3_get_artifacts": self._s3_get_artifacts,
            "s3_get_lake": self._s3_get_lake,
            "s3_put_lake": self._s3_put_lake,
            "s3_get_web": self._s3_get_web,
            "s3_get_reports": self._s3_get_reports,
            "sm_read": self._sm_read,
            "sm_invoke": self._sm_invoke,
            "bedrock_invoke": self._ct_bedrock_invoke,
            "sts_whoami": self._sts_whoami,
            "sts_assume": self._sts_assume,
            "ec2_describe": self._ec2_describe,
            "iam_read": self._iam_read,
            "logging_read": self._logging_read,
            "trail_read": self._trail_read,
            "ecr_token": self._ecr_token,
            "eks_describe": self._eks_describe,
            "registry_write": self._registry_write,
            "denied": self._denied,
        }
        self._k8s_acts = {
            "kubelet_lease": self._kubelet_lease,
            "kubelet_pod": self._kubelet_pod,
            "kubelet_node": self._kubelet_node,
            "lease": self._lease,
            "watch": self._watch,
            "list": self._list,
            "rs_update": self._rs_update,
            "bind": self._bind,
            "deploy_patch": self._deploy_patch,
            "cm_update": self._cm_update,
            "svc_create": self._svc_create,
            "get": self._get,
            "get_pod": self._get,
            "pod_log": self._pod_log,
            "pod_create": self._pod_create,
            "nodeclaim": self._nodeclaim,
        }
        self._ns_pods: dict[str, list[Workload]] = {}
        for w in world.workloads:
            self._ns_pods.setdefault(w.namespace, []).append(w)
        self._namespaces = sorted(self._ns_pods)
        self._node_pods: dict[str, list[Workload]] = {}
        for w in world.workloads:
            self._node_pods.setdefault(w.node, []).append(w)
        self._minute = -1
        self._key_cum: list[float] = []
        self._seq = 0

    # --- dispatch
    def next(self, t: int) -> tuple[str, Record]:
        r = self.rng.random()
        cuts = self._cuts
        if r < cuts[0]:
            return "falco", self.falco(t)
        if r < cuts[1]:
            return "native", self.native(t)
        if r < cuts[2]:
            return "cloudtrail", self.cloudtrail(t)
        if r < cuts[3]:
            return "k8s_audit", self.k8s_audit(t)
        if r < cuts[4]:
            return "bedrock", self.bedrock(t)
        return "gateway", self.gateway(t)

    def _pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.rng.random() * len(seq))]

    # --- runtime
    def native(self, t: int) -> Record:
        w = self._pick(self.world.workloads)
        return self._native_acts[self._pick(w.acts)](t, w)

    def _probe(self, t: int, w: Workload) -> Record:
        port = w.kind.port or 8080
        if w.kind.app in ("triton", "qdrant", "payments-api", "ledger"):
            p = F.proc(
                "grpc_health_probe",
                f"/bin/grpc_health_probe -addr=:{port}",
                "runc",
                "/bin/grpc_health_probe",
                w.process[3],
            )
        else:
            path = "/health" if self.rng.random() < 0.7 else "/ready"
            p = F.proc(
                "curl", f"curl -sf http://localhost:{port}{path}", "runc", "/usr/bin/curl", w.process[3]
            )
        return w_native(self.rng, t, w, "process_exec", p)

    def _dns(self, t: int, w: Workload) -> Record:
        peers = w.kind.peers or ("kube-dns.kube-system",)
        svc = self._pick(peers)
        return w_native(
            self.rng,
            t,
            w,
            "dns_query",
            main_proc(w),
            dns={"query": f"{svc}.svc.cluster.local", "answers": [SERVICE_IPS[svc]]},
        )

    def _conn(self, t: int, w: Workload) -> Record:
        peers = w.kind.peers or ("kube-dns.kube-system",)
        svc = self._pick(peers)
        b = int(200 + self.rng.random() * 20000)
        return w_native(
            self.rng,
            t,
            w,
            "network_connect",
            main_proc(w),
            network=F.net(w.pod_ip, SERVICE_IPS[svc], SERVICES[svc], b),
        )

    def _ext(self, t: int, w: Workload) -> Record:
        if not w.kind.egress:
            return self._conn(t, w)
        rng = self.rng
        host = self._pick(w.kind.egress)
        ips = EXTERNAL_HOSTS[host]
        if rng.random() < 0.3:
            return w_native(rng, t, w, "dns_query", main_proc(w), dns={"query": host, "answers": list(ips)})
        if host.startswith("s3.") and w.namespace == "data-eng" and rng.random() < 0.4:
            b = int(rng.uniform(5e6, 6e8))  # uploads of parquet / shuffle output
        else:
            b = int(rng.uniform(400, 60000))
        return w_native(
            rng, t, w, "network_connect", main_proc(w), network=F.net(w.pod_ip, self._pick(ips), 443, b)
        )

    def _cfg(self, t: int, w: Workload) -> Record:
        if w.weights and self.rng.random() < 0.5:
            d = w.weights[0][0].rsplit("/", 1)[0]
            path = f"{d}/{self._pick(('config.json', 'tokenizer.json', 'generation_config.json'))}"
        else:
            path = self._pick(
                (
                    "/etc/resolv.conf",
                    "/etc/hosts",
                    "/app/config.yaml",
                    "/etc/ssl/certs/ca-certificates.crt",
                    "/proc/self/cgroup",
                )
            )
        return w_native(
            self.rng,
            t,
            w,
            "file_open",
            main_proc(w),
            file={"path": path, "flags": "O_RDONLY", "bytes": int(self.rng.uniform(200, 250000))},
        )

    def _weights(self, t: int, w: Workload) -> Record:
        if not w.weights:
            return self._cfg(t, w)
        path, size = self._pick(w.weights)
        return w_native(
            self.rng,
            t,
            w,
            "file_open",
            main_proc(w),
            file={"path": path, "flags": "O_RDONLY|O_CLOEXEC", "bytes": size},
        )

    def _listen(self, t: int, w: Workload) -> Record:
        # a listen's dst_ip is the bind address (all interfaces), src_ip is empty
        return w_native(
            self.rng,
            t,
            w,
            "network_listen",
            main_proc(w),
            network=F.net("", "0.0.0.0", w.kind.port or 8080, 0),  # noqa: S104
        )

    def _cron(self, t: int, w: Workload) -> Record:
        job = self._pick(
            (
                "compact_partitions",
                "export_features",
                "refresh_embeddings",
                "sync_labels",
                "rollup_metrics",
                "vacuum_tables",
            )
        )
        p = F.proc(
            "python",
            f"python /app/jobs/{job}.py --date 2026-11-25",
            "sh",
            "/usr/local/bin/python3.11",
            w.process[3],
        )
        return w_native(self.rng, t, w, "process_exec", p)

    def _pip(self, t: int, w: Workload) -> Record:
        rng = self.rng
        if rng.random() < 0.5:
            host = self._pick(("pypi.org", "files.pythonhosted.org"))
            return w_native(
                rng,
                t,
                w,
                "dns_query",
                main_proc(w),
                dns={"query": host, "answers": list(EXTERNAL_HOSTS[host])},
            )
        if w.kind.app == "buildkit":
            p = F.proc(
                "pip", "pip install --no-cache-dir -r requirements.txt", "sh", "/usr/local/bin/pip", "root"
            )
        else:
            pkg = self._pick(("seaborn", "datasets", "peft==0.13.2", "evaluate", "bitsandbytes", "plotly"))
            p = F.proc("pip", f"pip install {pkg}", "python3.11", "/opt/conda/bin/pip", "jovyan")
        return w_native(rng, t, w, "process_exec", p)

    def _scrape(self, t: int, w: Workload) -> Record:
        target = self._pick(self.world.workloads)
        return w_native(
            self.rng,
            t,
            w,
            "network_connect",
            main_proc(w),
            network=F.net(w.pod_ip, target.pod_ip, target.kind.port or 9100, int(self.rng.uniform(200, 600))),
        )

    def _logs(self, t: int, w: Workload) -> Record:
        target = self._pick(self.world.workloads)
        path = (
            f"/var/log/containers/{target.pod}_{target.namespace}_{target.kind.app}-{target.container_id}.log"
        )
        return w_native(
            self.rng,
            t,
            w,
            "file_open",
            main_proc(w),
            file={"path": path, "flags": "O_RDONLY", "bytes": int(self.rng.uniform(1000, 2e6))},
        )

    def _kernel(self, t: int, w: Workload) -> Record:
        p = F.proc(
            "python",
            "/opt/conda/bin/python3.11 -m ipykernel_launcher -f /home/jovyan/.local/share/jupyter/"
            "runtime/kernel-1.json",
            "jupyter-lab",
            "/opt/conda/bin/python3.11",
            "jovyan",
        )
        return w_native(self.rng, t, w, "process_exec", p)

    def falco(self, t: int) -> Record:
        w = self._pick(self._noisy)
        rule = w.kind.noise
        rng = self.rng
        mp = main_proc(w)
        if rule == "Contact K8S API Server From Container":
            return w_falco(rng, t, w, rule, mp, "connect", (K8S_API_IP, 443))
        if rule == "Packet socket created in container":
            return w_falco(rng, t, w, rule, mp, "socket")
        ips = EXTERNAL_HOSTS["s3.us-east-1.amazonaws.com"]
        return w_falco(rng, t, w, rule or "", mp, "connect", (self._pick(ips), 443))

    # --- cloud
    def cloudtrail(self, t: int) -> Record:
        p = self._pick(self.world.aws)
        return self._aws_acts[self._pick(p.acts)](t, p)

    def _obj(self, prefix: str) -> tuple[str, int]:
        r = self.rng.random
        if prefix == "train":
            ds = self._pick(
                ("support-intents", "chat-transcripts-redacted", "code-review-pairs", "product-qa")
            )
            return f"datasets/{ds}/v{6 + int(r() * 3)}/part-{int(r() * 512):05d}.parquet", int(
                2e6 + r() * 2.5e8
            )
        if prefix == "artifacts":
            m = self._pick(("support-intent-classifier", "reranker-ft", "llama-3-1-8b-lora-support"))
            return f"models/{m}/v{10 + int(r() * 5)}/model.tar.gz", int(5e7 + r() * 4e9)
        if prefix == "lake":
            return (
                f"raw/events/dt=2026-11-25/hour={10 + int(r() * 3):02d}/part-{int(r() * 4096):05d}.json.gz",
                int(1e5 + r() * 5e7),
            )
        if prefix == "web":
            return f"static/{self._pick(('js', 'css', 'img'))}/{F.hexid(self.rng, 8)}.bundle", int(
                1e3 + r() * 5e5
            )
        return f"reports/daily/2026-11-25/{self._pick(('revenue', 'usage', 'churn'))}.csv", int(
            1e4 + r() * 5e6
        )

    def _s3(self, t: int, p: AwsPrincipal, name: str, bucket: str, prefix: str) -> Record:
        key, size = self._obj(prefix)
        return s3_call(self.rng, t, p, name, bucket, key, size)

    def _s3_get_train(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "GetObject", TRAINING_BUCKET, "train")

    def _s3_put_train(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "PutObject", TRAINING_BUCKET, "train")

    def _s3_put_artifacts(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "PutObject", ARTIFACT_BUCKET, "artifacts")

    def _s3_get_artifacts(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "GetObject", ARTIFACT_BUCKET, "artifacts")

    def _s3_get_lake(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "GetObject", LAKE_BUCKET, "lake")

    def _s3_put_lake(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "PutObject", LAKE_BUCKET, "lake")

    def _s3_get_web(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "GetObject", WEB_BUCKET, "web")

    def _s3_get_reports(self, t: int, p: AwsPrincipal) -> Record:
        return self._s3(t, p, "GetObject", REPORTS_BUCKET, "reports")

    def _sm_read(self, t: int, p: AwsPrincipal) -> Record:
        name = self._pick(
            (
                "ListModelPackages",
                "DescribeTrainingJob",
                "DescribeEndpoint",
                "ListTrainingJobs",
                "DescribeModelPackage",
            )
        )
        params: Record | None
        if name == "ListModelPackages":
            params = {"modelPackageGroupName": "support-intent-classifier", "maxResults": 50}
        elif name == "DescribeTrainingJob":
            params = {"trainingJobName": f"support-intent-ft-2026-11-{20 + int(self.rng.random() * 5):02d}"}
        elif name == "DescribeEndpoint":
            params = {"endpointName": "reranker-prod"}
        elif name == "DescribeModelPackage":
            params = {
                "modelPackageName": f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:model-package/"
                f"support-intent-classifier/{10 + int(self.rng.random() * 4)}"
            }
        else:
            params = {"maxResults": 20, "sortBy": "CreationTime"}
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "sagemaker.amazonaws.com",
            name,
            params,
            None,
            read_only=True,
            tls_host=f"api.sagemaker.{REGION}.amazonaws.com",
        )

    def _sm_invoke(self, t: int, p: AwsPrincipal) -> Record:
        ep = self._pick(("reranker-prod", "embedder-prod", "intent-classifier-prod"))
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "sagemaker.amazonaws.com",
            "InvokeEndpoint",
            {"endpointName": ep, "contentType": "application/json", "accept": "application/json"},
            None,
            read_only=False,
            management=False,
            tls_host=f"runtime.sagemaker.{REGION}.amazonaws.com",
        )

    def _ct_bedrock_invoke(self, t: int, p: AwsPrincipal) -> Record:
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "bedrock.amazonaws.com",
            "InvokeModel",
            {"modelId": self._pick(MODEL_IDS_BEDROCK[:2])},
            None,
            read_only=True,
            tls_host=f"bedrock-runtime.{REGION}.amazonaws.com",
        )

    def _sts_whoami(self, t: int, p: AwsPrincipal) -> Record:
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "sts.amazonaws.com",
            "GetCallerIdentity",
            None,
            None,
            read_only=True,
            tls_host=f"sts.{REGION}.amazonaws.com",
        )

    def _sts_assume(self, t: int, p: AwsPrincipal) -> Record:
        rng = self.rng
        target = self._pick(("eks-deployer", "ecr-pusher"))
        session = f"gha-{int(rng.random() * 1e9)}"
        rid = "AROA" + F.upper_id(rng, 17)
        resp = {
            "credentials": {
                "accessKeyId": "ASIA" + F.upper_id(rng, 16),
                "expiration": "Nov 25, 2026, 11:00:00 AM",
            },
            "assumedRoleUser": {
                "assumedRoleId": f"{rid}:{session}",
                "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{target}/{session}",
            },
        }
        params = {
            "roleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/{target}",
            "roleSessionName": session,
            "durationSeconds": 3600,
        }
        return p_cloudtrail(
            rng,
            t,
            p,
            "sts.amazonaws.com",
            "AssumeRole",
            params,
            resp,
            read_only=True,
            tls_host=f"sts.{REGION}.amazonaws.com",
        )

    def _ec2_describe(self, t: int, p: AwsPrincipal) -> Record:
        name = self._pick(
            (
                "DescribeInstances",
                "DescribeSubnets",
                "DescribeSecurityGroups",
                "DescribeInstanceTypes",
                "DescribeLaunchTemplates",
                "DescribeImages",
            )
        )
        params: Record = {
            "filterSet": {
                "items": [{"name": "tag:karpenter.k8s.aws/cluster", "valueSet": {"items": [{"value": PROD}]}}]
            }
        }
        if name == "DescribeInstances":
            params["instancesSet"] = {}
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "ec2.amazonaws.com",
            name,
            params,
            None,
            read_only=True,
            tls_host=f"ec2.{REGION}.amazonaws.com",
        )

    def _iam_read(self, t: int, p: AwsPrincipal) -> Record:
        name = self._pick(
            ("GetRole", "ListRoles", "GetPolicy", "ListAttachedRolePolicies", "GetAccountSummary")
        )
        role = self._pick(AWS_SERVICE_ROLES)[0]
        by_name: dict[str, Record] = {
            "GetRole": {"roleName": role},
            "ListAttachedRolePolicies": {"roleName": role},
            "GetPolicy": {"policyArn": f"arn:aws:iam::{ACCOUNT_ID}:policy/{role}-policy"},
            "ListRoles": {"maxItems": 100},
        }
        params = by_name.get(name)
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "iam.amazonaws.com",
            name,
            params,
            None,
            read_only=True,
            tls_host="iam.amazonaws.com",
        )

    def _logging_read(self, t: int, p: AwsPrincipal) -> Record:
        name = self._pick(("GetModelInvocationLoggingConfiguration", "ListGuardrails", "GetGuardrail"))
        params: Record | None = None
        if name == "GetGuardrail":
            params = {"guardrailIdentifier": "q7tx3kd9w2lm", "guardrailVersion": "DRAFT"}
        elif name == "ListGuardrails":
            params = {"maxResults": 50}
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "bedrock.amazonaws.com",
            name,
            params,
            None,
            read_only=True,
            tls_host=f"bedrock.{REGION}.amazonaws.com",
        )

    def _trail_read(self, t: int, p: AwsPrincipal) -> Record:
        name = self._pick(("DescribeTrails", "GetTrailStatus", "GetEventSelectors"))
        params = (
            None
            if name == "DescribeTrails"
            else {"name": f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/org-trail"}
        )
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "cloudtrail.amazonaws.com",
            name,
            params,
            None,
            read_only=True,
            tls_host=f"cloudtrail.{REGION}.amazonaws.com",
        )

    def _ecr_token(self, t: int, p: AwsPrincipal) -> Record:
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "ecr.amazonaws.com",
            "GetAuthorizationToken",
            None,
            None,
            read_only=True,
            tls_host=f"api.ecr.{REGION}.amazonaws.com",
        )

    def _eks_describe(self, t: int, p: AwsPrincipal) -> Record:
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "eks.amazonaws.com",
            "DescribeCluster",
            {"name": self._pick((PROD, STAGING))},
            None,
            read_only=True,
            tls_host=f"eks.{REGION}.amazonaws.com",
        )

    def _registry_write(self, t: int, p: AwsPrincipal) -> Record:
        version = 10 + int(self.rng.random() * 5)
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:model-package/support-intent-classifier/{version}"
        if self.rng.random() < 0.5:
            return p_cloudtrail(
                self.rng,
                t,
                p,
                "sagemaker.amazonaws.com",
                "UpdateModelPackage",
                {
                    "modelPackageArn": arn,
                    "modelApprovalStatus": "Approved",
                    "approvalDescription": "eval passed",
                },
                {"modelPackageArn": arn},
                read_only=False,
                tls_host=f"api.sagemaker.{REGION}.amazonaws.com",
            )
        params = {
            "modelPackageGroupName": "support-intent-classifier",
            "modelApprovalStatus": "PendingManualApproval",
            "inferenceSpecification": {
                "containers": [
                    {
                        "image": f"{ECR}/intent-serving:2.4.0",
                        "modelDataUrl": f"s3://{ARTIFACT_BUCKET}/models/"
                        f"support-intent-classifier/v{version}/model.tar.gz",
                    }
                ],
                "supportedContentTypes": ["application/json"],
                "supportedResponseMIMETypes": ["application/json"],
            },
        }
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "sagemaker.amazonaws.com",
            "CreateModelPackage",
            params,
            {"modelPackageArn": arn},
            read_only=False,
            tls_host=f"api.sagemaker.{REGION}.amazonaws.com",
        )

    def _denied(self, t: int, p: AwsPrincipal) -> Record:
        return p_cloudtrail(
            self.rng,
            t,
            p,
            "iam.amazonaws.com",
            "ListUsers",
            None,
            None,
            read_only=True,
            tls_host="iam.amazonaws.com",
            error=(
                "AccessDenied",
                f"User: {p.arn} is not authorized to perform: iam:ListUsers "
                f"on resource: arn:aws:iam::{ACCOUNT_ID}:user/ because no identity-based policy "
                "allows the iam:ListUsers action",
            ),
        )

    # --- kubernetes audit
    def k8s_audit(self, t: int) -> Record:
        u = self._pick(self.world.k8s_users)
        return self._k8s_acts[self._pick(u.acts)](t, u)

    def _pod_in(self, u: K8sUser) -> Workload:
        if u.namespaces:
            pods = self._ns_pods.get(self._pick(u.namespaces))
            if pods:
                return self._pick(pods)
        if u.node:
            on_node = self._node_pods.get(u.node)
            if on_node:
                return self._pick(on_node)
        return self._pick(self.world.workloads)

    def _kubelet_lease(self, t: int, u: K8sUser) -> Record:
        return u_k8s(
            self.rng,
            t,
            u,
            "update",
            "coordination.k8s.io/v1",
            "leases",
            "kube-node-lease",
            u.username.rsplit(":", 1)[-1],
            reason="",
        )

    def _kubelet_pod(self, t: int, u: K8sUser) -> Record:
        w = self._pod_in(u)
        if self.rng.random() < 0.5:
            return u_k8s(self.rng, t, u, "patch", "v1", "pods", w.namespace, w.pod, "status", reason="")
        return u_k8s(self.rng, t, u, "get", "v1", "pods", w.namespace, w.pod, reason="")

    def _kubelet_node(self, t: int, u: K8sUser) -> Record:
        return u_k8s(
            self.rng, t, u, "patch", "v1", "nodes", None, u.username.rsplit(":", 1)[-1], "status", reason=""
        )

    def _lease(self, t: int, u: K8sUser) -> Record:
        name = "kube-scheduler" if "scheduler" in u.username else "kube-controller-manager"
        return u_k8s(self.rng, t, u, "update", "coordination.k8s.io/v1", "leases", "kube-system", name)

    _RESOURCES = (
        ("v1", "pods"),
        ("v1", "endpoints"),
        ("v1", "services"),
        ("apps/v1", "deployments"),
        ("v1", "configmaps"),
        ("apps/v1", "replicasets"),
        ("v1", "nodes"),
        ("discovery.k8s.io/v1", "endpointslices"),
    )

    def _watch(self, t: int, u: K8sUser) -> Record:
        gv, res = self._pick(self._RESOURCES)
        ns = None if res == "nodes" or self.rng.random() < 0.6 else self._pick(self._namespaces)
        query = (
            f"?allowWatchBookmarks=true&resourceVersion={40_000_000 + int(self.rng.random() * 9_000_000)}"
            "&timeout=8m27s&timeoutSeconds=507&watch=true"
        )
        return u_k8s(self.rng, t, u, "watch", gv, res, ns, query=query)

    def _list(self, t: int, u: K8sUser) -> Record:
        gv, res = self._pick(self._RESOURCES)
        if res == "nodes":
            ns = None
        else:
            ns = self._pick(u.namespaces) if u.namespaces else self._pick(self._namespaces)
        return u_k8s(self.rng, t, u, "list", gv, res, ns, query="?limit=500")

    def _get(self, t: int, u: K8sUser) -> Record:
        w = self._pod_in(u)
        if self.rng.random() < 0.7:
            return u_k8s(self.rng, t, u, "get", "v1", "pods", w.namespace, w.pod)
        return u_k8s(self.rng, t, u, "get", "apps/v1", "deployments", w.namespace, w.deployment)

    def _pod_log(self, t: int, u: K8sUser) -> Record:
        w = self._pod_in(u)
        return u_k8s(self.rng, t, u, "get", "v1", "pods", w.namespace, w.pod, "log", query="?tailLines=200")

    def _rs_update(self, t: int, u: K8sUser) -> Record:
        w = self._pick(self.world.workloads)
        return u_k8s(
            self.rng, t, u, "update", "apps/v1", "replicasets", w.namespace, w.pod.rsplit("-", 1)[0], "status"
        )

    def _bind(self, t: int, u: K8sUser) -> Record:
        w = self._pick(self.world.workloads)
        return u_k8s(self.rng, t, u, "create", "v1", "pods", w.namespace, w.pod, "binding", code=201)

    def _deploy_patch(self, t: int, u: K8sUser) -> Record:
        w = self._pod_in(u)
        return u_k8s(
            self.rng,
            t,
            u,
            "patch",
            "apps/v1",
            "deployments",
            w.namespace,
            w.deployment,
            query="?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
        )

    def _cm_update(self, t: int, u: K8sUser) -> Record:
        w = self._pod_in(u)
        return u_k8s(self.rng, t, u, "update", "v1", "configmaps", w.namespace, f"{w.deployment}-config")

    def _svc_create(self, t: int, u: K8sUser) -> Record:
        w = self._pod_in(u)
        name = f"{w.deployment}-internal"
        obj = F.k8s_service(name, w.namespace, {"app": w.deployment}, "ClusterIP", w.kind.port or 8080)
        return u_k8s(
            self.rng,
            t,
            u,
            "create",
            "v1",
            "services",
            w.namespace,
            name,
            code=201,
            request_object=obj,
            level="Request",
        )

    def _pod_create(self, t: int, u: K8sUser) -> Record:
        name = f"airflow-task-{F.hexid(self.rng, 8)}"
        return u_k8s(self.rng, t, u, "create", "v1", "pods", "data-eng", name, code=201)

    def _nodeclaim(self, t: int, u: K8sUser) -> Record:
        return u_k8s(
            self.rng,
            t,
            u,
            "create",
            "karpenter.sh/v1",
            "nodeclaims",
            None,
            f"gpu-{_rand5(self.rng)}",
            code=201,
        )

    # --- inference
    def bedrock(self, t: int) -> Record:
        rng = self.rng
        c = self._pick(self.world.bedrock_callers)
        model = self._pick(c.models)
        prompt = self._pick(self.world.prompts)
        tin = int(rng.uniform(60, 1200))
        tout = int(rng.uniform(40, 700))
        return br_call(rng, t, c.arn, model, prompt, self._pick(_ANSWERS), tin, tout, 1024, c.system)

    def _key_weights(self, t: int) -> list[float]:
        minute = t // 60_000
        if minute != self._minute:
            self._minute = minute
            hour = (t / 3_600_000.0) % 24.0
            cum, acc = [], 0.0
            for k in self.world.keys:
                acc += k.weight * (1.0 + k.amplitude * math.cos(2 * math.pi * (hour - k.peak_hour) / 24.0))
                cum.append(acc)
            self._key_cum = cum
        return self._key_cum

    def gateway(self, t: int) -> Record:
        rng = self.rng
        cum = self._key_weights(t)
        k = self.world.keys[min(len(cum) - 1, bisect.bisect(cum, rng.random() * cum[-1]))]
        pt = int(rng.uniform(k.pt[0], k.pt[1]))
        ct = int(rng.uniform(k.ct[0], k.ct[1])) if k.ct[1] else 0
        status = 200
        r = rng.random()
        if r < 0.004:
            status, ct = 429, 0
        elif r < 0.006:
            status, ct = 500, 0
        prompt = self._pick(self.world.prompts) if k.with_prompt else None
        return gw_call(rng, t, k, prompt, pt, ct, status=status)
