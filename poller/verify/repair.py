"""Repairs an entity topic from its source, in Kafka transactions, beside the live poller.

Keys arrive from a verify (missing, extra, different) or from the scheduled delete
reconciliation (every key of the topic). For a chunk of keys the current source rows are read
again, and in one transaction:

- a key with no row, or a soft-deleted row, gets a tombstone (key, null value);
- a key with a row gets the row as the poller encodes it (unless `deletes_only`);
- a row past the stored watermark is left alone: the live poller publishes it.

The repair producer has its own transactional.id (`<prefix>.<tenant>.repair`), so it never
fences the live poller, and it never writes the watermark topic. A killed repair leaves an open
transaction that the next repair's `init_transactions` aborts: nothing of it becomes visible.

Race with the live poller: a row changed while a chunk is in flight could be overwritten by the
older version this chunk read. The live poller only publishes a row `settle_delay_s` after its
cursor time (timestamp modes), so a chunk is aborted and read again when more than half of that
passed between reading the rows and committing. With no settle delay (or in `id` mode, where
the live poller never re-publishes a row) there is no such guard; the next verify shows what
is left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from poller.config import EntityConfig
from poller.errors import BadValueError, PublishError
from poller.kafka.publisher import TransactionalPublisher
from poller.pipeline.stream import EntityStream, epoch_ms
from poller.verify.source_side import VerifySource

log = logging.getLogger(__name__)

CHUNK_KEYS = 1_000
_MAX_RETRIES = 5


@dataclass
class RepairCounts:
    checked: int = 0  # keys looked up in the source
    tombstones: int = 0
    republished: int = 0
    pending: int = 0  # left to the live poller
    bad: int = 0  # rows the encoder rejects: not repairable here
    transactions: int = 0


class Repairer:
    def __init__(
        self,
        stream: EntityStream,
        entity: EntityConfig,
        source: VerifySource,
        publisher: TransactionalPublisher,
        rows_per_s: float | None = None,
        deletes_only: bool = False,
        chunk_keys: int = CHUNK_KEYS,
        on_chunk: Callable[[RepairCounts], None] | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.stream = stream
        self.entity = entity
        self.source = source
        self.publisher = publisher
        self.sleep = sleep
        self.rows_per_s = rows_per_s
        self.deletes_only = deletes_only
        self.chunk_keys = chunk_keys
        self.on_chunk = on_chunk
        self.counts = RepairCounts()
        # Half the shortest settle delay the live poller may use: the commit itself still
        # takes a moment after the check.
        # takes a moment after the check. Without a settle delay there is nothing to guard.
        settle = entity.settle_s(horizon_active=True) if entity.is_time_mode else 0.0
        self.guard_s = settle / 2 if settle > 0 else None
        self._chunk: list[tuple[object, bytes]] = []
        self._started = time.monotonic()

    def offer(self, key: object, raw_key: bytes) -> None:
        self._chunk.append((key, raw_key))
        if len(self._chunk) >= self.chunk_keys:
            self.flush()

    def flush(self) -> None:
        chunk, self._chunk = self._chunk, []
        if not chunk:
            return
        for attempt in range(1, _MAX_RETRIES + 1):
            if self._publish(chunk):
                break
            log.info(
                "%s/%s: repair chunk took longer than settle_delay_s; reading it again (%d)",
                self.stream.tenant, self.stream.name, attempt,
                extra={"tenant": self.stream.tenant, "entity": self.stream.name},
            )  # fmt: skip
        else:
            raise PublishError(
                f"entity {self.stream.name!r}: a repair chunk could not commit within "
                f"settle_delay_s ({self.guard_s}s) after reading its rows, {_MAX_RETRIES} times"
            )
        self.counts.checked += len(chunk)
        if self.on_chunk is not None:
            self.on_chunk(self.counts)
        self._throttle()

    def absent(self, chunk: Sequence[tuple[object, bytes]]) -> list[tuple[object, bytes]]:
        """The keys of the chunk a deletes-only repair would tombstone now (no row, or a
        soft-deleted one); publishes nothing."""
        _, _, _, tombstones = self._plan(chunk, deletes_only=True)
        return tombstones

    def _plan(
        self, chunk: Sequence[tuple[object, bytes]], deletes_only: bool
    ) -> tuple[list[tuple[bytes, bytes | None, int]], int, int, list[tuple[object, bytes]]]:
        """(sends: (key, value or None, timestamp), pending, bad, the keys to tombstone)."""
        src = self.source
        stream = self.stream
        rows = src.rows_by_keys([k for k, _ in chunk])
        by_raw = {stream.message_key(src.key(r)): r for r in rows}
        is_deleted = stream.is_deleted
        time_mode, n, tz = self.entity.is_time_mode, src.n_fields, stream.tz
        sends: list[tuple[bytes, bytes | None, int]] = []
        gone: list[tuple[object, bytes]] = []
        pending = bad = 0
        for key, raw in chunk:
            row = by_raw.get(raw)
            if row is None and deletes_only and self._written_otherwise(key, raw, by_raw):
                continue  # the row exists under today's key: not a delete (docs/keys.md)
            if row is not None and row[-1]:
                pending += 1
            elif row is None or (is_deleted is not None and is_deleted(row[src.layout.deleted_at])):
                sends.append((raw, None, 0))
                gone.append((key, raw))
            elif not deletes_only:
                try:
                    value = self.stream.encoder(row[:n])
                except BadValueError:
                    bad += 1
                    continue
                sends.append((raw, value, epoch_ms(row[n], tz) if time_mode else 0))
        return sends, pending, bad, gone

    def _written_otherwise(self, key: object, raw: bytes, by_raw: Mapping[bytes, object]) -> bool:
        """A topic key that is not the bytes the poller writes today for its row (an older key
        format), while the row itself exists."""
        try:
            today = self.stream.message_key(key)
        except BadValueError:
            return False
        return today != raw and today in by_raw

    def _publish(self, chunk: Sequence[tuple[object, bytes]]) -> bool:
        """One transaction for the chunk (none when there is nothing to send); False when it
        was aborted by the guard."""
        read_at = time.monotonic()
        sends, pending, bad, _ = self._plan(chunk, self.deletes_only)
        if sends:
            pub, topic, headers = self.publisher, self.stream.topic, self.stream.headers
            pub.begin()
            try:
                for key, body, ts in sends:
                    pub.send(topic, key, body, headers, ts)
                pub.poll()
                if self.guard_s is not None and time.monotonic() - read_at > self.guard_s:
                    pub.abort()
                    return False
            except BaseException:
                pub.abort()
                raise
            pub.commit()
            self.counts.transactions += 1
        c = self.counts
        tombstones = sum(1 for _, value, _ in sends if value is None)
        c.tombstones += tombstones
        c.republished += len(sends) - tombstones
        c.pending += pending
        c.bad += bad
        return True

    def _throttle(self) -> None:
        if not self.rows_per_s:
            return
        due = self._started + self.counts.checked / self.rows_per_s
        wait = due - time.monotonic()
        if wait > 0:
            self.sleep(wait)
