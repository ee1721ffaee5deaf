"""The oracle: a model of the committed rows (the ledger) and the topic read back with a
read_committed consumer, compared after each schedule's final drain.

For every row of the poller's tenant whose insert committed: the topic holds it, and in the
timestamp modes the last message of its key is its final committed version; every message is a
committed version (never a rolled-back one, nor one superseded inside its own transaction); no
(key, version) appears twice, and in `id` mode no key does; no row of the other tenant appears.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from poller.avro.decoder import Decoder


@dataclass
class RowModel:
    tenant: str
    where: str  # "seed 12 r3": the schedule and handle that inserted it
    committed: set[str] = field(default_factory=set)  # versions that were ever committed
    final: str | None = None  # the last committed version (None: its insert never committed)


class Ledger:
    """Rows by id, and each writer's uncommitted versions."""

    def __init__(self) -> None:
        self.rows: dict[int, RowModel] = {}
        self.open: dict[int, dict[int, str]] = {}  # writer -> {id: version}

    def written(self, writer: int, row_id: int, version: str, autocommit: bool) -> None:
        if autocommit:
            self._commit_one(row_id, version)
        else:
            self.open.setdefault(writer, {})[row_id] = version

    def _commit_one(self, row_id: int, version: str) -> None:
        row = self.rows[row_id]
        row.committed.add(version)
        row.final = version

    def commit(self, writer: int) -> None:
        for row_id, version in self.open.pop(writer, {}).items():
            self._commit_one(row_id, version)

    def rollback(self, writer: int) -> None:
        self.open.pop(writer, None)


@dataclass
class Message:
    tenant: str
    local_id: str
    version: str
    where: str  # partition/offset


class TopicReader:
    """Reads an entity topic from the start, then on each call what was committed since."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"model-{topic}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,  # the broker answers at once: new data is read now
                "log_level": 2,
            }
        )
        # The high watermark as a read_uncommitted client sees it: a read_committed one is told
        # the last stable offset, which trails a commit that has just returned (the markers are
        # written after it) and would end the read before the last transaction's messages.
        self._ends = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"model-ends-{topic}",
                "isolation.level": "read_uncommitted",
                "log_level": 2,
            }
        )
        meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
        self.partitions = sorted(meta.partitions)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.messages: list[Message] = []
        self._decoder = Decoder()

    def read_new(self, timeout_s: float = 60.0) -> None:
        """Until every partition's end as of now (the last stable offset: nothing may be open)."""
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        high = {tp.partition: self._ends.get_watermark_offsets(tp, timeout=15)[1] for tp in tps}
        deadline = time.monotonic() + timeout_s
        while True:
            # The position passes the commit markers too, so it reaches the high watermark.
            at = {tp.partition: tp.offset for tp in self.consumer.position(tps)}
            behind = [p for p in self.partitions if high[p] > 0 and at.get(p, -1) < high[p]]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"reading {self.topic}: partitions {behind} at {at} did not reach {high} "
                    "(a transaction left open?)"
                )
            for msg in self.consumer.consume(num_messages=1000, timeout=0.02):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"reading {self.topic}: {err.str()}")
                self._add(msg)

    def _add(self, msg: Any) -> None:
        key = json.loads(msg.key())
        where = f"{msg.partition()}/{msg.offset()}"
        value = msg.value()
        if value is None:
            self.messages.append(Message(str(key[0]), str(key[1]), "<tombstone>", where))
            return
        _, decoded = self._decoder.decode(value)
        local_id = str(decoded["local_id"])
        if str(key[1]) != local_id:
            raise AssertionError(f"{where}: key {key} for local_id {local_id}")
        self.messages.append(Message(str(key[0]), local_id, str(decoded["full_name"]), where))

    def close(self) -> None:
        self.consumer.close()
        self._ends.close()


def check(ledger: Ledger, messages: list[Message], tenant: str, mode: str) -> list[str]:
    """Every way the topic differs from the model (empty: exactly once, nothing leaked)."""
    problems: list[str] = []
    by_id: dict[int, list[str]] = {}
    copies = Counter((m.local_id, m.version) for m in messages)
    for (local_id, version), n in sorted(copies.items()):
        if n > 1:
            problems.append(f"duplicate: id {local_id} version {version} published {n} times")
    for m in messages:
        row = ledger.rows.get(int(m.local_id)) if m.local_id.isdigit() else None
        if m.tenant != tenant or (row is not None and row.tenant != tenant):
            problems.append(f"leak: {m.where} carries tenant {m.tenant!r} id {m.local_id}")
            continue
        if row is None:
            problems.append(f"unknown row: {m.where} id {m.local_id} {m.version}")
            continue
        if m.version not in row.committed:
            problems.append(
                f"never committed: {m.where} id {m.local_id} version {m.version} ({row.where}; "
                f"committed: {sorted(row.committed)})"
            )
        by_id.setdefault(int(m.local_id), []).append(m.version)
    for row_id, row in sorted(ledger.rows.items()):
        if row.tenant != tenant or row.final is None:
            continue
        got = by_id.get(row_id)
        if not got:
            problems.append(f"lost: id {row_id} ({row.where}, final version {row.final})")
        elif mode == "id" and len(got) > 1:
            problems.append(f"id mode published id {row_id} {len(got)} times: {got}")
        elif mode != "id" and got[-1] != row.final:
            problems.append(
                f"stale: id {row_id} ({row.where}) ends at {got[-1]}, final version {row.final}"
            )
    return problems
