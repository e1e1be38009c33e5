"""A single-node Apache Kafka broker in KRaft mode, from Apache's own jars.

``provision`` runs Maven on ``infra/kafka/pom.xml`` once per Kafka version and caches the jars;
``command`` builds the java command line; storage is formatted on first start.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J = HERE / "log4j.properties"
MAIN_CLASS = "kafka.Kafka"


class ProvisionError(RuntimeError):
    """Kafka's jars could not be fetched or storage not formatted."""


def provision(cache_dir: Path, version: str) -> Path:
    """The directory of Kafka ``version``'s jars; fetched with Maven on first use only."""
    libs = cache_dir / f"kafka-{version}" / "libs"
    marker = libs.parent / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven (mvn) is needed once to fetch Apache Kafka's jars; install it (apt-get install maven)"
        raise ProvisionError(msg)
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}",
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={libs}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        msg = f"Maven could not fetch Kafka {version}: {(result.stdout + result.stderr)[-2000:]}"
        raise ProvisionError(msg)
    marker.write_text(version)
    return libs


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        # Topics are created by `aiwarden up`/`migrate` (and Faust for its own), never implicitly.
        "auto.create.topics.enable=false",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.hours=168",
        "",
    ])


def java_command(java: str, libs: Path, heap: str, config: Path, *main: str) -> list[str]:
    return [
        java, f"-Xmx{heap}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{LOG4J}", "-cp", f"{libs}/*", *main, str(config),
    ]


def format_storage(java: str, libs: Path, config: Path, data_dir: Path) -> None:
    """Format KRaft storage once; a formatted directory is left as it is."""
    if (data_dir / "meta.properties").exists():
        return
    cid = "-"
    while cid.startswith("-"):  # as Kafka's own Uuid.randomUuid(): a leading "-" would read as an option
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    cmd = [
        java, f"-Dlog4j.configuration=file:{LOG4J}", "-cp", f"{libs}/*", "kafka.tools.StorageTool",
        "format", "-t", cid, "-c", str(config),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        msg = f"formatting Kafka storage in {data_dir} failed: {result.stdout}{result.stderr}"
        raise ProvisionError(msg)
