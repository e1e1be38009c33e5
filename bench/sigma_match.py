"""CPU cost per event of the Sigma stream matcher with N rules loaded (budget: 10 µs/event at 200 rules).

    .venv/bin/python -m bench.sigma_match                     # 200 rules, 30k simulated events, min of 5
    .venv/bin/python -m bench.sigma_match --rules 400 --events 60000

Rules: aiwarden's pack plus generated rules in SigmaHQ's style (``Image|endswith`` lists,
``CommandLine|contains`` / ``|all``, ``ParentImage`` filters, CloudTrail ``eventSource`` + ``eventName``
lists with ``userIdentity`` filters, audit ``verb`` + ``objectRef`` fields, inference prompts and token
thresholds, destination ports and CIDRs), spread over every log source in proportion to how SigmaHQ's
are (most are process creation). Events come from the simulator (every scenario, seed 7) through the
source parsers, decoded as the detect stage holds them (``Event``). Timed: ``Matcher.match(event)``
for every event, as ``Detection.process`` calls it; this process's CPU time, minimum of the repeats.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from detectors.sigma.detector import rule_paths
from detectors.sigma.matcher import Matcher
from detectors.sigma.rules import RuleSet
from schemas.envelope import Event

BUDGET_US = 10.0
WORDS = ["curl", "wget", "nc", "ncat", "socat", "python", "perl", "base64", "chmod", "/tmp/", "/dev/shm",  # noqa: S108
         "xmrig", "miner", "stratum", "ssh", "scp", "tar", "kubectl", "aws", "pip", "apt", "iptables",
         "crontab", "nohup", "setsid", "mkfifo", "openssl", "dd", "whoami", "id", "hostname", "uname"]
IMAGES = ["/bash", "/sh", "/dash", "/zsh", "/curl", "/wget", "/nc", "/ncat", "/socat", "/python3", "/perl",
          "/xmrig", "/ssh", "/tar", "/kubectl", "/nmap", "/masscan", "/chmod", "/busybox", "/openssl"]
EVENT_NAMES = ["DeleteTrail", "StopLogging", "PutBucketPolicy", "CreateAccessKey", "AttachUserPolicy",
               "DeleteGuardrail", "UpdateGuardrail", "PutModelInvocationLoggingConfiguration", "CreateUser",
               "AuthorizeSecurityGroupIngress", "ModifySnapshotAttribute", "PutBucketAcl", "GetSecretValue"]
SHARES = [("linux/process_creation", 0.55), ("linux/network_connection", 0.1), ("linux/file_event", 0.1),
          ("aws/cloudtrail", 0.12), ("kubernetes/audit", 0.06), ("aiwarden/inference", 0.07)]
LOGSOURCE = {"linux/process_creation": {"product": "linux", "category": "process_creation"},
             "linux/network_connection": {"product": "linux", "category": "network_connection"},
             "linux/file_event": {"product": "linux", "category": "file_event"},
             "aws/cloudtrail": {"product": "aws", "service": "cloudtrail"},
             "kubernetes/audit": {"product": "kubernetes", "service": "audit"},
             "aiwarden/inference": {"product": "aiwarden", "service": "inference"}}


def detection(kind: str, rng: random.Random) -> dict[str, Any]:
    pick = rng.sample
    if kind == "linux/process_creation":
        shape = rng.randrange(3)
        if shape == 0:
            return {"selection": {"Image|endswith": pick(IMAGES, 3), "CommandLine|contains": pick(WORDS, 3)},
                    "filter": {"ParentImage|endswith": pick(IMAGES, 2)}, "condition": "selection and not filter"}
        if shape == 1:
            return {"selection": {"CommandLine|contains|all": pick(WORDS, 2)}, "condition": "selection"}
        return {"sel_img": {"Image|endswith": pick(IMAGES, 2)}, "sel_cli": {"CommandLine|contains": pick(WORDS, 4)},
                "condition": "all of sel_*"}
    if kind == "linux/network_connection":
        return {"selection": {"DestinationPort": rng.sample(range(1, 65535), 4), "Initiated": "true"},
                "filter": {"DestinationIp|cidr": ["10.0.0.0/8", "192.168.0.0/16"]},
                "condition": "selection and not filter"}
    if kind == "linux/file_event":
        return {"selection": {"TargetFilename|startswith": ["/etc/", "/root/.ssh/", "/models/"],
                              "TargetFilename|endswith": [rng.choice([".sh", ".so", ".pt", ".key", ".gguf"])]},
                "filter": {"Image|endswith": pick(IMAGES, 2)}, "condition": "selection and not filter"}
    if kind == "aws/cloudtrail":
        source = rng.choice(["iam.amazonaws.com", "s3.amazonaws.com", "bedrock.amazonaws.com"])
        return {"selection": {"eventSource": source, "eventName": pick(EVENT_NAMES, 3)},
                "filter": {"userIdentity.arn|contains": "admin"}, "condition": "selection and not filter"}
    if kind == "kubernetes/audit":
        return {"selection": {"verb": rng.choice(["create", "patch", "delete"]),
                              "objectRef.resource": rng.choice(["services", "pods", "secrets", "clusterrolebindings"])},
                "condition": "selection"}
    return {"selection": {"prompt|contains": pick(["ignore previous", "system prompt", "jailbreak", "DAN mode",
                                                    "repeat the word", "training data"], 2)},
            "big": {"tokens_out|gt": rng.choice([8000, 16000, 32000])}, "condition": "selection or big"}


def generated_rules(folder: Path, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    kinds = [k for k, _ in SHARES]
    weights = [w for _, w in SHARES]
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        rule = {"title": f"bench rule {n}", "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "status": "test", "author": "aiwarden bench", "logsource": LOGSOURCE[kind],
                "detection": detection(kind, rng), "level": "medium"}
        (folder / f"bench_{n:04d}.yml").write_text(yaml.safe_dump(rule, sort_keys=False))


def simulated(count: int, seed: int = 7, rate: float = 250.0) -> list[Event]:
    from schemas.sources import SOURCES
    from streams.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed, duration_s=max(1.0, count / rate), rate=rate))
    return [SOURCES[r.source].normalize(r.record) for r in sim.records()][:count]


def run(rules: int = 200, events: int = 30_000, repeats: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pack = RuleSet.load(rule_paths(True, []))
        generated_rules(Path(tmp), max(0, rules - len(pack.rules)))
        ruleset = RuleSet.load(rule_paths(True, [Path(tmp)]))
    if ruleset.problems:
        msg = f"bench rules did not load: {ruleset.problems[:3]}"
        raise RuntimeError(msg)
    matcher = Matcher(ruleset.rules)
    stream = simulated(events)
    match = matcher.match
    times, hits = [], 0
    for _ in range(repeats):
        hits = 0
        start = time.process_time()
        for event in stream:
            if match(event):
                hits += 1
        times.append(time.process_time() - start)
    best = min(times)
    per_event = best / len(stream) * 1e6
    return {"rules": len(ruleset.rules), "events": len(stream), "us_per_event": round(per_event, 2),
            "events_per_s": round(len(stream) / best), "matching_events": hits, "budget_us": BUDGET_US,
            "within_budget": per_event <= BUDGET_US,
            "sources": {s: sum(1 for e in stream if e.source == s) for s in sorted({e.source for e in stream})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = run(args.rules, args.events, args.repeats)
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
