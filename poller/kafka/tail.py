"""Reads an entity topic back as a read_committed consumer and decodes each message."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from poller.avro.decoder import Decoder
from poller.avro.registry import WIRE_MAGIC, ConfluentDecoder, Registry
from poller.avro.schemas import PayloadError
from poller.config import AppConfig, KafkaConfig, SchemaRegistryConfig
from poller.errors import BrokerUnavailableError, ConfigError, UsageError
from poller.kafka.acls import tail_group
from poller.kafka.topics import committed_consumer

_EOF_GRACE_S = 1.0


def read_topic(
    kafka: KafkaConfig | str,
    topic: str,
    timeout_s: float = 10.0,
    follow: bool = False,
    group_id: str | None = None,
    last: int | None = None,
) -> Iterator[Any]:
    """Every committed message of `topic` from the beginning (or, with `last`, from near each
    partition's end: at least its last `last` messages), stopping at its end; with `follow`,
    waiting for new ones until the caller stops."""
    if isinstance(kafka, str):  # a bare bootstrap address (tests, demo)
        kafka = KafkaConfig(bootstrap_servers=kafka)
    # A tenant's reader names its own group (one literal ACL, see poller.kafka.acls); it
    # assigns partitions and never commits, so several readers may share it.
    consumer = committed_consumer(kafka, group_id or f"poller-tail-{uuid.uuid4().hex}")
    try:
        try:
            meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            from poller.kafka.access import reach

            reach(kafka, 5.0)  # a refused login or certificate: named, exit 5
            raise BrokerUnavailableError(f"cannot list topic {topic}: {exc}") from exc
        denied = meta is not None and meta.error is not None
        if denied and meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            from poller.errors import KafkaAuthorizationError

            raise KafkaAuthorizationError(
                f"Kafka denied READ on TOPIC {topic!r} (LITERAL) for "
                f"{kafka.options.get('sasl.username') or 'this principal'}: "
                f"{meta.error.str()}. Grant it (see `poller acl --config ...`)."
            )
        if meta is None or (
            meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            raise UsageError(
                f"topic {topic} does not exist yet: run the poller first "
                "(`poller run --config <file>`), it creates the topic and fills it"
            )
        if meta.error is not None:
            raise BrokerUnavailableError(f"topic {topic} is not available: {meta.error}")
        parts = list(meta.partitions)
        starts = {p: OFFSET_BEGINNING for p in parts}
        if last is not None:
            for p in parts:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout_s
                )
                # Transaction markers take offsets too (one per commit): read a little more,
                # and let the caller keep the last ones; following, start at about them.
                starts[p] = max(low, high - (last if follow else 2 * last + 2))
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in parts])
        # A partition is read once its end taken now is reached. Right after a commit a
        # read_committed fetch may stop below that end for a moment (the last stable offset
        # moves a little later), so an end-of-partition below it counts only once it has stayed
        # there for _EOF_GRACE_S (a transaction still open keeps it there for good).
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
                for p in parts}  # fmt: skip
        pending = set(parts)
        eof_since: dict[int, float] = {}
        deadline = time.monotonic() + timeout_s
        while follow or (pending and time.monotonic() < deadline):
            now = time.monotonic()
            for p, since in list(eof_since.items()):
                if now - since >= _EOF_GRACE_S:
                    pending.discard(p)
                    del eof_since[p]
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if (err := msg.error()) is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    p = msg.partition() or 0
                    if (msg.offset() or 0) >= ends.get(p, 0):
                        pending.discard(p)
                    else:
                        eof_since.setdefault(p, now)
                    continue
                raise BrokerUnavailableError(f"reading {topic}: {err.str()}")
            eof_since.pop(msg.partition() or 0, None)
            deadline = time.monotonic() + timeout_s
            yield msg
    finally:
        consumer.close()


class MessageDecoder:
    """Decodes entity-topic values and keys of either format, told apart by the first byte:
    0 is the Confluent wire format (schemas fetched from the registry by id, cached), C3 is
    single-object encoding (with a JSON key)."""

    def __init__(self, registry: SchemaRegistryConfig | None) -> None:
        self._single = Decoder()
        self._registry = Registry(registry) if registry is not None else None
        self._confluent = ConfluentDecoder(self._registry) if self._registry else None

    def _wire(self, payload: bytes) -> ConfluentDecoder:
        if self._confluent is None:
            raise PayloadError(
                "a Confluent wire-format message, but no schema_registry.url is configured "
                "to fetch its schema from"
            )
        return self._confluent

    def value(self, payload: bytes) -> tuple[str, dict[str, object]]:
        """(schema or entity name, record)."""
        if payload[:1] == bytes((WIRE_MAGIC,)):
            return self._wire(payload).decode(payload)
        return self._single.decode(payload)

    def key(self, payload: bytes | None) -> object:
        """An Avro key record as a dict, or the JSON key `[tenant, key]` as a list."""
        if not payload:
            return None
        if payload[:1] == bytes((WIRE_MAGIC,)):
            return self._wire(payload).decode(payload)[1]
        return json.loads(payload)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


def tail(
    cfg: AppConfig,
    entity: str,
    limit: int | None = None,
    timeout_s: float = 10.0,
    follow: bool = False,
    last: int | None = None,
) -> Iterator[dict[str, object]]:
    """The entity topic's committed messages, decoded: the first `limit`, or with `last` the
    last `last` by message time (with `follow`: about the last `last` of each partition, then
    every new one)."""
    if entity not in cfg.entities:
        raise ConfigError([f"--entity: {entity!r} is not configured"])
    decoder = MessageDecoder(cfg.schema_registry)
    topic = cfg.kafka.topic_for(entity, cfg.tenant)
    try:
        messages: Iterable[Any] = read_topic(
            cfg.kafka, topic, timeout_s, follow, tail_group(cfg.tenant), last
        )
        if last is not None and not follow:
            ordered = sorted(messages, key=lambda m: (m.timestamp()[1], m.partition(), m.offset()))
            messages = ordered[max(0, len(ordered) - last) :] if last else []
        for n, msg in enumerate(messages):
            if limit is not None and n >= limit:
                return
            value = msg.value()
            fields = {} if value is None else decoder.value(value)[1]  # None: a tombstone
            yield {
                **fields,
                "_key": decoder.key(msg.key()),
                "_partition": msg.partition(),
                "_offset": msg.offset(),
                "_timestamp": _message_time(msg.timestamp()),
            }
    finally:
        decoder.close()


def _message_time(ts: tuple[int, int]) -> dt.datetime | None:
    kind, ms = ts
    if kind == TIMESTAMP_NOT_AVAILABLE:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
