"""A private single-node KRaft broker for tests that stop and start Kafka.

Stopping the shared broker on 127.0.0.1:9092 would break every other test running at the same
time; a test that needs an outage gets a broker of its own instead: the same jars as
`scripts/services` (in ~/.cache/poller-stack, `POLLER_STACK_HOME`), free ports, its own data
directory under the test's tmp dir. `stop()` and `start()` keep the data and the ports, so
clients reconnect to the same address, like after a real broker restart.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.integration.faults.waits import free_port, port_open

KAFKA_VERSION = "4.1.1"
STACK_HOME = Path(
    os.environ.get("POLLER_STACK_HOME", Path.home() / ".cache" / "poller-stack")
).expanduser()
KAFKA_LIBS = STACK_HOME / f"kafka-{KAFKA_VERSION}" / "libs"

_JVM = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

_LOG4J = """\
name=poller-test-kafka
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
"""


def kafka_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A cluster id as Kafka's `Uuid.randomUuid()` makes one: url-safe base64 of 16 random bytes.

    Like Kafka, draw again when the text starts with "-": argparse reads `-t -Xy...` as an
    option, so one id in 64 used to fail the storage format (CI, 2026-12-05).
    """
    while True:
        text = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class DedicatedKafka:
    """One broker+controller process; `bootstrap` stays the same across restarts."""

    def __init__(self, home: Path, start_timeout_s: float = 120.0) -> None:
        if not any(KAFKA_LIBS.glob(f"kafka_*-{KAFKA_VERSION}.jar")):
            pytest.fail(
                f"Kafka jars not found in {KAFKA_LIBS}; run `scripts/services up kafka` once",
                pytrace=False,
            )
        self.home = home
        self.data = home / "data"
        self.log_path = home / "kafka.log"
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "server.properties"
        self.config.write_text(self._properties(), encoding="utf-8")
        self.log4j = home / "log4j2.properties"
        self.log4j.write_text(_LOG4J, encoding="utf-8")
        self._format()

    def _properties(self) -> str:
        c = self.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _java(self, *args: str, heap: str = "-Xmx256m") -> list[str]:
        return [
            "java",
            heap,
            *_JVM,
            f"-Dlog4j2.configurationFile={self.log4j}",
            "-cp",
            f"{KAFKA_LIBS}/*",
            *args,
        ]

    def _format(self) -> None:
        argv = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            # The `=` form: the id is a value even if it began with "-".
            f"--cluster-id={kafka_cluster_id()}",
            "-c",
            str(self.config),
        )
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            pytest.fail(f"formatting the test broker's storage failed:\n{proc.stdout}{proc.stderr}")

    def start(self) -> None:
        """Start the broker and return once it answers a metadata request."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for port in (self.port, self.controller_port):
            deadline = time.monotonic() + 30
            while port_open("127.0.0.1", port) and time.monotonic() < deadline:
                time.sleep(0.1)  # the previous incarnation's sockets
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.config), heap="-Xmx512m"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap}, logger=logging.getLogger("test-kafka")
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"the test broker exited during start-up:\n{self.log_tail()}")
            if port_open("127.0.0.1", self.port, timeout=0.5):
                with contextlib.suppress(KafkaException):
                    if admin.list_topics(timeout=5).brokers:
                        return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the test broker did not answer within {self.start_timeout_s:.0f}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (a clean shutdown, as an operator's restart), SIGKILL after `timeout_s`."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no broker log)"
        return "\n".join(text.splitlines()[-lines:])
