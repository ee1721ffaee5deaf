"""Creates the poller's topics when they are missing: entity topics, the compacted watermark
topic and the dead-letter topic."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from poller.config import AppConfig, KafkaConfig
from poller.errors import BrokerUnavailableError, ConfigError, KafkaAuthorizationError
from poller.kafka.clients import create

# librdkafka logs through this logger (its own thread), so they get the JSON format and redaction.
KAFKA_LOGGER = logging.getLogger("poller.kafka")


log = logging.getLogger(__name__)


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def topic_name_problems(cfg: AppConfig) -> list[str]:
    """Topic names the templates make for this tenant that Kafka would refuse (the broker
    answers INVALID_TOPIC_EXCEPTION, which would otherwise be retried forever)."""
    k = cfg.kafka
    named = {f"kafka.topic_template (entity {n})": k.topic_for(n, cfg.tenant) for n in cfg.entities}
    named["kafka.watermark_topic"] = k.watermark_topic_name(cfg.tenant)
    named["kafka.dead_letter_topic"] = k.dead_letter_topic_name(cfg.tenant)
    return [
        f"{where}: {name!r} (tenant {cfg.tenant!r}) is not a valid Kafka topic name: only "
        "letters, digits, '.', '_' and '-', at most 249 characters"
        for where, name in named.items()
        if not _TOPIC_NAME.fullmatch(name) or name in (".", "..")
    ]


# Heartbeats add a record per entity per minute, and compaction cleans only closed segments:
# the active segment rolls hourly and a tenth of dirty records is enough to start cleaning, so
# a poller at start reads about one record per key plus at most an hour or two of heartbeats
# (Kafka's defaults keep a week's segment uncompacted: ~10M records for 1,000 tenants).
WATERMARK_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(24 * 3600 * 1000),  # how long a tombstone (a reset) is kept
}


def wanted_topics(cfg: AppConfig) -> dict[str, tuple[int, dict[str, str]]]:
    if problems := topic_name_problems(cfg):
        raise ConfigError(problems)
    k = cfg.kafka
    topics = {
        cfg.kafka.topic_for(name, cfg.tenant): (k.topic_partitions, dict(k.topic_config))
        for name in cfg.enabled_entities()
    }
    topics[k.watermark_topic_name(cfg.tenant)] = (1, dict(WATERMARK_TOPIC_CONFIG))
    if any(e.on_bad_row == "dead_letter" for e in cfg.enabled_entities().values()):
        topics[k.dead_letter_topic_name(cfg.tenant)] = (k.topic_partitions, {})
    return topics


def admin_client(kafka: KafkaConfig) -> AdminClient:
    return create(AdminClient, {**kafka.client_options(), "logger": KAFKA_LOGGER})


def committed_consumer(
    kafka: KafkaConfig,
    group_id: str,
    extra: Mapping[str, object] | None = None,
    isolation: str = "read_committed",
) -> Consumer:
    """A consumer that sees only committed transactions and reports each partition's end;
    it never commits offsets (readers assign partitions and start from the beginning).
    `extra`: further librdkafka settings (e.g. a smaller prefetch queue). `isolation`
    read_uncommitted is for asking where a partition really ends (see topic_end.py)."""
    return create(
        Consumer,
        {
            **kafka.client_options(),
            **(extra or {}),
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "logger": KAFKA_LOGGER,
        },
    )


def ensure_topics(
    kafka: KafkaConfig,
    topics: Mapping[str, tuple[int, dict[str, str]]],
    timeout_s: float = 30.0,
) -> None:
    admin = admin_client(kafka)
    bootstrap, replication = kafka.bootstrap_servers, kafka.topic_replication
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerUnavailableError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    missing = [
        NewTopic(name, num_partitions=parts, replication_factor=replication, config=conf)
        for name, (parts, conf) in topics.items()
        if name not in existing
    ]
    if not missing:
        return
    for name, fut in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            fut.result()
            log.info("created topic %s", name)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if err.code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            ):
                user = kafka.options.get("sasl.username")
                raise KafkaAuthorizationError(
                    f"Kafka denied CREATE on TOPIC {name!r} (LITERAL) for "
                    f"{f'User:{user}' if user else 'this principal'}: the topic does not exist;"
                    " create it beforehand or grant CREATE on it"
                ) from exc
            raise BrokerUnavailableError(f"creating topic {name} failed: {err.str()}") from exc


def max_message_bytes(
    kafka: KafkaConfig, topics: list[str], timeout_s: float = 30.0
) -> dict[str, int]:
    """Each topic's effective `max.message.bytes` (its own setting or the broker's default):
    a record batch larger than that is refused by the broker at commit time."""
    admin = admin_client(kafka)
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
    found: dict[str, int] = {}
    try:
        futures = admin.describe_configs(resources, request_timeout=timeout_s)
        for resource, future in futures.items():
            entry = future.result(timeout=timeout_s).get("max.message.bytes")
            if entry is not None and entry.value is not None:
                found[resource.name] = int(entry.value)
    except KafkaException as exc:
        err: KafkaError = exc.args[0]
        if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            user = kafka.options.get("sasl.username")
            raise KafkaAuthorizationError(
                f"Kafka denied DESCRIBE_CONFIGS on TOPIC (one of {', '.join(topics)}; LITERAL) "
                f"for {f'User:{user}' if user else 'this principal'}: {err.str()}. Grant it "
                "(see `poller acl --config ...`)."
            ) from exc
        raise BrokerUnavailableError(f"describing topics {', '.join(topics)}: {exc!r}") from exc
    except TimeoutError as exc:
        raise BrokerUnavailableError(f"describing topics {', '.join(topics)}: {exc!r}") from exc
    return found
