"""Real local Apache Kafka brokers (KRaft, combined broker+controller) from Maven Central jars.

``up`` resolves the ``kafka_2.13`` broker artifact and its runtime dependencies with Maven
into ``<cache_dir>/kafka/<version>/libs`` (reused when present, so outside the repo and
shared by clones), formats a storage directory, starts ``kafka.Kafka`` as a detached Java
process and waits until the broker answers a metadata request. ``down`` sends SIGTERM (a
clean controlled shutdown) and waits. Nothing here fakes a broker.

``LocalKafkaCluster`` runs ``CITYOPS_KAFKA_LOCAL_BROKERS`` such brokers from the same jars as
one cluster (every node a controller voter, so the quorum survives one node down); with three,
topics get replication factor 3 and ``min.insync.replicas=2``: with ``acks=all`` a write is
acknowledged by two replicas, and one broker can stop without losing or refusing a write.

With ``CITYOPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` the broker listens with SASL/SCRAM-SHA-512
over TLS: a self-signed certificate for 127.0.0.1/localhost is made with the JDK's keytool
(``tls/broker.p12``, its certificate in ``tls/ca.pem`` for clients), and the client user
(``CITYOPS_KAFKA_SASL_USERNAME`` / ``_PASSWORD``) and a broker-internal user are written into
the metadata log when storage is formatted (``StorageTool format --add-scram``). Clients of a
local broker trust ``tls/ca.pem`` unless ``CITYOPS_KAFKA_SSL_CAFILE`` says otherwise.

Kafka 3.9.x is the default: aiokafka (under Faust) and kafka-python both speak its
protocol versions; Kafka 4.x dropped old protocol versions some clients still request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings
from cityops.deploy.exceptions import BrokerError, BrokerUnreachable, TopicSetupError
from cityops.ingest.kafka_access import check_access

log = structlog.get_logger(__name__)

#: Kafka errors a topic creation gets while a fresh cluster's metadata settles.
_SETTLING = frozenset({"UnknownBrokerIdError", "NotControllerError", "NodeNotReadyError"})

#: SCRAM user the local SASL_SSL broker uses for itself (clients: CITYOPS_KAFKA_SASL_USERNAME)
INTERNAL_USER = "cityops-broker"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cityops.local</groupId><artifactId>kafka-broker-runtime</artifactId>
  <version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
"""


@dataclass(frozen=True)
class BrokerPaths:
    """Where one local broker keeps its files (all under ``data_dir/kafka-<port>``)."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def console_log(self) -> Path:
        return self.logs / "console.out"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def keystore(self) -> Path:
        return self.tls / "broker.p12"

    @property
    def ca(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def mode_file(self) -> Path:
        return self.root / "security.protocol"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    root: Path
    libs: Path
    answering: bool


def cleaner_buffer_bytes(heap_mb: int) -> int:
    """The log cleaner's offset map, one heap buffer allocated whole at start-up: an eighth
    of the heap, at most Kafka's default 128 MiB. At the default size a 256 MiB test broker
    restarted after a SIGKILL died with "OutOfMemoryError: Java heap space" in
    ``SkimpyOffsetMap`` once its logs were loaded. The 32 MiB it gets now still map about
    1.4 million keys (24 bytes each), far more than the compacted state logs hold here."""
    return min(128, max(8, heap_mb // 8)) * 1024 * 1024


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a local cluster of ``brokers`` nodes."""
    rf = min(brokers, 3)
    return rf, max(1, rf - 1)


