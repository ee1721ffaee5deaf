"""Reading the fault tests' entity topics back (read_committed) and comparing them with the
source: every key exactly once, none missing, none extra, the version columns equal."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from poller.avro.decoder import Decoder
from tests.integration.faults.sources import SourceRow
from tests.integration.topics import new_consumer, read_to_end


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes | None
    partition: int
    offset: int
    headers: dict[str, bytes]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int] | None:
    """High watermark per partition (anything written, committed or not), or None if the topic
    does not exist. Asked read_uncommitted: a read_committed client gets the last stable
    offset instead, which an open or just-committed transaction holds back."""
    consumer = new_consumer(bootstrap, "read_uncommitted", group="fault-verify")
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
            for p in meta.partitions
        }
    finally:
        consumer.close()


def read_committed(
    bootstrap: str, topic: str, idle_timeout_s: float = 30.0, isolation: str = "read_committed"
) -> list[Record]:
    """Every committed message of `topic`, from the beginning to the end of each partition
    (with `isolation="read_uncommitted"`: aborted ones too).

    Unlike `poller.tail.read_topic` it never returns early: if a partition's end is not
    reached (no progress for `idle_timeout_s`) the test fails.
    """
    messages = read_to_end(bootstrap, [topic], idle_timeout_s, isolation, "fault-verify")[topic]
    return [
        Record(
            key=_as_bytes(msg.key()),
            value=msg.value(),
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            headers=_headers(msg.headers()),
        )
        for msg in messages
    ]


def _as_bytes(v: str | bytes | None) -> bytes:
    return v.encode() if isinstance(v, str) else (v or b"")


def _headers(raw: Mapping[str, str | bytes | None] | Sequence[Any] | None) -> dict[str, bytes]:
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or [])
    return {str(k): _as_bytes(v) for k, v in pairs}


class TopicEnds:
    """Cheap probes of a topic's ends, summed over its partitions (0 until it exists).

    `committed(topic)` is the last stable offset (what a read_committed consumer reaches): the
    watermark topic's grows by two (record + commit marker) per committed batch.
    `in_flight(topic)` is true while a transaction has written to the topic and is still open
    (high watermark beyond the last stable offset).
    """

    def __init__(self, bootstrap: str) -> None:
        self._committed = new_consumer(bootstrap, group="fault-verify")
        self._uncommitted = new_consumer(bootstrap, "read_uncommitted", "fault-verify")

    def _end(self, consumer: Consumer, topic: str) -> int:
        try:
            meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is None or meta.error is not None:
                return 0
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                for p in meta.partitions
            )
        except KafkaException:
            return 0

    def committed(self, topic: str) -> int:
        return self._end(self._committed, topic)

    def high(self, topic: str) -> int:
        """The high watermark: every record written, committed or not."""
        return self._end(self._uncommitted, topic)

    def in_flight(self, topic: str) -> bool:
        return self.high(topic) > self._end(self._committed, topic)

    def close(self) -> None:
        self._committed.close()
        self._uncommitted.close()


# ------------------------------------------------------------------------------- verifier

_DECODER: Decoder | None = None


def decoder() -> Decoder:
    global _DECODER
    if _DECODER is None:
        _DECODER = Decoder()
    return _DECODER


@dataclass
class Delivery:
    """An entity topic decoded: local_id -> list of decoded values (one per message)."""

    by_id: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_id.values())


def decode_topic(records: Sequence[Record], tenant: str, entity: str) -> Delivery:
    out = Delivery()
    dec = decoder()
    for r in records:
        if r.value is None:
            out.problems.append(f"tombstone at {r.partition}/{r.offset}")
            continue
        name, value = dec.decode(r.value)
        local_id = str(value["local_id"])
        key = json.loads(r.key)
        if name != entity:
            out.problems.append(f"{r.partition}/{r.offset}: a {name} message in {entity}'s topic")
        if not (
            isinstance(key, list) and len(key) == 2 and key[0] == tenant and str(key[1]) == local_id
        ):
            out.problems.append(f"{r.partition}/{r.offset}: key {r.key!r} for local_id {local_id}")
        if r.headers.get("tenant") != tenant.encode() or r.headers.get("entity") != entity.encode():
            out.problems.append(f"{r.partition}/{r.offset}: headers {r.headers}")
        out.by_id.setdefault(local_id, []).append(value)
    return out


def _sample(items: Sequence[object], n: int = 8) -> str:
    shown = ", ".join(map(str, list(items)[:n]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def compare(delivery: Delivery, expected: Mapping[str, SourceRow]) -> list[str]:
    """Every problem with `delivery` against `expected` (empty: exactly once, versions equal)."""
    problems = list(delivery.problems)
    dupes = sorted((k for k, v in delivery.by_id.items() if len(v) > 1), key=_id_order)
    missing = sorted(set(expected) - set(delivery.by_id), key=_id_order)
    extra = sorted(set(delivery.by_id) - set(expected), key=_id_order)
    if dupes:
        counts = Counter(len(delivery.by_id[k]) for k in dupes)
        problems.append(
            f"{len(dupes)} keys delivered more than once (copies: {dict(counts)}): {_sample(dupes)}"
        )
    if missing:
        problems.append(f"{len(missing)} source keys missing: {_sample(missing)}")
    if extra:
        problems.append(f"{len(extra)} keys not in the source: {_sample(extra)}")
    wrong = []
    for local_id, want in expected.items():
        for got in delivery.by_id.get(local_id, []):
            diff = {f: (got.get(f), v) for f, v in want.fields.items() if got.get(f) != v}
            if diff:
                wrong.append(f"{local_id}: {diff}")
    if wrong:
        problems.append(
            f"{len(wrong)} messages differ from the source (got, want): {_sample(wrong, 4)}"
        )
    return problems


def _id_order(k: str) -> tuple[int, str]:
    return (int(k), "") if k.isdigit() else (1 << 62, k)


# ------------------------------------------------------------------------------- processes
