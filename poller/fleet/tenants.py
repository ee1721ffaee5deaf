"""The tenants topic: a compacted topic with one record per tenant (key = tenant id, value =
the tenant's configuration as written, references unresolved; a tombstone removes it).

A tenant's partition is `murmur2(tenant) % partitions` (Kafka's Java default partitioner),
computed here, not left to a client's partitioner, so every writer agrees. Partitions are the
unit the workers' consumer group hands out: whoever owns a partition runs its tenants. A worker
ignores a record that sits in any other partition than its tenant's (the topic's partition
count was raised after it was written), so no tenant ever has two owners.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from poller.errors import BrokerUnavailableError, ConfigError, KafkaFatalError
from poller.fleet.settings import WorkerConfig
from poller.kafka.access import denied
from poller.kafka.acls import AclEntry
from poller.kafka.clients import create
from poller.kafka.tail import read_topic
from poller.kafka.topics import KAFKA_LOGGER

log = logging.getLogger(__name__)

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(tenant: str, partitions: int) -> int:
    return (murmur2(tenant.encode("utf-8")) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class TenantRecord:
    tenant: str
    partition: int
    offset: int
    text: str


def _admin(cfg: WorkerConfig) -> AdminClient:
    return create(AdminClient, {**cfg.kafka.client_options(), "logger": KAFKA_LOGGER})


def tenants_partitions(
    cfg: WorkerConfig,
    create: bool,
    timeout_s: float = 30.0,
    topic: str | None = None,
    partitions: int | None = None,
) -> int:
    """The tenants topic's (or another compacted fleet topic's) partition count; with `create`,
    the topic is made if missing."""
    topic = topic or cfg.tenants_topic_name()
    n_partitions = partitions or cfg.tenants_partitions
    admin = _admin(cfg)
    for _attempt in range(3):
        try:
            meta = admin.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise BrokerUnavailableError(
                f"Kafka at {cfg.kafka.bootstrap_servers} did not answer: {exc}"
            ) from exc
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        error = meta.error if meta is not None else None
        if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            # Not "does not exist": this principal may not see it (a tenant's, say).
            acl = AclEntry("worker", "TOPIC", topic, "LITERAL", "READ")
            raise denied(
                cfg.kafka, acl, "a fleet topic, for the workers' and the operator's principals only"
            )
        if not create:
            raise ConfigError([f"tenants topic {topic} does not exist (no tenant was put yet)"])
        spec = NewTopic(
            topic,
            num_partitions=n_partitions,
            replication_factor=cfg.kafka.topic_replication,
            config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        )
        try:
            admin.create_topics([spec], request_timeout=timeout_s)[topic].result()
            log.info("created topic %s (%d partitions, compacted)", topic, n_partitions)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            ):
                acl = AclEntry("worker", "TOPIC", topic, "LITERAL", "CREATE")
                raise denied(
                    cfg.kafka, acl, "the topic does not exist; create it or grant CREATE"
                ) from exc
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerUnavailableError(f"creating {topic} failed: {err.str()}") from exc
        time.sleep(0.5)  # metadata of a new topic takes a moment to reach every broker
    raise BrokerUnavailableError(f"topic {topic} has no partitions after creating it")


def read_tenants(cfg: WorkerConfig, timeout_s: float = 10.0) -> dict[str, TenantRecord]:
    """Every tenant in the topic now (latest record per key, tombstones applied)."""
    topic = cfg.tenants_topic_name()
    partitions = tenants_partitions(cfg, create=False)
    out: dict[str, TenantRecord] = {}
    for msg in read_topic(cfg.kafka, topic, timeout_s):
        tenant = (msg.key() or b"").decode("utf-8", "replace")
        if partition_for(tenant, partitions) != msg.partition():
            continue  # not its partition: see the module docstring
        value = msg.value()
        if value is None:
            out.pop(tenant, None)
        else:
            out[tenant] = TenantRecord(tenant, msg.partition(), msg.offset(), value.decode())
    return out


def _produce(cfg: WorkerConfig, tenant: str, value: bytes | None, timeout_s: float = 30.0) -> int:
    partitions = tenants_partitions(cfg, create=True)
    partition = partition_for(tenant, partitions)
    producer = create(
        Producer,
        {**cfg.kafka.client_options(), "enable.idempotence": True, "logger": KAFKA_LOGGER},
    )
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    producer.produce(
        cfg.tenants_topic_name(),
        value=value,
        key=tenant.encode("utf-8"),
        partition=partition,
        on_delivery=delivered,
    )
    left = producer.flush(timeout_s)
    if left:
        raise BrokerUnavailableError(f"the tenants topic did not confirm {tenant!r} in time")
    if errors:
        raise KafkaFatalError(f"writing tenant {tenant!r} failed: {errors[0].str()}")
    return partition


def put(cfg: WorkerConfig, tenant: str, text: str) -> int:
    """Store a tenant's configuration; the owning worker (re)starts it. Its partition."""
    return _produce(cfg, tenant, text.encode("utf-8"))


def remove(cfg: WorkerConfig, tenant: str) -> int:
    """A tombstone: the owning worker stops the tenant. Its partition."""
    return _produce(cfg, tenant, None)


@dataclass(frozen=True)
class Owner:
    worker: str  # client.id: the worker's name
    host: str
    member_id: str
    instance_id: str | None


def owners(cfg: WorkerConfig, timeout_s: float = 15.0) -> dict[int, Owner]:
    """Which worker owns each partition of the tenants topic, from the group's description."""
    topic = cfg.tenants_topic_name()
    admin = _admin(cfg)  # must outlive the future: a destroyed client never answers
    future = admin.describe_consumer_groups([cfg.group], request_timeout=timeout_s)[cfg.group]
    try:
        desc = future.result(timeout=timeout_s + 5)
    except (KafkaException, TimeoutError) as exc:
        raise BrokerUnavailableError(f"describing group {cfg.group} failed: {exc}") from exc
    out: dict[int, Owner] = {}
    for m in desc.members:
        owner = Owner(m.client_id, m.host, m.member_id, m.group_instance_id)
        for tp in m.assignment.topic_partitions:
            if tp.topic == topic:
                out[tp.partition] = owner
    return out
