"""Sort-merge of an entity's source rows with the latest record per key of its topic.

Both sides arrive ordered by the same key: integer keys straight from the database's index
(`ORDER BY key`), any other key type through a second SQLite spill ordered by the message key's
bytes (database collations do not sort text the way Python or SQLite do). Memory is bounded by
one source page and SQLite's page cache, never by the table.

Each source row is encoded by the poller's own encoder, so a value compares equal exactly when
the poller would publish the same Avro body today.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from poller.errors import BadValueError, TerminalError
from poller.pipeline.stream import EntityStream
from poller.source.native_pg import Unsupported
from poller.verify.keys import digest, key_of_text, key_text
from poller.verify.native_source import NativePages, Page
from poller.verify.source_side import PAGE_ROWS, VerifySource
from poller.verify.topic_side import RawRecord, TopicSnapshot

log = logging.getLogger(__name__)

# Kinds of difference.
MISSING = "missing"  # a source row (published as of the watermark) the topic does not have
EXTRA = "extra"  # a key the topic has that the source no longer has (or has soft-deleted)
DIFFERENT = "different"  # both have it, with different values
KINDS = (MISSING, EXTRA, DIFFERENT)

# States of a source row.
_ROW, _DELETED, _PENDING, _BAD = 0, 1, 2, 3


# A source item: (sort key: the integer key or the message key's bytes, key, state, digest).
SourceItem = tuple[object, object, int, bytes | None]
# A topic record as spilled (RawRecord): the integer key (integer mode) or the raw key (bytes
# mode) is its sort key.


@dataclass
class Counts:
    source_rows: int = 0  # rows of the tenant read from the source
    compared: int = 0  # rows up to the watermark (the ones that must be in the topic)
    pending: int = 0  # rows after the watermark: not published yet, not compared
    deleted: int = 0  # soft-deleted rows up to the watermark (must be absent)
    bad: int = 0  # rows the encoder rejects (dead-lettered or stopping the poller)
    topic_keys: int = 0  # keys whose latest record is a value
    topic_messages: int = 0  # records read, tombstones and other tenants' included
    equal: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.different


@dataclass(frozen=True)
class Difference:
    kind: str
    key: object
    raw_key: bytes
    partition: int | None = None  # of the topic's latest record, if any
    offset: int | None = None


Sink = Callable[[Difference], None]


@dataclass
class Merge:
    """Runs the merge and keeps the counts; every difference goes to `sink`."""

    stream: EntityStream
    sink: Sink
    counts: Counts = field(default_factory=Counts)
    native: NativePages | None = None  # PostgreSQL pages through COPY and the extension

    def source_items(
        self,
        source: VerifySource,
        spill: sqlite3.Connection | None,
        progress: Callable[[int], None],
    ) -> tuple[str, Iterator[SourceItem]]:
        """("int", items by integer key) or ("bytes", items by message key bytes)."""
        if self.native is not None:
            try:
                page = source.with_driver(*source.page_query(None), self.native.read)
            except Unsupported as exc:
                log.info("%s: the Python path reads the source (%s)", self.native.what, exc)
            else:
                return "int", self._native_ordered(source, self.native, page, progress)
        pages = source.pages()
        first = next(pages, [])
        if not source.composite and all(type(source.key(r)) is int for r in first):
            return "int", self._ordered(source, first, pages, progress)
        if spill is None:
            raise TerminalError("a spill file is needed for keys that are not integers")
        return "bytes", self._spilled(source, spill, first, pages, progress)

    def _item(self, source: VerifySource, row: Sequence[object], sort_key: object) -> SourceItem:
        key = source.key(row)
        c = self.counts
        c.source_rows += 1
        if row[-1]:
            c.pending += 1
            return (sort_key, key, _PENDING, None)
        is_deleted = self.stream.is_deleted
        if is_deleted is not None and is_deleted(row[source.layout.deleted_at]):
            c.deleted += 1
            return (sort_key, key, _DELETED, None)
        c.compared += 1
        try:
            value = self.stream.encoder(row[: source.n_fields])
        except BadValueError:
            c.bad += 1
            return (sort_key, key, _BAD, b"")
        return (sort_key, key, _ROW, digest(value))

    def _ordered(
        self,
        source: VerifySource,
        first: Sequence[Sequence[object]],
        pages: Iterator[Sequence[Sequence[object]]],
        progress: Callable[[int], None],
    ) -> Iterator[SourceItem]:
        last: int | None = None
        key_at = source.layout.key_at
        item = self._item
        page: Sequence[Sequence[object]] = first
        del first  # one page in memory at a time
        while page:
            for row in page:
                key = row[key_at]
                if type(key) is not int or (last is not None and key <= last):
                    raise TerminalError(
                        f"entity {self.stream.name!r}: source key {key!r} after {last!r}: the key "
                        "column is not a unique integer, so the source cannot be merged by key"
                    )
                last = key
                yield item(source, row, key)
            progress(len(page))
            page = next(pages, [])

    def _native_ordered(
        self,
        source: VerifySource,
        native: NativePages,
        page: Page | None,
        progress: Callable[[int], None],
    ) -> Iterator[SourceItem]:
        """As `_ordered`, a page at a time through the native path; a page it hands back is
        read and judged by the Python path (`_item`), so bad rows are decided there."""
        key_at, item = source.layout.key_at, self._item
        last: int | None = None
        while True:
            if page is None:  # the Python path reads this page
                stmt, params = source.page_query(last)
                rows = source.fetch(stmt, params)
                keys: list[int] = [row[key_at] for row in rows]  # type: ignore[misc]
                items: Iterator[SourceItem] = (
                    item(source, r, k) for r, k in zip(rows, keys, strict=True)
                )
            else:
                keys, flags, values = page
                items = self._native_items(keys, flags, values)
            for key, it in zip(keys, items, strict=True):
                if type(key) is not int or (last is not None and key <= last):
                    raise TerminalError(
                        f"entity {self.stream.name!r}: source key {key!r} after {last!r}: the key "
                        "column is not a unique integer, so the source cannot be merged by key"
                    )
                last = key
                yield it
            progress(len(keys))
            if len(keys) < PAGE_ROWS:
                return
            page = source.with_driver(*source.page_query(last), native.read)

    def _native_items(
        self, keys: list[int], flags: list[bool], values: list[bytes]
    ) -> Iterator[SourceItem]:
        c = self.counts
        for key, pending, value in zip(keys, flags, values, strict=True):
            c.source_rows += 1
            if pending:
                c.pending += 1
                yield (key, key, _PENDING, None)
            else:
                c.compared += 1
                yield (key, key, _ROW, digest(value))

    def _spilled(
        self,
        source: VerifySource,
        spill: sqlite3.Connection,
        first: Sequence[Sequence[object]],
        pages: Iterator[Sequence[Sequence[object]]],
        progress: Callable[[int], None],
    ) -> Iterator[SourceItem]:
        spill.execute("CREATE TABLE s (rk BLOB PRIMARY KEY, k TEXT, st INTEGER, d BLOB)")
        key_of = self.stream.message_key
        page: Sequence[Sequence[object]] = first
        del first  # one page in memory at a time
        while page:
            batch = []
            for row in page:
                _, key, state, value_digest = self._item(source, row, None)
                batch.append((key_of(key), key_text(key), state, value_digest))
            try:
                spill.executemany("INSERT INTO s VALUES (?, ?, ?, ?)", batch)
            except sqlite3.IntegrityError as exc:
                raise TerminalError(
                    f"entity {self.stream.name!r}: two source rows have the same message key; "
                    f"the key column(s) {', '.join(source.entity.key_columns)} are not unique"
                ) from exc
            progress(len(page))
            page = next(pages, [])
        spill.commit()
        cur = spill.execute("SELECT rk, k, st, d FROM s ORDER BY rk")
        while chunk := cur.fetchmany(5_000):
            for rk, k, st, d in chunk:
                yield (rk, key_of_text(k), st, d)

    def run(
        self,
        source: VerifySource,
        topic: TopicSnapshot,
        spill: sqlite3.Connection | None,
        progress: Callable[[int], None],
    ) -> None:
        c = self.counts
        c.topic_keys = topic.count()
        c.topic_messages = topic.messages
        mode, items = self.source_items(source, spill, progress)
        if mode == "int":
            self._merge(items, topic.by_int_key(), 1)
            for rec in topic.non_int_keys():  # no integer source key can match these
                if rec[2] is not None:
                    self._diff(EXTRA, rec)
        else:
            self._merge(items, topic.by_raw_key(), 0)

    def _merge(self, items: Iterator[SourceItem], records: Iterator[RawRecord], at: int) -> None:
        """The sort-merge; `at`: where a record's sort key sits. The common case (equal) is
        counted inline: this loop runs once per row."""
        c = self.counts
        s = next(items, None)
        t = next(records, None)
        while s is not None and t is not None:
            a, b = s[0], t[at]
            if a < b:  # type: ignore[operator]  # both ints, or both bytes
                self._source_only(s)
                s = next(items, None)
            elif b < a:  # type: ignore[operator]
                if t[2] is not None:
                    self._diff(EXTRA, t)
                t = next(records, None)
            else:
                if s[2] == _ROW and s[3] == t[2]:
                    c.equal += 1
                else:
                    self._both(s, t)
                s, t = next(items, None), next(records, None)
        while s is not None:
            self._source_only(s)
            s = next(items, None)
        while t is not None:
            if t[2] is not None:
                self._diff(EXTRA, t)
            t = next(records, None)

    def _source_only(self, s: SourceItem) -> None:
        sort_key, key, state, _ = s
        if state in (_ROW, _BAD):
            raw = sort_key if isinstance(sort_key, bytes) else self.stream.message_key(key)
            self._report(MISSING, key, raw, None)

    def _both(self, s: SourceItem, t: RawRecord) -> None:
        _, key, state, value_digest = s
        if state == _PENDING:
            return
        if t[2] is None:  # tombstoned in the topic
            if state in (_ROW, _BAD):
                self._report(MISSING, key, t[0], t)
        elif state == _DELETED:
            self._report(EXTRA, key, t[0], t)
        elif value_digest != t[2]:
            self._report(DIFFERENT, key, t[0], t)
        else:  # pragma: no cover - the merge counts equal rows itself
            self.counts.equal += 1

    def _diff(self, kind: str, t: RawRecord) -> None:
        k = t[1]
        self._report(kind, k if type(k) is int else key_of_text(str(k)), t[0], t)

    def _report(self, kind: str, key: object, raw: bytes, t: RawRecord | None) -> None:
        setattr(self.counts, kind, getattr(self.counts, kind) + 1)
        self.sink(Difference(kind, key, raw, t[3] if t else None, t[4] if t else None))
