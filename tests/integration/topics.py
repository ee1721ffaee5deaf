"""The integration tests' one topic reader: every message of some topics, from the beginning to
the end of each partition, as a read_committed consumer sees them (read_uncommitted on request:
aborted messages too). Each suite decodes the messages its own way (the poller's decoder, the
stock AvroDeserializer, raw records)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition


def new_consumer(
    bootstrap: str, isolation: str = "read_committed", group: str = "test-read"
) -> Consumer:
    """A consumer in a group of its own, never committing offsets, reporting partition ends."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group}-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            "fetch.max.bytes": 50_000_000,
            "log_level": 2,  # quiet while a test has the broker down; errors still raise
        }
    )


def high_watermarks(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end of every partition of `topics`: its high watermark, which a read_committed
    reader reaches once every transaction below it has ended. Asked by a read_uncommitted
    client: a read_committed one is answered with the last stable offset, which right after a
    commit can still be below the committed records (the commit markers are written a moment
    later), so a partition could be taken as empty or ended early (CI, session 4)."""
    probe = new_consumer(bootstrap, "read_uncommitted", "test-ends")
    ends: dict[tuple[str, int], int] = {}
    try:
        for topic in topics:
            meta = probe.list_topics(topic, timeout=15).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                pytest.fail(f"topic {topic} is not available ({meta and meta.error})")
            for p in meta.partitions:
                tp = TopicPartition(topic, p)
                ends[(topic, p)] = probe.get_watermark_offsets(tp, timeout=15)[1]
    finally:
        probe.close()
    return ends


def read_to_end(
    bootstrap: str,
    topics: Iterable[str],
    idle_timeout_s: float = 30.0,
    isolation: str = "read_committed",
    group: str = "test-read",
) -> dict[str, list[Message]]:
    """Every message of `topics` (one consumer for all), in partition/offset order per topic.

    It never returns early: a topic that does not exist, or a partition whose end is not
    reached (no message for `idle_timeout_s`), fails the test.
    """
    names = list(topics)
    ends = high_watermarks(bootstrap, names)
    c = new_consumer(bootstrap, isolation, group)
    out: dict[str, list[Message]] = {t: [] for t in names}
    try:
        pending = {tp for tp, high in ends.items() if high > 0}  # an empty one has no end event
        if pending:
            c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(pending)])
        last_progress, read = time.monotonic(), 0
        while pending:
            if time.monotonic() - last_progress > idle_timeout_s:
                pytest.fail(
                    f"partitions {sorted(pending)} did not reach their end (ends {ends}) within "
                    f"{idle_timeout_s:.0f}s of the last message; an open transaction may hold "
                    f"the last stable offset ({read} messages read)"
                )
            for msg in c.consume(num_messages=10_000, timeout=0.2):
                topic, partition = msg.topic() or "", msg.partition() or 0
                if (err := msg.error()) is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # Right after a commit a read_committed fetch may still stop below it
                        # (the last stable offset moves a moment later): done only at the end
                        # taken before reading.
                        if (msg.offset() or 0) >= ends[(topic, partition)]:
                            pending.discard((topic, partition))
                        continue
                    pytest.fail(f"reading {topic}: {err.str()}")
                last_progress, read = time.monotonic(), read + 1
                out[topic].append(msg)
    finally:
        c.close()
    for messages in out.values():
        messages.sort(key=lambda m: (m.partition() or 0, m.offset() or 0))
    return out
