"""The run loop of one tenant's poller.

For each entity it reads the rows changed since its watermark in batches, encodes each row as
Avro, publishes it to the entity's topic and stores the new watermark in the same Kafka
transaction. Transient failures (database or broker gone, aborted transaction) back off and
resume from the last committed watermark; terminal ones stop the process.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Protocol

from poller.avro.schemas import EntitySchema, load_schema
from poller.batch import Batch, Position
from poller.config import AppConfig, EntityConfig, Mode
from poller.errors import (
    PollerError,
    ProducerFailedError,
    SchemaMismatchError,
    SourceError,
    TerminalError,
    TransientError,
)
from poller.kafka.backfill_state import load_all
from poller.kafka.publisher import TransactionalPublisher
from poller.kafka.topics import ensure_topics, wanted_topics
from poller.kafka.watermark import live_key
from poller.ops.entity_metrics import TenantMetrics
from poller.ops.metrics import Health, Metrics
from poller.pipeline import native
from poller.pipeline.backfill import Backfiller
from poller.pipeline.drift import DriftWatch
from poller.pipeline.guards import ensure_progress, fit_position, start_checks, stored_mismatches
from poller.pipeline.heartbeat import Heartbeats
from poller.pipeline.isolation import EntityBackoff
from poller.pipeline.once import DEFAULT_MAX_WAIT_S, OnceGoal
from poller.pipeline.preflight import preflight
from poller.pipeline.sizes import NO_LIMIT, MessageLimits, read_limits
from poller.pipeline.stream import EntityStream, cursor_number, make_streams, publish_batch
from poller.pipeline.wire import EntityWire, register_entities
from poller.source.horizon import HorizonAccess
from poller.source.limits import SourceLimits
from poller.source.prefetch import Prefetcher
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine

log = logging.getLogger(__name__)

MAX_BATCHES_PER_TURN = 50  # then let the other entities have a turn
ONCE_RECHECK_S = 1.0  # run --once, waiting for open transactions: poll at least this often


class RunObserver(Protocol):
    """Follows a run (the progress bars of `run --once`)."""

    def started(self, poller: Poller) -> None: ...
    def committed(self, entity: str, rows: int) -> None: ...
    def caught_up(self, entity: str) -> None: ...


class Poller:
    def __init__(
        self,
        cfg: AppConfig,
        metrics: Metrics | None = None,
        health: Health | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.tenant = cfg.tenant
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self.stop = stop or threading.Event()
        self.meters = TenantMetrics(self.metrics, cfg.tenant, cfg.enabled_entities())
        self.meters.running_as(cfg.transactional_id())
        self.engine = make_engine(cfg.source)
        self.limits = SourceLimits(cfg.source, self.stop)  # max_concurrent_queries, rows/s
        self.schemas: dict[str, EntitySchema] = {n: load_schema(n) for n in cfg.enabled_entities()}
        self.readers: dict[str, SourceReader] = {}
        self.queries: dict[str, EntityQuery] = {}
        self.access = HorizonAccess(cfg.source.horizon, self.engine.dialect.name)
        self.config_path = "<config file>"  # for the commands error messages suggest
        for name, ent in cfg.enabled_entities().items():
            query = self.queries[name] = EntityQuery(
                ent,
                cfg.source,
                cfg.tenant,
                self.schemas[name].field_names,
                self.engine.dialect,
                name=name,
            )
            self.readers[name] = SourceReader(
                self.engine, query, ent, cfg.source, access=self.access
            )
        self._fetch = {
            name: self.limits.fetcher(r.fetch, _batch_rows) for name, r in self.readers.items()
        }
        self._busy = {name: threading.Lock() for name in self.readers}  # see prefetch.py
        self.watermark_topic = cfg.kafka.watermark_topic_name(cfg.tenant)
        self.dead_letter_topic = cfg.kafka.dead_letter_topic_name(cfg.tenant)
        self.publisher: TransactionalPublisher | None = None
        self.streams: dict[str, EntityStream] = {}
        self._start_positions: dict[str, Position] = {}
        self._topics_ready = False
        self.wires: dict[str, EntityWire] = {}  # Confluent framing per entity, set at start
        self.drift = DriftWatch(cfg, self.engine, self.meters, self.schemas, self.queries)
        self._failures = 0  # consecutive transient failures, for the backoff
        self.isolation = EntityBackoff(cfg.tenant, cfg.retry, self.meters, self.health)
        self._sizes = MessageLimits()  # read from the topics at start
        self.heartbeats = Heartbeats(
            cfg.tenant, self.meters, self.watermark_topic, cfg.source.timezone
        )
        self.backfill: Backfiller | None = None  # pending backfills, interleaved with batches
        self.observer: RunObserver | None = None
        self.once_goal: OnceGoal | None = None  # run --once: the start time to read up to

    # -- the loop ---------------------------------------------------------------------------

    def run(self, once: bool = False, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> None:
        """Poll until stopped; with `once`, until every entity has read everything committed
        before the run started (waiting up to `max_wait_s` for open transactions, see once.py)."""
        self.once_goal = OnceGoal(self.tenant, max_wait_s) if once else None
        try:
            while not self.stop.is_set():
                try:
                    self._connect()
                    self._turn()
                    self._failures = 0
                except TransientError as exc:
                    self._failures += 1
                    self._recover(exc, self._failures)
                    continue
                if (
                    self.once_goal is not None
                    and self.backfill is None
                    and all(s.caught_up for s in self.streams.values())
                ):
                    if self.once_goal.done(self.streams):
                        return
                    for s in self.streams.values():  # waiting on open transactions: ask often
                        s.next_poll_at = min(s.next_poll_at, time.monotonic() + ONCE_RECHECK_S)
                self._sleep_until_due()
        finally:
            self.close()

    def _turn(self) -> None:
        self.drift.check_due()
        for stream in self.streams.values():
            if self.stop.is_set():
                return
            if stream.next_poll_at <= time.monotonic():
                self._drain_isolated(stream)
            if self.heartbeats.beat_if_due(stream, self.readers[stream.name], self._publisher()):
                self._kafka_ok(True)
        if self.backfill is not None and not self.stop.is_set() and not self.backfill.step():
            self.backfill.close()
            self.backfill = None

    def _drain_isolated(self, s: EntityStream) -> None:
        """Drain one entity; a failed read backs off this entity only (see isolation.py)."""
        before = s.rows_total
        try:
            self._drain(s)
        except SchemaMismatchError as exc:  # e.g. a column dropped: name it, stop (exit 8)
            raise self.drift.explain(exc) from exc
        except SourceError as exc:
            if self.publisher is not None and self.publisher.in_transaction:
                raise  # cannot happen while reading; the tenant-wide recovery cleans up
            delay = self.isolation.failed(s.name, exc, progressed=s.rows_total != before)
            s.caught_up = False
            s.next_poll_at = time.monotonic() + delay
            return
        self.isolation.succeeded(s.name)

    def _drain(self, s: EntityStream) -> None:
        """Publish batches of one entity until it is caught up or has had its turn."""
        size = s.cfg.batch_size
        meters = self.meters.entity(s.name)

        def fetched(seconds: float, batch: Batch) -> None:
            # counted in the reading thread, when the database served the rows (what
            # max_rows_per_second caps), not when the loop gets round to them
            meters.batch_fetched(len(batch.rows), seconds)

        prefetch = Prefetcher(
            self._fetch[s.name],
            s.position,
            size,
            MAX_BATCHES_PER_TURN,
            on_fetch=fetched,
            busy=self._busy[s.name],
            what=f"entity {s.name!r}",
        )
        last_len = size
        try:
            for batch in prefetch:
                self._database_ok(True)
                if batch.rows:
                    ensure_progress(s.name, s.position, batch, size)
                    self._commit(s, batch)
                self._progress(s, batch)
                last_len = len(batch.rows)
                if self.stop.is_set():
                    break
        except SourceError:
            self._database_ok(False)
            raise
        finally:
            if not prefetch.stop():
                log.warning(
                    "entity %r: a read is still running after 60 s; the entity's next read "
                    "waits for it",
                    s.name,
                    extra={"tenant": self.tenant, "entity": s.name},
                )
        s.caught_up = last_len < size
        s.next_poll_at = time.monotonic() + (s.cfg.poll_interval_s if s.caught_up else 0)
        if s.caught_up and self.observer is not None:
            self.observer.caught_up(s.name)

    def _commit(self, s: EntityStream, batch: Batch) -> None:
        """One Kafka transaction: the batch's rows plus its watermark, or nothing."""
        pub, meters = self._publisher(), self.meters.entity(s.name)
        t0 = time.perf_counter()
        pub.begin()
        try:
            outcome = publish_batch(s, batch, pub, self.watermark_topic, self.dead_letter_topic)
        except BaseException:
            try:
                pub.abort()
            except ProducerFailedError as abort_error:  # the first error says what happened
                log.warning("%s", abort_error, extra={"tenant": self.tenant, "entity": s.name})
            meters.batch_aborted()
            raise
        t1 = time.perf_counter()
        try:
            pub.commit()
        except PollerError:
            meters.batch_aborted()
            raise
        meters.batch_committed(
            outcome.published, outcome.dead_lettered, t1 - t0, time.perf_counter() - t1
        )
        s.position = outcome.position
        s.rows_total += outcome.published + outcome.dead_lettered
        self._failures = 0  # progress was made: the next outage backs off from the start
        self._kafka_ok(True)
        if self.observer is not None:
            self.observer.committed(s.name, outcome.published + outcome.dead_lettered)
        if outcome.error is not None:
            meters.bad_row()
            self.health.last_batch_ok = False
            raise outcome.error

    def _progress(self, s: EntityStream, batch: Batch) -> None:
        self.health.last_batch_ok = True
        if self.once_goal is not None:
            self.once_goal.saw(s.name, batch)
        caught_up = len(batch.rows) < s.cfg.batch_size
        if caught_up:
            self.heartbeats.read_to(s.name, batch.safe_at)
        value = cursor_number(s.position.cursor, s.tz)
        lag: float | None = None
        if caught_up:
            # Everything below the read bound is read: the lag is how far open transactions
            # hold the bound behind now - settle (0 without any).
            lag = batch.holdback_s
        elif s.cfg.is_time_mode and batch.db_now is not None and value is not None:
            now = cursor_number(batch.db_now, s.tz)
            if now is not None:
                lag = max(0.0, now - value)
        active = self.readers[s.name].horizon_active
        self.meters.entity(s.name).batch_read(batch.holdback_s, active, value, lag)

    def _sleep_until_due(self) -> None:
        if self.backfill is not None:
            return  # a pending backfill takes the idle time
        due = min((s.next_poll_at for s in self.streams.values()), default=time.monotonic())
        beat = self.heartbeats.next_due(self.streams.values())
        due = due if beat is None else min(due, beat)
        self.stop.wait(max(0.0, due - time.monotonic()))

    # -- connecting and recovering -------------------------------------------------------------

    def _publisher(self) -> TransactionalPublisher:
        assert self.publisher is not None
        return self.publisher

    def _connect(self) -> None:
        """(Re)start the producer, then read the committed watermarks: after any Kafka trouble
        only the topic knows which transactions committed."""
        if self.publisher is not None:
            return
        k = self.cfg.kafka
        first = not self._topics_ready
        if first:
            with self.limits.query():
                preflight(self.cfg, self.engine)  # with the Kafka ACL check (exit 5)
                start_checks(self.cfg, self.engine, self.access, self.queries, self.meters)
            ensure_topics(k, wanted_topics(self.cfg))
            self._sizes = read_limits(k, list(wanted_topics(self.cfg)))
        pub = TransactionalPublisher(
            k,
            self.cfg.transactional_id(),
            stats_cb=self.meters.producer_stats,
            max_batch_bytes=self._sizes.batch_bytes if self._sizes.per_topic else None,
        )
        try:
            pub.start()  # fences an older poller of this tenant, aborts its open transaction
            if first:  # schemas only once Kafka accepted the transactional id (issue 17)
                with self.limits.query():
                    # Confluent format: schema ids fixed once, before anything is written.
                    self.wires = register_entities(
                        self.cfg, self.schemas, self.engine, self.queries
                    )
                self._topics_ready = True
            # Waits for this tenant's live watermarks only: a backfill's state is read again
            # by the Backfiller once it has fenced the backfill transactional.id.
            everything = load_all(k, self.watermark_topic, self.tenant, wait_for=live_key)
        except BaseException:
            pub.close()
            raise
        self.publisher = pub
        self._kafka_ok(True)
        stored = everything.watermarks
        stored_mismatches(self.cfg, stored, self.config_path)
        enabled = self.cfg.enabled_entities()
        if self.backfill is None and (
            any(not b.done and name in enabled for name, b in everything.backfills.items())
            or any(name in enabled for name in everything.unsettled_backfills)
        ):
            self.backfill = Backfiller(
                self.cfg,
                self.engine,
                self.schemas,
                self.wires,
                limits=self._sizes,
                isolate=True,
                source_limits=self.limits,  # one cap for the tenant's live and backfill reads
            )
        for name, ent in self.cfg.enabled_entities().items():
            if name not in stored and name not in self._start_positions:
                self._start_positions[name] = self._start_position(name, ent)
        previous = self.streams
        self.streams = make_streams(
            self.cfg, self.schemas, stored, self._start_positions, self.wires
        )
        for name, s in self.streams.items():
            s.max_value_bytes = self._sizes.per_topic.get(s.topic, NO_LIMIT)
            s.compression = self._sizes.compression
            s.dead_letter_max_bytes = self._sizes.per_topic.get(self.dead_letter_topic, NO_LIMIT)
            s.position = fit_position(s.position, self.readers[name], self.cfg.source.timezone)
            if name in previous:
                s.next_poll_at = previous[name].next_poll_at
            log.info(
                "%s/%s resumes after %s (%d rows so far)",
                self.tenant,
                name,
                s.position,
                s.rows_total,
                extra={"tenant": self.tenant, "entity": name},
            )
        native.attach(
            self.streams, self.readers, self.engine.dialect.name, self.engine.dialect.driver,
            self.meters,
        )  # fmt: skip
        self.heartbeats.start(self.streams)
        if self.observer is not None:
            self.observer.started(self)

    def _start_position(self, name: str, ent: EntityConfig) -> Position:
        start = ent.start
        if start == "earliest":
            return Position(None, None)
        if start == "now":
            with self.limits.query():
                return Position(self.readers[name].max_cursor(), None)
        return Position(parse_cursor(str(start), ent.batching.mode), None)

    def _recover(self, exc: TransientError, failures: int) -> None:
        r = self.cfg.retry
        if r.max_attempts and failures > r.max_attempts:
            raise TerminalError(f"giving up after {failures - 1} retries: {exc}") from exc
        delay = min(r.max_backoff_s, r.initial_backoff_s * 2 ** (failures - 1))
        kind = type(exc).__name__
        self.meters.retrying(kind)
        self.health.last_batch_ok = False
        log.warning(
            "%s: %s; retry %d in %.1fs from the last committed watermark",
            kind,
            exc,
            failures,
            delay,
            extra={"tenant": self.tenant},
        )
        if isinstance(exc, SourceError):
            self._database_ok(False)
            if self.publisher is not None and (
                self.publisher.in_transaction or self.publisher.failed
            ):
                self._drop_publisher()
        else:
            self._kafka_ok(False)
            self._drop_publisher()
        self.stop.wait(delay)

    def _drop_publisher(self) -> None:
        if self.publisher is not None:
            try:
                self.publisher.close()
            except PollerError as exc:
                log.warning("closing the producer: %s", exc)
            self.publisher = None

    def _database_ok(self, ok: bool) -> None:
        self.health.database_ok = ok
        self.meters.database_up(ok)

    def _kafka_ok(self, ok: bool) -> None:
        self.health.kafka_ok = ok
        self.meters.kafka_up(ok)

    def close(self) -> None:
        self._drop_publisher()
        if self.backfill is not None:
            self.backfill.close()
        for reader in self.readers.values():
            reader.close()
        self.engine.dispose()
        self.limits.close()


def _batch_rows(batch: Batch) -> int:
    return len(batch.rows)


def parse_cursor(text: str, mode: Mode) -> object:
    """A cursor typed by the operator (config `start`, `offsets reset --to`)."""
    if mode is Mode.ID:
        try:
            return int(text)
        except ValueError as exc:
            raise TerminalError(f"{text!r} is not an integer id") from exc
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise TerminalError(f"{text!r} is not an ISO-8601 timestamp") from exc
