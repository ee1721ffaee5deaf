"""Where a read_committed reader must stop to have seen every committed record it needs.

Kafka answers "where does this partition end" in the asking client's isolation level. A
read_committed client is told the last stable offset: the first offset of the oldest
transaction still open, and right after a commit that of the committed transaction whose
commit markers are not written yet. Committed records can lie beyond it: behind another
tenant's open transaction on a shared topic, or behind markers still on their way. A reader
that stops there misses them (a poller would resume from an older watermark and publish rows
twice; `verify` would report published rows missing and repair would publish them again).

The high watermark, asked by a read_uncommitted client, counts every record written; a
read_committed reader passes it once every transaction below it has ended. Waiting for that
can take until an abandoned transaction times out, so the watermark loader waits only for
the records it needs: those of its own keys written beyond the last stable offset, read
read_uncommitted first, since only the wait tells whether they commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from poller.config import KafkaConfig
from poller.errors import BrokerUnavailableError, KafkaAuthorizationError
from poller.kafka.topics import committed_consumer

_READ_BATCH = 5000

# librdkafka does not always flag these retriable, yet they pass once the leader is known.
_LEADER_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TRANSPORT,
    }
)


def end_offset(consumer: Any, topic: str, partition: int, timeout_s: float) -> int:
    """The partition's end as the consumer's isolation level counts it (see above). A
    retriable error (NOT_LEADER right after the topic was created, a leader election) is asked
    again until the timeout, then raised as transient."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(0.5, deadline - time.monotonic())
            )
            return int(high)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise KafkaAuthorizationError(
                    f"Kafka denied READ on TOPIC {topic!r} (LITERAL): {err.str()}. Grant it "
                    "(see `poller acl --config ...`)."
                ) from exc
            retriable = isinstance(err, KafkaError) and (
                err.retriable() or err.code() in _LEADER_MOVING
            )
            if not retriable or time.monotonic() > deadline:
                raise BrokerUnavailableError(f"offsets of {topic}[{partition}]: {exc}") from exc
            time.sleep(0.2)


def high_watermarks(
    kafka: KafkaConfig, topic: str, partitions: list[int], group: str, timeout_s: float
) -> dict[int, int]:
    """Every record written to each partition, committed or not (the reader's target when it
    needs all of them)."""
    probe = committed_consumer(kafka, group, isolation="read_uncommitted")
    try:
        return {p: end_offset(probe, topic, p, timeout_s) for p in partitions}
    finally:
        probe.close()


def needed_ends(
    kafka: KafkaConfig,
    topic: str,
    stable: Mapping[int, int],
    group: str,
    timeout_s: float,
    needed: Callable[[bytes | None], bool],
) -> tuple[dict[int, int], set[bytes]]:
    """Per partition, the offset a read_committed reader must pass: its last stable offset
    (`stable`), or just past the last record beyond it whose key is `needed`; and every key
    found beyond it. Records beyond the last stable offset belong to open transactions or to
    commits whose markers are on their way; they are read here uncommitted, only for their
    keys (the watermark topic's tail: a few records per open transaction)."""
    probe = committed_consumer(kafka, group, isolation="read_uncommitted")
    ends = dict(stable)
    tail_keys: set[bytes] = set()
    try:
        tails: dict[int, int] = {}
        for p, low in stable.items():
            high = end_offset(probe, topic, p, timeout_s)
            if high > low:
                tails[p] = high
        if not tails:
            return ends, tail_keys
        probe.assign([TopicPartition(topic, p, stable[p]) for p in tails])
        deadline = time.monotonic() + timeout_s
        while tails:
            msgs = probe.consume(num_messages=_READ_BATCH, timeout=0.5)
            if msgs:
                deadline = time.monotonic() + timeout_s
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise BrokerUnavailableError(f"reading {topic}: {err.str()}")
                    continue
                p, at, key = msg.partition() or 0, msg.offset() or 0, msg.key()
                if key is not None:
                    tail_keys.add(key)
                if needed(key):
                    ends[p] = max(ends[p], at + 1)
            for tp in probe.position([TopicPartition(topic, p) for p in list(tails)]):
                if tp.offset >= tails[tp.partition]:
                    del tails[tp.partition]
            if tails and time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"reading the uncommitted end of {topic} made no progress for "
                    f"{timeout_s:.0f}s (partitions {sorted(tails)})"
                )
    finally:
        probe.close()
    return ends, tail_keys
