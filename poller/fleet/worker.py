"""`poller worker`: one member of the workers' consumer group on the tenants topic.

Kafka's group protocol is the lease: the partitions the group gives this worker are the tenants
it runs, one child process each. On assignment it reads each new partition from the start to
its end, then starts that partition's tenants; afterwards a new record restarts its tenant and
a tombstone stops it. On revocation it stops the partition's tenants before the partition is
handed on (cooperative-sticky: only moving partitions are revoked); on loss (the worker was
cut off long enough to be thrown out) the tenants may already run elsewhere, where each
tenant's transactional.id has fenced these. That fencing, not the group, is what guarantees a
single writer: the group only makes two owners rare and short.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from poller.errors import ConfigError, KafkaAuthorizationError, KafkaFatalError, StartupError
from poller.fleet.metrics import Exposition, WorkerMetrics
from poller.fleet.scoping import foreign_references
from poller.fleet.settings import WorkerConfig, parse_tenant_text
from poller.fleet.status import StatusWriter
from poller.fleet.supervisor import Supervisor
from poller.fleet.tenants import partition_for, tenants_partitions
from poller.kafka.clients import create
from poller.kafka.topics import KAFKA_LOGGER
from poller.ops.http import CachedProbes, serve_endpoints

log = logging.getLogger(__name__)


@dataclass
class PartitionState:
    loaded: bool = False  # read to its end once since it was assigned
    pending: dict[str, str | None] = field(default_factory=dict)  # until loaded


class Worker:
    def __init__(self, cfg: WorkerConfig, stop: threading.Event | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.worker_name()
        self.stop = stop or threading.Event()
        self.metrics = WorkerMetrics(self.name)
        if cfg.state_dir:
            self.state_dir = Path(cfg.state_dir)
            self._tmp: tempfile.TemporaryDirectory[str] | None = None
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="poller-worker-")
            self.state_dir = Path(self._tmp.name)
        self.sup = Supervisor(cfg, self.metrics, self.state_dir)
        self.topic = cfg.tenants_topic_name()
        self.partitions: dict[int, PartitionState] = {}
        self.joined = False
        self._n_partitions = 0
        self._last_tick = time.monotonic()
        self._warned: set[tuple[int, str]] = set()

    # -- the consumer ------------------------------------------------------------------------

    def consumer_config(self) -> dict[str, Any]:
        c = self.cfg
        conf: dict[str, Any] = {
            **c.kafka.client_options(),
            "group.id": c.group,
            "client.id": self.name,
            "enable.auto.commit": False,  # every assignment reads its partitions from the start
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "logger": KAFKA_LOGGER,
        }
        if c.protocol == "classic":
            conf["partition.assignment.strategy"] = "cooperative-sticky"
            conf["session.timeout.ms"] = int(c.session_timeout_s * 1000)
            conf["heartbeat.interval.ms"] = int(c.heartbeat_interval_s * 1000)
        else:  # KIP-848: the broker assigns, and sets the session timeout and heartbeat
            conf["group.protocol"] = "consumer"
        instance = c.member_instance_id()
        if instance:
            conf["group.instance.id"] = instance
        return conf

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        mine = [tp for tp in parts if tp.topic == self.topic]
        for tp in mine:
            self.partitions[tp.partition] = PartitionState()
        consumer.incremental_assign(
            [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in parts]
        )
        self.joined = True
        if mine:
            self.metrics.rebalanced("assigned")
            log.info("assigned partitions %s", sorted(tp.partition for tp in mine))
        self._gauges()
        self._last_tick = time.monotonic()

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._release(consumer, parts, lost=False)

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._release(consumer, parts, lost=True)

    def _release(self, consumer: Consumer, parts: list[TopicPartition], lost: bool) -> None:
        mine = {tp.partition for tp in parts if tp.topic == self.topic}
        if lost:
            self.joined = False  # until the group assigns again
        if mine:
            self.metrics.rebalanced("lost" if lost else "revoked")
            if lost:
                log.warning(
                    "lost partitions %s: the group moved on without this worker (their "
                    "tenants may already run elsewhere, which fenced them here)",
                    sorted(mine),
                )
            else:
                log.info("revoked partitions %s", sorted(mine))
        self.sup.release(mine, lost=lost)
        for p in mine:
            self.partitions.pop(p, None)
        consumer.incremental_unassign(parts)
        self._gauges()
        self._last_tick = time.monotonic()

    def _gauges(self) -> None:
        self.metrics.partitions_owned(len(self.partitions))

    # -- records -----------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        err = msg.error()
        p = msg.partition()
        state = self.partitions.get(p) if p is not None else None
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if state is not None and not state.loaded:
                    state.loaded = True
                    for tenant, text in state.pending.items():
                        if text is not None:
                            self._apply(p or 0, tenant, text, from_assignment=True)
                    state.pending.clear()
                return
            if err.fatal():
                raise KafkaFatalError(f"tenants topic consumer: {err.str()}")
            if err.code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED,
            ):  # a missing ACL of the worker's own principal: retrying cannot help
                resource = (
                    f"TOPIC {msg.topic()!r} (READ, DESCRIBE)"
                    if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
                    else f"GROUP {self.cfg.group!r} (READ, DESCRIBE)"
                )
                raise KafkaAuthorizationError(
                    f"tenants topic consumer denied on {resource}, LITERAL, for "
                    f"{self.cfg.kafka.options.get('sasl.username') or 'the worker'}: "
                    f"{err.str()}. Grant the worker's ACLs (`poller acl --worker`)."
                )
            log.warning("tenants topic consumer: %s", err.str())
            return
        if state is None or p is None:
            return  # a partition revoked meanwhile
        tenant = (msg.key() or b"").decode("utf-8", "replace")
        if partition_for(tenant, self._n_partitions) != p:
            if (p, tenant) not in self._warned:
                self._warned.add((p, tenant))
                log.warning(
                    "tenant %s: record in partition %d is not in its partition (the topic's "
                    "partitions changed?); ignored",
                    tenant,
                    p,
                )
            return
        value = msg.value()
        text = None if value is None else value.decode("utf-8", "replace")
        if not state.loaded:
            state.pending[tenant] = text
        elif text is None:
            self.sup.drop_tenant(tenant)
        else:
            self._apply(p, tenant, text, from_assignment=False)

    def _apply(self, partition: int, key: str, text: str, from_assignment: bool) -> None:
        try:
            raw, tenant = parse_tenant_text(text, f"tenant record {key!r}", strict=False)
        except ConfigError as exc:
            log.error("%s; not (re)started", exc, extra={"tenant": key})
            return
        if tenant != key:
            log.error("tenant record %r holds the configuration of tenant %r; ignored", key, tenant)
            return
        scope = self.cfg.tenant_secrets
        if scope is not None and (
            foreign := foreign_references(raw, tenant, scope.file_dir, scope.allow_env)
        ):
            log.error(
                "tenant %r references secrets that are not its own; not (re)started:\n%s",
                tenant,
                "\n".join(f"  - {p}" for p in foreign),
                extra={"tenant": key},
            )
            return
        self.sup.set_tenant(partition, tenant, raw, text, from_assignment)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        self._n_partitions = tenants_partitions(self.cfg, create=True)
        tenants_partitions(self.cfg, create=True, topic=self.cfg.status_topic_name(), partitions=1)
        status = StatusWriter(self.cfg, self.name)
        self.sup.status = status
        consumer = create(Consumer, self.consumer_config())
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "worker %s joining group %s on %s (%s protocol, at most %d tenants)",
            self.name,
            self.cfg.group,
            self.topic,
            self.cfg.protocol,
            self.cfg.max_tenants,
        )
        # A freeze (SIGSTOP, a paused VM) longer than this puts the ownership in doubt.
        freeze_s = max(2.0, 2 * self.cfg.heartbeat_interval_s)
        hold_s = 3 * self.cfg.heartbeat_interval_s + 1.0
        try:
            while not self.stop.is_set():
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    self._on_message(msg)
                now = time.monotonic()
                if now - self._last_tick > freeze_s:
                    log.warning(
                        "the worker did not run for %.1fs; no tenant starts for %.0fs until the "
                        "group has confirmed or revoked its partitions",
                        now - self._last_tick,
                        hold_s,
                    )
                    self.sup.hold_starts(hold_s)
                self._last_tick = now
                self.sup.tick()
        finally:
            log.info("stopping: tenants first, then leaving the group")
            self.sup.stop_everything()
            status.close()
            consumer.close()
            if self._tmp is not None:
                self._tmp.cleanup()
        return 0

    # -- HTTP --------------------------------------------------------------------------------

    def readiness(self, kafka: bool) -> tuple[bool, dict[str, Any]]:
        checks = {"group": self.joined, "kafka": kafka, "capacity": self.sup.waiting == 0}
        ready = all(checks.values())
        return ready, {"ready": ready, "checks": checks, "tenants": self.sup.summary()}

    def serve(self) -> ThreadingHTTPServer:
        expo = Exposition(self.metrics)
        admin = create(AdminClient, {**self.cfg.kafka.client_options(), "logger": KAFKA_LOGGER})

        def kafka() -> bool:
            admin.list_topics(topic=self.topic, timeout=3)
            return True

        probes = CachedProbes({"kafka": kafka}, self.cfg.metrics.probe_interval_s)
        m = self.cfg.metrics
        try:
            return serve_endpoints(
                m,
                lambda: expo.render(self.sup.ports()),
                lambda: self.readiness(probes.results()["kafka"]),
            )
        except OSError as exc:
            raise StartupError(f"cannot serve metrics on {m.host}:{m.port}: {exc}") from exc


def install_signals(stop: threading.Event) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the tenants, then leaving the group", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