class LocalKafka:
    """Fetch, format, start, stop and inspect one local KRaft broker (one node of a cluster)."""

    def __init__(self, settings: Settings, *, node_id: int = 1, port: int | None = None,
                 root: Path | None = None, voters: str | None = None,
                 cluster_id_file: Path | None = None, brokers: int = 1) -> None:
        self.settings = settings
        self.node_id = node_id
        self.port = port or settings.kafka_port
        self.controller_port = self.port + 1
        self.paths = BrokerPaths((root or settings.data_dir / f"kafka-{self.port}").resolve())
        self.libs = (settings.cache_dir / "kafka" / settings.kafka_version / "libs").resolve()
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.cluster_id_file = cluster_id_file
        self.brokers = brokers
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- jars --------------------------------------------------------------------------------
    def fetch(self) -> Path:
        """Resolve the broker jars from Maven Central into the cache (once)."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; install Maven 3 to fetch Kafka jars")
        work = self.libs.parent
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_text(_POM.format(version=self.settings.kafka_version))
        tmp = work / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("kafka.fetch", version=self.settings.kafka_version, into=str(self.libs))
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise BrokerError("Maven could not fetch Kafka jars:\n" + "\n".join(tail))
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)
        marker.write_text(self.settings.kafka_version)
        return self.libs

    # --- lifecycle ---------------------------------------------------------------------------
    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise BrokerError("java is not on PATH; install Java 17")
        return java

    def _classpath(self) -> str:
        return str(self.libs / "*")

    @property
    def secure(self) -> bool:
        return self.settings.kafka_security_protocol == "SASL_SSL"

    def check_mode(self) -> None:
        """A data dir formatted for one protocol is not silently reused for another."""
        want = self.settings.kafka_security_protocol
        p = self.paths
        if want not in ("PLAINTEXT", "SASL_SSL"):
            raise BrokerError(f"the local broker runs PLAINTEXT or SASL_SSL, not {want}")
        if (p.data / "meta.properties").exists():
            have = p.mode_file.read_text().strip() if p.mode_file.exists() else "PLAINTEXT"
            if have != want:
                raise BrokerError(f"broker data {p.root} was formatted for {have}; use another "
                                  f"CITYOPS_KAFKA_PORT (or remove it) to run {want}")
        if self.secure and not self.settings.kafka_sasl_password.get_secret_value():
            raise BrokerError("CITYOPS_KAFKA_SASL_PASSWORD is empty: the SASL_SSL broker "
                              "needs the client user's password")

    def _make_certificate(self) -> str:
        """Self-signed broker certificate (keytool); returns the keystore password."""
        p = self.paths
        pw_file = p.tls / "keystore.password"
        if p.keystore.exists() and p.ca.exists() and pw_file.exists():
            return pw_file.read_text().strip()
        keytool = str(Path(self._java()).with_name("keytool"))
        p.tls.mkdir(parents=True, exist_ok=True)
        os.chmod(p.tls, 0o700)
        password = secrets.token_hex(16)
        p.keystore.unlink(missing_ok=True)
        for args in (
            ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
             "-validity", "825", "-dname", "CN=localhost,O=cityops local broker",
             "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-keystore", str(p.keystore),
             "-storetype", "PKCS12", "-storepass", password, "-keypass", password],
            ["-exportcert", "-rfc", "-alias", "broker", "-keystore", str(p.keystore),
             "-storepass", password, "-file", str(p.ca)],
        ):
            proc = subprocess.run([keytool, "-noprompt", *args], capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                raise BrokerError(f"keytool failed: {(proc.stdout + proc.stderr)[-300:]}")
        pw_file.write_text(password)
        os.chmod(pw_file, 0o600)
        return password

    def _security_lines(self) -> list[str]:
        if not self.secure:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ]
        store_pw = self._make_certificate()
        internal = self._internal_password()
        return [
            f"listeners=SASL_SSL://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{self.port}",
            "inter.broker.listener.name=SASL_SSL",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{INTERNAL_USER}" password="{internal}";',
            f"ssl.keystore.location={self.paths.keystore}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.password={store_pw}",
            f"ssl.key.password={store_pw}",
            # the broker's own client side (inter-broker) trusts the same certificate
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.paths.ca}",
            "ssl.client.auth=none",
            "ssl.endpoint.identification.algorithm=https",
        ]

    def _internal_password(self) -> str:
        pw_file = self.paths.tls / "internal.password"
        if not pw_file.exists():
            self.paths.tls.mkdir(parents=True, exist_ok=True)
            pw_file.write_text(secrets.token_hex(16))
            os.chmod(pw_file, 0o600)
        return pw_file.read_text().strip()

    def _write_config(self) -> None:
        p = self.paths
        for d in (p.data, p.logs):
            d.mkdir(parents=True, exist_ok=True)
        s = self.settings
        rf, min_isr = replication_for(self.brokers)
        p.config.write_text("\n".join([
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"controller.quorum.voters={self.voters}",
            *self._security_lines(),
            "controller.listener.names=CONTROLLER",
            f"log.dirs={p.data}",
            f"num.partitions={s.topic_partitions}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=6",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min_isr}",
            "unclean.leader.election.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            f"message.max.bytes={s.kafka_max_batch_bytes}",
            "log.retention.hours=168",
            "log.segment.bytes=67108864",
            f"log.cleaner.dedupe.buffer.size={cleaner_buffer_bytes(s.kafka_heap_mb)}",
            "num.network.threads=2",
            "num.io.threads=4",
            "",
        ]))
        os.chmod(p.config, 0o600)  # holds the keystore and broker-internal passwords
        p.log4j.write_text(_LOG4J.format(log_file=p.logs / "server.log"))

    def _format(self) -> None:
        if (self.paths.data / "meta.properties").exists():
            return
        cluster_id = _kafka_uuid()
        if self.cluster_id_file is not None:  # every node of a cluster shares one id
            if not self.cluster_id_file.exists():
                self.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
                self.cluster_id_file.write_text(cluster_id)
            cluster_id = self.cluster_id_file.read_text().strip()
        scram: list[str] = []
        if self.secure:
            s = self.settings
            user = s.kafka_sasl_username
            scram = [
                "--add-scram", f"SCRAM-SHA-512=[name={INTERNAL_USER},"
                f"password={self._internal_password()}]",
                "--add-scram", f"SCRAM-SHA-512=[name={user},"
                f"password={s.kafka_sasl_password.get_secret_value()}]",
            ]
        proc = subprocess.run(
            [self._java(), "-cp", self._classpath(),
             f"-Dlog4j.configuration=file:{self.paths.log4j}",
             # one argument: an id starting with "-" (1 in 64) would read as an option
             "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
             "-c", str(self.paths.config), "--ignore-formatted", *scram],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            out = proc.stdout + proc.stderr
            if self.secure:  # never echo the command line's passwords
                out = out.replace(self.settings.kafka_sasl_password.get_secret_value(), "***")
            raise BrokerError(f"formatting storage failed: {out[-500:]}")
        self.paths.mode_file.write_text(self.settings.kafka_security_protocol)

    def pid(self) -> int | None:
        """PID of the broker if its pid file names a live process, else None."""
        try:
            pid = int(self.paths.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
            return None
        return pid

    def up(self) -> float:
        """Start the broker unless it already runs; returns seconds until it answered."""
        if self.pid() is not None and self.answering():
            log.info("kafka.already_running", bootstrap=self.bootstrap, pid=self.pid())
            self.create_topics()
            return 0.0
        started = time.monotonic()
        self.start()
        self.wait_ready(started)
        self.create_topics()
        return time.monotonic() - started

    def start(self) -> None:
        """Spawn the broker process (configured and formatted first) without waiting for it."""
        if _port_busy(self.port) or _port_busy(self.controller_port):
            raise BrokerError(
                f"port {self.port} or {self.controller_port} is in use by another process; "
                "set CITYOPS_KAFKA_PORT to a free port")
        self.check_mode()
        self.fetch()
        self._write_config()
        self._format()
        heap = f"-Xmx{self.settings.kafka_heap_mb}m"
        with open(self.paths.console_log, "ab") as out:
            proc = subprocess.Popen(
                [self._java(), heap, f"-Xms{min(self.settings.kafka_heap_mb, 256)}m",
                 "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                 f"-Dlog4j.configuration=file:{self.paths.log4j}",
                 f"-Dkafka.logs.dir={self.paths.logs}",
                 "-cp", self._classpath(), "kafka.Kafka", str(self.paths.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.paths.pid_file.write_text(str(proc.pid))
        self._proc = proc

    def wait_ready(self, started: float | None = None) -> None:
        """Wait until the spawned broker answers; stop it and raise when it cannot."""
        started = time.monotonic() if started is None else started
        deadline = started + self.settings.kafka_start_timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(f"broker exited with {self._proc.returncode}; see "
                                  f"{self.paths.console_log} and {self.paths.logs}/server.log")
            if self.answering():
                log.info("kafka.ready", bootstrap=self.bootstrap, pid=self.pid(),
                         seconds=round(time.monotonic() - started, 2))
                return
            time.sleep(0.25)
        self.down()
        raise BrokerError(f"broker did not answer within {self.settings.kafka_start_timeout_s}s")

    def kill(self) -> bool:
        """SIGKILL the broker (a crash: no controlled shutdown, unflushed pages lost)."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()
            time.sleep(0.1)
        self.paths.pid_file.unlink(missing_ok=True)
        log.info("kafka.killed", pid=pid, node=self.node_id)
        return True

    def down(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``)."""
        pid = self.terminate()
        if pid is None:
            return False
        self.wait_stopped(pid, timeout_s)
        return True

    def terminate(self) -> int | None:
        """Send SIGTERM (a controlled shutdown) without waiting; the pid signalled, if any."""
        pid = self.pid()
        if pid is None:
            self.paths.pid_file.unlink(missing_ok=True)
            return None
        os.kill(pid, signal.SIGTERM)
        return pid

    def wait_stopped(self, pid: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()  # reap our own child so it does not linger as a zombie
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            log.warning("kafka.kill", pid=pid)
            os.kill(pid, signal.SIGKILL)
        self.paths.pid_file.unlink(missing_ok=True)
        log.info("kafka.stopped", pid=pid)

    def answering(self) -> bool:
        """True when the broker answers a metadata request."""
        with quiet_kafka_client():
            return self._answering()

    def _answering(self) -> bool:
        from kafka.errors import KafkaError

        with self._probe_admin() as admin:
            if admin is None:
                return False
            try:
                admin.list_topics()
                return True
            except (KafkaError, OSError):
                return False

    def registered_brokers(self) -> set[int]:
        """The ids of the unfenced brokers this node's metadata lists (empty if it does not
        answer)."""
        from kafka.errors import KafkaError

        with self._probe_admin() as admin:
            if admin is None:
                return set()
            try:
                brokers = admin.describe_cluster()["brokers"]
            except (KafkaError, OSError, KeyError):
                return set()
            return {b["broker_id"] for b in brokers if not b.get("is_fenced", False)}

    @contextlib.contextmanager
    def _probe_admin(self) -> Iterator[Any]:
        """A short-timeout admin client on this node alone, or None when it cannot connect."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000,
                                     bootstrap_timeout_ms=3000, client_id="cityops-probe",
                                     **kafka_python_security(self.settings))
        except (KafkaError, OSError, ValueError):
            yield None
            return
        try:
            yield admin
        finally:
            admin.close()

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(running=pid is not None, pid=pid, bootstrap=self.bootstrap,
                            root=self.paths.root, libs=self.libs,
                            answering=pid is not None and self.answering())

    def create_topics(self) -> list[str]:
        """Create every platform topic that is missing; returns the ones created."""
        return ensure_topics(self.settings, self.bootstrap)


