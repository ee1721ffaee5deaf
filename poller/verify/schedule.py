"""Scheduled delete reconciliation inside a running poller (`repair_interval_s`).

Polling cannot see a row that was deleted: it is simply no longer there. Every
`repair_interval_s`, a background thread reads the entity topic's latest record per key (spilled
to disk), walks those keys in ranges of `repair_range_keys`, asks the source which of them still
exist, and tombstones the rest, at most `repair_rows_per_s` keys per second. It publishes with
its own transactional.id and never touches the watermark; a failure is logged and retried at the
next interval, never stopping the live poller.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from poller.config import AppConfig
from poller.errors import PollerError, TooManyDeletesError
from poller.kafka import watermark
from poller.kafka.publisher import TransactionalPublisher
from poller.pipeline.stream import EntityStream
from poller.source.query import EntityQuery
from poller.source.reader import make_engine
from poller.verify.keys import key_of_text
from poller.verify.repair import RepairCounts, Repairer
from poller.verify.session import entity_streams
from poller.verify.source_side import VerifySource
from poller.verify.topic_side import TopicSnapshot, open_spill

log = logging.getLogger(__name__)


def reconcile_transactional_id(cfg: AppConfig) -> str:
    return f"{cfg.transactional_id()}.reconcile"


def reconcile_deletes(
    cfg: AppConfig,
    stream: EntityStream,
    engine: sa.Engine,
    publisher: TransactionalPublisher,
    stop: threading.Event,
) -> RepairCounts:
    """One pass over an entity: tombstone every topic key the source no longer has."""
    entity = cfg.entities[stream.name]
    k = cfg.kafka
    stored = watermark.load(k, k.watermark_topic_name(cfg.tenant), cfg.tenant, missing_ok=True)
    wm = stored.get(stream.name)
    query = EntityQuery(
        entity, cfg.source, cfg.tenant, stream.schema.field_names, engine.dialect, name=stream.name
    )
    source = VerifySource(engine, query, entity, cfg.source, wm.position if wm else None)
    repairer = Repairer(
        stream,
        entity,
        source,
        publisher,
        rows_per_s=entity.repair_rows_per_s,
        deletes_only=True,
        chunk_keys=entity.repair_range_keys,
        sleep=stop.wait,
    )
    with tempfile.TemporaryDirectory(prefix="poller-reconcile-") as tmp:
        db = open_spill(Path(tmp))
        try:
            snapshot = TopicSnapshot(db, stream)
            snapshot.load(k, stop=stop.is_set)
            gone = _absent_keys(cfg, stream, snapshot, repairer, stop)
            # Only the keys found absent are tombstoned; the repairer reads each again first.
            for key, raw in gone:
                if stop.is_set():
                    break
                repairer.offer(key, raw)
            if not stop.is_set():
                repairer.flush()
        finally:
            db.close()
    return repairer.counts


def _absent_keys(
    cfg: AppConfig,
    stream: EntityStream,
    snapshot: TopicSnapshot,
    repairer: Repairer,
    stop: threading.Event,
) -> list[tuple[object, bytes]]:
    """Every live key of the topic the source no longer has, looked up a range at a time.
    Stops (TooManyDeletesError, nothing tombstoned) as soon as they are more than the entity's
    repair_max_tombstone_share of its live keys: a wrong source (an emptied table, another
    database, a broken filter) must not delete the topic, and an upsert sink's table with it."""
    entity = cfg.entities[stream.name]
    live = snapshot.count()
    share = entity.repair_max_tombstone_share
    limit = int(live * share)
    gone: list[tuple[object, bytes]] = []
    chunk: list[tuple[object, bytes]] = []
    looked_up = 0
    started = time.monotonic()
    records = snapshot.by_raw_key()
    while not stop.is_set():
        record = next(records, None)
        if record is not None:
            raw, key, value_digest, _p, _o = record
            if value_digest is None:
                continue
            chunk.append((key if type(key) is int else key_of_text(str(key)), raw))
            if len(chunk) < entity.repair_range_keys:
                continue
        if chunk:
            gone.extend(repairer.absent(chunk))
            looked_up += len(chunk)
            chunk = []
            if len(gone) > limit and share < 1:
                raise TooManyDeletesError(
                    f"entity {stream.name!r}: delete reconciliation stopped: {len(gone):,} of "
                    f"the first {looked_up:,} keys looked up ({live:,} in the topic) are not "
                    f"in the source, more than repair_max_tombstone_share "
                    f"({share:.2%} = {limit:,} keys); nothing was tombstoned. Check the "
                    "source (the table, the database, the tenant filter); if the rows are "
                    "really gone, raise the share for one pass"
                )
            wait = started + looked_up / entity.repair_rows_per_s - time.monotonic()
            if wait > 0:
                stop.wait(wait)
        if record is None:
            break
    return gone


class Reconciler:
    """The background thread of a running poller (`poller run` starts it beside the run loop,
    with its own database connections and producer)."""

    def __init__(
        self, cfg: AppConfig, on_counts: Callable[[str, int, int], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.on_counts = on_counts
        self.engine: sa.Engine | None = None
        self.stop = threading.Event()
        self.intervals = {
            n: e.repair_interval_s
            for n, e in cfg.enabled_entities().items()
            if e.repair_interval_s is not None
        }
        self.thread = threading.Thread(target=self._run, name="poller-reconcile", daemon=True)
        self._publisher: TransactionalPublisher | None = None
        self._streams: dict[str, EntityStream] = {}

    def start(self) -> None:
        if self.intervals:
            self.engine = make_engine(self.cfg.source)
            self.thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        if self.engine is not None:
            self.engine.dispose()

    def _run(self) -> None:
        now = time.monotonic()
        due = {n: now + s for n, s in self.intervals.items()}
        try:
            while not self.stop.is_set():
                name = min(due, key=due.__getitem__)
                if self.stop.wait(max(0.0, due[name] - time.monotonic())):
                    return
                self._one(name)
                due[name] = time.monotonic() + self.intervals[name]
        finally:
            self._drop_publisher()

    def _one(self, name: str) -> None:
        tenant = self.cfg.tenant
        extra = {"tenant": tenant, "entity": name}
        assert self.engine is not None
        try:
            stream = self._streams.get(name)
            if stream is None:  # built once: in the Confluent format it asks the registry
                stream = self._streams[name] = entity_streams(self.cfg, self.engine, [name])[name]
            if self._publisher is None:
                pub = TransactionalPublisher(self.cfg.kafka, reconcile_transactional_id(self.cfg))
                try:
                    pub.start()
                except BaseException:
                    pub.close()
                    raise
                self._publisher = pub
            counts = reconcile_deletes(self.cfg, stream, self.engine, self._publisher, self.stop)
        except Exception as exc:  # never stops the live poller; retried next interval
            log.warning("%s/%s: delete reconciliation failed, next try in %.0fs: %s",
                        tenant, name, self.intervals[name], exc, extra=extra,
                        exc_info=not isinstance(exc, PollerError))  # fmt: skip
            self._drop_publisher()
            return
        log.info("%s/%s: delete reconciliation: %d keys checked, %d tombstones",
                 tenant, name, counts.checked, counts.tombstones, extra=extra)  # fmt: skip
        if self.on_counts is not None:  # (entity, tombstones, re-published)
            self.on_counts(name, counts.tombstones, counts.republished)

    def _drop_publisher(self) -> None:
        if self._publisher is not None:
            try:
                self._publisher.close()
            except PollerError as exc:
                log.warning("closing the reconciliation producer: %s", exc)
            self._publisher = None
