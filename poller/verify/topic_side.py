"""The topic side of a verify: the latest committed record of every key of one tenant in an
entity topic, as a compacted topic would keep it, spilled to an on-disk SQLite file.

The topic is read once from the beginning to the end offsets taken at the start, with
read_committed. Each record replaces the key's previous one (INSERT OR REPLACE); a tombstone
leaves the key with no digest. Memory stays at SQLite's page cache plus one consume() batch,
whatever the topic's size; the file is read back ordered by key for the sort-merge.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from poller.config import KafkaConfig
from poller.errors import BrokerUnavailableError, TerminalError
from poller.kafka.acls import verify_group
from poller.kafka.topic_end import high_watermarks
from poller.kafka.topics import committed_consumer
from poller.pipeline.stream import EntityStream
from poller.verify.keys import KeyReader, key_text
from poller.verify.values import ValueCheck

_CONSUME_BATCH = 10_000
_CACHE_KIB = 32_768  # SQLite page cache: the spill's whole memory budget
# The consumer's prefetch queue (librdkafka's default is 64 MB): enough to keep it busy.
_CONSUMER_LIMITS = {"queued.max.messages.kbytes": 16_384, "fetch.max.bytes": 8_388_608}


# (raw key, integer key or the key as JSON text, digest or None for a tombstone, partition,
# offset)
RawRecord = tuple[bytes, object, bytes | None, int, int]


def open_spill(directory: Path) -> sqlite3.Connection:
    """A scratch SQLite database tuned for bulk writes it never needs to survive."""
    conn = sqlite3.connect(directory / f"verify-{uuid.uuid4().hex}.sqlite")
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA temp_store = FILE")
    conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    return conn


class TopicSnapshot:
    """Latest record per key of the stream's tenant in its topic: table t(rk raw key, ik the
    integer key, else k the key as JSON, d digest or NULL, p partition, o offset)."""

    def __init__(
        self, db: sqlite3.Connection, stream: EntityStream, values: ValueCheck | None = None
    ) -> None:
        self.db = db
        self.topic = stream.topic
        self.keys = KeyReader(stream)
        # What a record's value digests to: its body, or a never-matching digest when its
        # framing is not one a consumer can read (see ValueCheck).
        self.values = values or ValueCheck.of(stream)
        self.tenant = stream.tenant
        self.messages = 0  # records read (all tenants), tombstones included
        self.foreign = 0  # records of other tenants or with keys the poller does not write
        db.execute(
            "CREATE TABLE t (rk BLOB PRIMARY KEY, ik INTEGER, k TEXT, d BLOB, p INTEGER, "
            "o INTEGER) WITHOUT ROWID"
        )

    def load(
        self,
        kafka: KafkaConfig,
        timeout_s: float = 60.0,
        on_progress: Callable[[int, int], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Read the topic to the end offsets it has now (every transaction written below them
        has ended); `on_progress(done, total)`; `stop()` true ends the reading early (a
        stopping poller)."""
        consumer = committed_consumer(kafka, verify_group(self.tenant), extra=_CONSUMER_LIMITS)
        try:
            ends = self._end_offsets(consumer, timeout_s)
            # To the high watermark, not the last stable offset this read_committed consumer
            # is told: rows committed behind another tenant's open transaction, or whose commit
            # markers are still on their way, would be reported missing (and repaired twice).
            highs = high_watermarks(
                kafka, self.topic, list(ends), verify_group(self.tenant), timeout_s
            )
            ends = {p: (low, highs[p]) for p, (low, _stable) in ends.items()}
            total = sum(high - low for low, high in ends.values())
            if on_progress is not None:
                on_progress(0, total)
            pending = {p: high for p, (low, high) in ends.items() if high > low}
            if pending:
                consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in pending])
                self._consume(consumer, pending, total, timeout_s, on_progress, stop)
        finally:
            consumer.close()
        self.db.execute("CREATE INDEX t_ik ON t (ik)")
        self.db.commit()

    def _end_offsets(self, c: Any, timeout_s: float) -> dict[int, tuple[int, int]]:
        try:
            meta = c.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        except KafkaException as exc:
            raise BrokerUnavailableError(f"cannot list topic {self.topic}: {exc}") from exc
        if meta is None or meta.error is not None:
            code = meta.error.code() if meta is not None and meta.error is not None else None
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART or meta is None:
                raise TerminalError(
                    f"topic {self.topic} does not exist: run the poller first (nothing to verify)"
                )
            raise BrokerUnavailableError(f"topic {self.topic} is not available: {meta.error}")
        ends: dict[int, tuple[int, int]] = {}
        for p in meta.partitions:
            try:
                ends[p] = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout_s)
            except KafkaException as exc:
                raise BrokerUnavailableError(f"offsets of {self.topic}[{p}]: {exc}") from exc
        return ends

    def _consume(
        self,
        c: Any,
        pending: dict[int, int],
        total: int,
        timeout_s: float,
        on_progress: Callable[[int, int], None] | None,
        stop: Callable[[], bool] | None,
    ) -> None:
        keys, tenant = self.keys, self.tenant
        int_key, read_key = keys.int_key, keys.read
        value_digest = self.values.digest
        rows: list[tuple[bytes, int | None, str | None, bytes | None, int, int]] = []
        insert = "INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?, ?, ?)"
        deadline = time.monotonic() + timeout_s
        while pending and not (stop is not None and stop()):
            msgs = c.consume(_CONSUME_BATCH, 0.5)
            events = 0  # end-of-partition events among msgs
            for msg in msgs:  # once per record: locals only, the integer key without JSON
                if (err := msg.error()) is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        events += 1
                        continue
                    raise BrokerUnavailableError(f"reading {self.topic}: {err.str()}")
                raw = msg.key() or b""
                ik = int_key(raw)
                text: str | None = None  # the key as JSON, when it is not an integer
                if ik is None:
                    parsed = read_key(raw)
                    if parsed is None or parsed[0] != tenant:
                        self.foreign += 1
                        continue
                    _, key, canonical = parsed
                    if type(key) is int and canonical:
                        ik = key
                    else:  # a key of another format never matches a source row by number
                        text = key_text(key)
                value = msg.value()
                d = None if value is None else value_digest(value)
                rows.append((raw, ik, text, d, msg.partition() or 0, msg.offset() or 0))
            self.messages += len(msgs) - events
            if rows:
                self.db.executemany(insert, rows)
                rows.clear()
            if msgs:
                deadline = time.monotonic() + timeout_s
                if on_progress is not None:
                    on_progress(self.messages, total)
            for tp in c.position([TopicPartition(self.topic, p) for p in list(pending)]):
                if tp.offset >= 0 and tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
            if pending and time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"reading {self.topic} to its end timed out (partitions {sorted(pending)}); "
                    "an open transaction may be holding it back"
                )

    def count(self) -> int:
        """Keys whose latest record is a value (not a tombstone)."""
        row = self.db.execute("SELECT count(*) FROM t WHERE d IS NOT NULL").fetchone()
        return int(row[0])

    def by_int_key(self) -> Iterator[RawRecord]:
        """Records with integer keys, ascending."""
        return self._records("SELECT rk, ik, d, p, o FROM t WHERE ik IS NOT NULL ORDER BY ik")

    def non_int_keys(self) -> Iterator[RawRecord]:
        """Records whose key is not an integer, by raw key."""
        return self._records("SELECT rk, k, d, p, o FROM t WHERE ik IS NULL ORDER BY rk")

    def by_raw_key(self) -> Iterator[RawRecord]:
        return self._records("SELECT rk, COALESCE(ik, k), d, p, o FROM t ORDER BY rk")

    def _records(self, sql: str) -> Iterator[RawRecord]:
        """(raw key, integer key or the key as JSON text, digest or None, partition, offset)."""
        cur = self.db.execute(sql)  # a separate cursor: SQLite streams it page by page
        with contextlib.closing(cur):
            while chunk := cur.fetchmany(5_000):
                yield from chunk


def fetch_values(
    kafka: KafkaConfig,
    topic: str,
    where: list[tuple[int, int]],
    timeout_s: float = 10.0,
    tenant: str | None = None,
) -> dict[tuple[int, int], bytes]:
    """The values of the committed records at these (partition, offset) positions."""
    out: dict[tuple[int, int], bytes] = {}
    if not where:
        return out
    group = verify_group(tenant) if tenant is not None else f"poller-verify-{uuid.uuid4().hex}"
    consumer: Any = committed_consumer(kafka, group)
    try:
        for partition, offset in where:
            consumer.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                if msg.offset() == offset and msg.value() is not None:
                    out[(partition, offset)] = msg.value()
                break
    finally:
        consumer.close()
    return out