class LocalKafkaCluster:
    """``brokers`` local KRaft nodes as one cluster; node ``i`` listens on ``kafka_port + 2i``
    (its controller on the next port). One node is exactly ``LocalKafka``."""

    def __init__(self, settings: Settings, brokers: int | None = None) -> None:
        self.settings = settings
        self.size = brokers or settings.kafka_local_brokers
        base = settings.kafka_port
        if self.size == 1:
            self.nodes = [LocalKafka(settings)]
            return
        root = (settings.data_dir / f"kafka-cluster-{base}").resolve()
        voters = ",".join(f"{i + 1}@127.0.0.1:{base + 2 * i + 1}" for i in range(self.size))
        self.nodes = [
            LocalKafka(settings, node_id=i + 1, port=base + 2 * i, root=root / f"node-{i + 1}",
                       voters=voters, cluster_id_file=root / "cluster.id", brokers=self.size)
            for i in range(self.size)]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def up(self) -> float:
        """Start every node that is not running, wait for all, create the topics."""
        started = time.monotonic()
        if all(n.pid() is not None for n in self.nodes) and self.nodes[0].answering():
            self.create_topics()
            return 0.0
        running = [n for n in self.nodes if n.pid() is not None]
        for n in running:  # started for another protocol: it will never answer this client
            n.check_mode()
        self.nodes[0].fetch()
        spawned = [n for n in self.nodes if n.pid() is None]
        try:
            for n in spawned:
                n.start()
            for n in spawned:  # a node answers once a quorum of controllers is up
                n.wait_ready(started)
            self.wait_registered(started)
        except BrokerError as exc:
            # only what this call started is stopped: a broker that was running already (a
            # slow one, or one this client cannot reach) is someone else's to stop
            self._stop(spawned)
            if running:
                pids = ", ".join(str(n.pid()) for n in running)
                raise BrokerError(f"{exc}; the broker already running (pid {pids}) was left "
                                  "as it is: `cityops kafka down` stops it") from None
            raise
        self.create_topics()
        return time.monotonic() - started

    def wait_registered(self, started: float | None = None) -> None:
        """Wait until every node sees every broker registered and unfenced.

        A node answers before the controller has registered the others: topics created
        then are refused (``UnknownBrokerIdError`` when the client is pointed at a broker
        it has no address for yet) or cannot get their replicas."""
        started = time.monotonic() if started is None else started
        deadline = started + self.settings.kafka_start_timeout_s
        want = {n.node_id for n in self.nodes}
        views: dict[int, set[int]] = {}
        while time.monotonic() < deadline:
            with quiet_kafka_client():
                views = {n.node_id: n.registered_brokers() for n in self.nodes}
            if all(view >= want for view in views.values()):
                log.info("kafka.cluster_ready", brokers=sorted(want),
                         seconds=round(time.monotonic() - started, 2))
                return
            time.sleep(0.25)
        raise BrokerError(f"brokers {sorted(want)} were not all registered within "
                          f"{self.settings.kafka_start_timeout_s}s; each node saw {views}")

    def down(self, timeout_s: float = 60.0) -> bool:
        """Stop every node: all are signalled at once, so the controller quorum stays up
        while they shut down (one by one, the last ones would wait for a lost quorum)."""
        return self._stop(self.nodes, timeout_s)

    @staticmethod
    def _stop(nodes: list[LocalKafka], timeout_s: float = 60.0) -> bool:
        pids = [(n, n.terminate()) for n in nodes]
        for node, pid in pids:
            if pid is not None:
                node.wait_stopped(pid, timeout_s)
        return any(pid is not None for _, pid in pids)

    def create_topics(self) -> list[str]:
        """Create the missing topics; on a fresh cluster, a refusal that only means the
        metadata is still settling (a broker or controller not known yet) is retried."""
        rf, min_isr = replication_for(self.size)
        if self.size == 1:
            return ensure_topics(self.settings, self.bootstrap)
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, TopicSetupError)
                                     and e.kafka_error in _SETTLING),
            stop=stop_after_attempt(6), wait=wait_exponential(0.5, max=5), reraise=True)
        return retrying(ensure_topics, self.settings, self.bootstrap, replication=rf,
                        min_insync=min_isr)


