"""Entity identifiers: ``kind:value`` strings, the same whichever source saw the entity.

Every detector, alert and hunt keys on these, so they are built only here.

>>> pod("ml-prod", "vllm-0")
'pod:ml-prod/vllm-0'
>>> principal("arn:aws:iam::123456789012:user/alice")
'principal:arn:aws:iam::123456789012:user/alice'
"""

from __future__ import annotations

KINDS = ("container", "pod", "namespace", "host", "principal", "apikey", "ip", "model", "image")


def container(container_id: str) -> str:
    # Runtimes report 64-hex ids or the 12-char short form; keep the short form everywhere.
    return f"container:{container_id[:12]}"


def pod(namespace: str, name: str) -> str:
    return f"pod:{namespace}/{name}"


def namespace(name: str) -> str:
    return f"namespace:{name}"


def host(name: str) -> str:
    return f"host:{name}"


def principal(name: str) -> str:
    """An AWS ARN, a Kubernetes user or service account, or a gateway user."""
    return f"principal:{name}"


def apikey(key_id: str) -> str:
    return f"apikey:{key_id}"


def ip(address: str) -> str:
    return f"ip:{address}"


def model(name: str) -> str:
    """A model id or model endpoint (``bedrock/anthropic.claude-3``, ``https://llm.example/v1``)."""
    return f"model:{name}"


def image(reference: str) -> str:
    return f"image:{reference}"


def kind_of(entity_id: str) -> str:
    return entity_id.split(":", 1)[0]
