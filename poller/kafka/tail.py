"""Reads an entity topic back as a read_committed consumer and decodes each message."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from poller.avro.decoder import Decoder
from poller.config import AppConfig, KafkaConfig
from poller.errors import BrokerUnavailableError, ConfigError
from poller.kafka.topics import committed_consumer


def read_topic(kafka: KafkaConfig | str, topic: str, timeout_s: float = 10.0) -> Iterator[Any]:
    """Every committed message of `topic` from the beginning, stopping at its end."""
    if isinstance(kafka, str):  # a bare bootstrap address (tests, demo)
        kafka = KafkaConfig(bootstrap_servers=kafka)
    consumer = committed_consumer(kafka, f"poller-tail-{uuid.uuid4().hex}")
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise BrokerUnavailableError(f"topic {topic} is not available: {meta and meta.error}")
        parts = list(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        pending = set(parts)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if (err := msg.error()) is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise BrokerUnavailableError(f"reading {topic}: {err.str()}")
            deadline = time.monotonic() + timeout_s
            yield msg
    finally:
        consumer.close()


def tail(
    cfg: AppConfig, entity: str, limit: int | None = None, timeout_s: float = 10.0
) -> Iterator[dict[str, object]]:
    if entity not in cfg.entities:
        raise ConfigError([f"--entity: {entity!r} is not configured"])
    decoder = Decoder()
    topic = cfg.kafka.topic_for(entity, cfg.tenant)
    for n, msg in enumerate(read_topic(cfg.kafka, topic, timeout_s)):
        if limit is not None and n >= limit:
            return
        _name, fields = decoder.decode(msg.value())
        yield {
            **fields,
            "_key": (msg.key() or b"").decode(),
            "_partition": msg.partition(),
            "_offset": msg.offset(),
        }