@contextlib.contextmanager
def kafka_errors(bootstrap: str,
                 refused: Callable[[str, str], BrokerError] | None = None) -> Iterator[None]:
    """Convert kafka-python's errors into ``BrokerUnreachable`` when no broker answers, and
    for a refusal into ``refused(Kafka's error name, the broker's words)`` (by default a
    ``TopicSetupError``: the platform topics were refused)."""
    from kafka import errors as kerr

    unreachable = (kerr.KafkaConnectionError, kerr.KafkaTimeoutError, kerr.RequestTimedOutError,
                   kerr.BrokerNotAvailableError, kerr.MetadataEmptyBrokerList)
    try:
        yield
    except unreachable as exc:
        raise BrokerUnreachable(
            f"no Kafka broker answered at {bootstrap} ({type(exc).__name__})") from exc
    except kerr.KafkaError as exc:
        name = type(exc).__name__
        said = re.search(r"error_message='([^']+)'", str(exc))  # the broker's own words
        detail = said.group(1) if said else getattr(exc, "description", "") or str(exc)[:300]
        if refused is not None:
            raise refused(name, detail) from exc
        raise TopicSetupError(f"Kafka at {bootstrap} refused the topics: {name}: {detail}",
                              kafka_error=name) from exc


def ensure_topics(settings: Settings, bootstrap: str | None = None, *,
                  replication: int | None = None, min_insync: int | None = None) -> list[str]:
    """Create missing platform topics with the configured partitions and replication
    (``CITYOPS_TOPIC_REPLICATION``, ``CITYOPS_TOPIC_MIN_INSYNC_REPLICAS`` unless given).

    Raises ``BrokerUnreachable`` when no broker answers and ``TopicSetupError`` when the
    brokers refuse (e.g. a replication factor above the number of brokers)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    rf = replication or settings.topic_replication
    min_isr = min_insync or settings.topic_min_insync_replicas
    address = bootstrap or settings.bootstrap_servers
    check_access(settings, bootstrap)  # a refused password: one line, not a 30 s wait
    with kafka_errors(address):
        admin = KafkaAdminClient(bootstrap_servers=address, client_id="cityops-topics",
                                 request_timeout_ms=15000,
                                 **kafka_python_security(settings))
        try:
            existing = set(admin.list_topics())
            missing = [t for t in settings.all_topics if t not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([
                        NewTopic(t, settings.topic_partitions, rf, topic_configs={
                            "max.message.bytes": str(settings.kafka_max_batch_bytes),
                            "min.insync.replicas": str(min_isr)})
                        for t in missing
                    ])
                log.info("kafka.topics_created", topics=missing)
            return missing
        finally:
            admin.close()


@contextlib.contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """Silence kafka-python's connection-refused errors while probing a broker that may be
    starting or away (its own errors are then reported once, by the caller)."""
    logger = logging.getLogger("kafka")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


def _kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
