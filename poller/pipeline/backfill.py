"""Ranged backfill: publish a range of an entity's rows again, by cursor or by key, without
touching the live watermark.

Its progress lives in the watermark topic under the entity's backfill key and is committed in
the same transaction as the rows it covers, so a killed backfill resumes after its last
committed batch and never publishes a row of the range twice. All backfill transactions of a
tenant use one transactional.id, `<prefix>.<tenant>.backfill`: whoever runs a backfill (the
`poller backfill` command or a poller that started with one pending) fences any other runner
of the same tenant's backfills, never the live poller.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg2
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from poller.avro.schemas import EntitySchema, load_schema
from poller.batch import BEGINNING, Encoded, Position
from poller.config import AppConfig, Mode
from poller.errors import (
    BadRowError,
    BadValueError,
    ConfigError,
    FencedError,
    PollerError,
    SchemaMismatchError,
    SourceError,
    TransientError,
)
from poller.kafka import backfill_state
from poller.kafka.backfill_state import BackfillState
from poller.kafka.publisher import TransactionalPublisher
from poller.kafka.topics import ensure_topics, wanted_topics
from poller.pipeline.backfill_request import BackfillQuery, check_where, new_request, parse_bound
from poller.pipeline.native import native_spec
from poller.pipeline.sizes import NO_LIMIT, MessageLimits, check_size, read_limits
from poller.pipeline.stream import EntityStream, _dead_letter, epoch_ms
from poller.pipeline.wire import EntityWire, register_entities
from poller.source import native_pg
from poller.source.estimate import estimate_rows
from poller.source.keyset import ensure_progress
from poller.source.limits import SourceLimits
from poller.source.native_pg import NativeBatch, NativeReader
from poller.source.probe import prepare
from poller.source.query import EntityQuery
from poller.source.reader import _connection

__all__ = ["BackfillQuery", "Backfiller", "check_where", "new_request", "parse_bound"]

log = logging.getLogger(__name__)

BATCHES_PER_STEP = 10  # a running poller's turn: then the live streams are served again
# A running poller gives a backfill whose reads keep failing (transient by their look) this
# long before storing it as failed; the live entities have their own backoff.
GIVE_UP_S = 300.0


def transactional_id(cfg: AppConfig) -> str:
    return f"{cfg.transactional_id()}.backfill"


@dataclass
class Job:
    state: BackfillState
    stream: EntityStream
    query: BackfillQuery
    failing_since: float | None = None  # monotonic time of the first of consecutive failures
    retry_at: float = 0.0
    native: NativeReader | None = None  # PostgreSQL batches through COPY and the extension

    def position_after(self, row: Sequence[object]) -> Position:
        layout = self.stream.layout
        if self.state.by == "key":
            return Position(None, layout.message_key(row))
        return layout.position(row)


class Backfiller:
    """Runs a tenant's backfills with the tenant's backfill producer (see module doc)."""

    def __init__(
        self,
        cfg: AppConfig,
        engine: sa.Engine,
        schemas: dict[str, EntitySchema] | None = None,
        wires: dict[str, EntityWire] | None = None,
        on_batch: Callable[[str, int], None] | None = None,
        limits: MessageLimits | None = None,
        isolate: bool = False,
        source_limits: SourceLimits | None = None,
    ) -> None:
        self.cfg = cfg
        # The tenant's database limits (max_rows_per_second, max_concurrent_queries) hold for
        # the backfill's reads too: a cap a DBA sets is not bypassed by a backfill.
        self.source_limits = source_limits
        self.engine = engine
        self.schemas = schemas or {n: load_schema(n) for n in cfg.enabled_entities()}
        self.wires = wires  # the live poller's Confluent framing; None: register here
        self.on_batch = on_batch
        self.watermark_topic = cfg.kafka.watermark_topic_name(cfg.tenant)
        self.dead_letter_topic = cfg.kafka.dead_letter_topic_name(cfg.tenant)
        self.tz = zoneinfo.ZoneInfo(cfg.source.timezone)
        self.publisher: TransactionalPublisher | None = None
        self.jobs: dict[str, Job] = {}
        self.states: dict[str, BackfillState] = {}  # every stored state, done ones too
        self.fenced: FencedError | None = None  # another runner took the backfills over
        self.limits = limits  # the topics' message sizes (read at connect when None)
        # A running poller replays pending backfills: one that fails (a bad row, a condition
        # the database refuses) is marked failed with its cause and the live loop goes on.
        self.isolate = isolate

    # -- set-up -----------------------------------------------------------------------------

    def connect(self) -> None:
        """Register the backfill transactional.id (fencing any other runner and aborting its
        open transaction), then read the committed states: only now are they final."""
        if self.publisher is not None:
            return
        topic = self.watermark_topic
        topics = wanted_topics(self.cfg)
        ensure_topics(self.cfg.kafka, topics)  # the entity topics too
        if self.limits is None:
            self.limits = read_limits(self.cfg.kafka, list(topics))
        limits = self.limits
        pub = TransactionalPublisher(
            self.cfg.kafka,
            transactional_id(self.cfg),
            max_batch_bytes=limits.batch_bytes if limits.per_topic else None,
        )
        try:
            pub.start()
            stored = backfill_state.load_all(
                self.cfg.kafka, topic, self.cfg.tenant, wait_for=backfill_state.backfill_key
            )
        except BaseException:
            pub.close()
            raise
        self.publisher = pub
        self.states = dict(stored.backfills)
        if self.wires is None:  # the same framing as the live messages (Confluent format)
            self.wires = register_entities(self.cfg, self.schemas, self.engine, self._queries())
        self.jobs = {}
        for name, state in stored.backfills.items():
            if state.done or name not in self.cfg.enabled_entities():
                continue
            try:
                self.jobs[name] = self._job(state)
            except (TransientError, FencedError):
                raise
            except Exception as exc:  # a stored request that cannot run: fails alone
                self._fail(state, exc)

    def _query(self, name: str) -> EntityQuery:
        return EntityQuery(
            self.cfg.entities[name], self.cfg.source, self.cfg.tenant,
            self.schemas[name].field_names, self.engine.dialect, name=name,
        )  # fmt: skip

    def _queries(self) -> dict[str, EntityQuery]:
        return {name: self._query(name) for name in self.cfg.enabled_entities()}

    def _job(self, state: BackfillState) -> Job:
        name = state.entity
        ent = self.cfg.entities[name]
        schema = self.schemas[name]
        query = self._query(name)
        with _connection(self.engine, f"backfill of {name!r}", self.cfg.source) as conn:
            prepare(conn, query, ent)  # the live reader's cursor type and typed binds
        stream = EntityStream(
            name=name,
            cfg=ent,
            schema=schema,
            topic=self.cfg.kafka.topic_for(name, self.cfg.tenant),
            tenant=self.cfg.tenant,
            tz=self.tz,
            position=BEGINNING,
            wire=(self.wires or {}).get(name),
        )
        limits = self.limits or MessageLimits()
        stream.max_value_bytes = limits.per_topic.get(stream.topic, NO_LIMIT)
        stream.compression = limits.compression
        stream.dead_letter_max_bytes = limits.per_topic.get(self.dead_letter_topic, NO_LIMIT)
        return Job(
            state, stream, BackfillQuery(query, ent, state), native=self._native(stream, state)
        )

    def _native(self, stream: EntityStream, state: BackfillState) -> NativeReader | None:
        """The live native path's reader for the range's batches, where it applies: its last
        position is the batch's cursor and tie-breaker, so a range by key needs the message key
        to be the tie-breaker."""
        dialect = self.engine.dialect
        if dialect.name != "postgresql" or dialect.driver != "psycopg2":
            return None
        if not native_pg.available():
            return None
        layout = stream.layout
        if state.by == "key" and (layout.n_rowkey or layout.n_tiebreak != 1):
            return None
        return NativeReader(native_spec(stream), f"backfill of {stream.name!r}", lambda _: None)

    def _test(self, job: Job) -> None:
        """Run the request's statement with `AND 1=0` before storing it: a condition the
        database refuses fails here, on the command line, not in a running poller."""
        stmt, params = job.query.probe()
        try:
            with _connection(
                self.engine, f"backfill of {job.state.entity!r}", self.cfg.source
            ) as c:
                c.execute(stmt, params).close()
        except SchemaMismatchError as exc:  # the database refuses the condition: a usage error
            if job.state.where is None:
                raise
            raise ConfigError(
                [f"--where {job.state.where!r}: the database refuses it: {exc}"]
            ) from exc

    def submit(self, request: BackfillState, replace: bool = False) -> BackfillState:
        """Store a new request, or return the pending one when it is the same request (a
        resumed backfill). A different pending request is an error unless `replace`."""
        self.connect()
        pending = self.jobs.get(request.entity)
        if pending is not None and pending.state.same_request(request):
            return pending.state
        if pending is not None and not replace:
            st = pending.state
            raise ConfigError(
                [
                    f"--entity {request.entity}: a backfill is pending ({st.describe()}, "
                    f"{st.rows} rows done); run the same command to resume it, or add "
                    "--replace to abandon it"
                ]
            )
        failed = self.states.get(request.entity)
        if failed is not None and failed.error and failed.same_request(request):
            request = dataclasses.replace(
                failed, done=False, error=None
            )  # resumes after its last batch
        job = self._job(request)
        self._test(job)
        self._commit_state(request)
        self.jobs[request.entity] = job
        return request

    # -- running ----------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(self.jobs)

    def step(self, max_batches: int = BATCHES_PER_STEP) -> bool:
        """Publish up to `max_batches` batches of each pending backfill; True while any is
        left. A fenced producer (another runner took over) drops the jobs here. A backfill
        that fails is marked failed in the topic with its cause; with `isolate` (a running
        poller) the error stops there, else it is raised."""
        try:
            self.connect()
            for name in list(self.jobs):
                job = self.jobs[name]
                if self.isolate and time.monotonic() < job.retry_at:
                    continue
                try:
                    for _ in range(max_batches):
                        if self._batch(job):
                            del self.jobs[name]
                            break
                    job.failing_since = None
                except SourceError as exc:
                    if not self.isolate:
                        raise
                    self._source_failed(job, exc)
                except (TransientError, FencedError):
                    raise
                except Exception as exc:
                    self.jobs.pop(name, None)
                    self._fail(job.state, exc)
                    if not self.isolate:
                        raise
        except FencedError as exc:
            log.warning("backfills of tenant %s: %s; leaving them to it", self.cfg.tenant, exc)
            self.fenced = exc
            self.jobs.clear()
            self.close()
        except TransientError as exc:
            # The commit's outcome may be unknown: reconnect and re-read the states first.
            self.close()
            if not self.isolate:
                raise
            log.warning("backfills of tenant %s: %s; trying again next turn", self.cfg.tenant, exc)
            return True
        return self.pending

    def _source_failed(self, job: Job, exc: SourceError) -> None:
        """A read of a running poller's backfill failed: try again later, alone; give up
        (stored as failed) when it keeps failing for GIVE_UP_S."""
        now = time.monotonic()
        job.failing_since = job.failing_since or now
        if now - job.failing_since >= GIVE_UP_S:
            self.jobs.pop(job.state.entity, None)
            self._fail(job.state, exc)
            return
        job.retry_at = now + self.cfg.retry.max_backoff_s
        log.warning(
            "backfill of %s: %s; trying again in %.0fs", job.state.describe(), exc,
            self.cfg.retry.max_backoff_s, extra={"tenant": self.cfg.tenant},
        )  # fmt: skip

    def _fail(self, state: BackfillState, exc: BaseException) -> None:
        """Store the backfill as failed with its cause (`poller status` shows it)."""
        if isinstance(exc, ConfigError):
            cause = "; ".join(exc.problems)
        else:
            cause = " ".join(line.strip() for line in str(exc).splitlines()) or "(no message)"
        failed = state.failed(f"{type(exc).__name__}: {cause}")
        log.error(
            "backfill of %s failed after %d rows: %s", state.describe(), state.rows, failed.error,
            extra={"tenant": self.cfg.tenant, "entity": state.entity},
        )  # fmt: skip
        self._commit_state(failed)

    def estimate(self, entity: str) -> int | None:
        """Rows of the pending backfill still to publish, estimated (for a progress bar)."""
        job = self.jobs.get(entity)
        if job is None:
            return None
        stmt, params = job.query.statement(job.state.position)
        left = estimate_rows(self.engine, job.query.q, stmt, params)
        return None if left is None else job.state.rows + left

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Until every pending backfill is done (the `poller backfill` command)."""
        while self.pending and not should_stop():
            self.step(1)

    def _fetch(self, job: Job) -> list[Sequence[object]] | NativeBatch:
        if self.source_limits is None:
            return self._read(job)
        return self.source_limits.fetcher(self._read, _count)(job)

    def _read(self, job: Job) -> list[Sequence[object]] | NativeBatch:
        stmt, params = job.query.statement(job.state.position)
        what = f"backfill of {job.state.entity!r}"
        with _connection(self.engine, what, self.cfg.source) as c:
            try:
                if job.native is not None:
                    state = stmt.compile(dialect=self.engine.dialect).construct_expanded_state(
                        params
                    )
                    dbapi_conn = c.connection.dbapi_connection
                    assert dbapi_conn is not None  # an open Connection always has one
                    got = job.native.read(dbapi_conn, state.statement, state.parameters)
                    if got is not None:
                        return got  # else the Python path reads (and decides) the batch
                return [tuple(row) for row in c.execute(stmt, params)]
            except (sa_exc.DataError, psycopg2.DataError) as exc:  # the range cannot take it
                orig = getattr(exc, "orig", exc)
                raise SchemaMismatchError(
                    f"{what}: the database refuses a value of the range ({orig}); fix the "
                    "--where condition or the row"
                ) from exc

    def _batch(self, job: Job) -> bool:
        """One transaction: a batch of the range plus the backfill's new state. True: done."""
        got = self._fetch(job)
        size = job.stream.cfg.batch_size
        n = _count(got)
        position = job.state.position
        if isinstance(got, NativeBatch):
            if got.last is not None:  # the last row's cursor and tie-breaker (the key by key)
                position = Position(None, got.last.key) if job.state.by == "key" else got.last
        elif got:
            position = job.position_after(got[-1])
        what = f"backfill of {job.state.entity!r}"
        ensure_progress(what, job.state.position, position if n else None, n, size)
        new = job.state.advanced(position, n, done=n < size)
        pub = self.publisher
        assert pub is not None
        pub.begin()
        try:
            if isinstance(got, NativeBatch):
                self._send_encoded(job, got.encoded, pub)
            else:
                self._send_rows(job, got, pub)
            self._send_state(new, pub)
        except BaseException:
            pub.abort()
            raise
        pub.commit()
        job.state = self.states[new.entity] = new
        if self.on_batch is not None and n:
            self.on_batch(new.entity, n)
        if new.done:
            log.info("backfill of %s done: %d rows published again", new.describe(), new.rows)
        return new.done

    def _send_rows(
        self, job: Job, rows: list[Sequence[object]], pub: TransactionalPublisher
    ) -> None:
        """As the live batch does (`stream.publish_batch`): a soft-deleted row becomes a
        tombstone, a bad row fails the backfill or goes to the dead-letter topic."""
        s, layout = job.stream, job.stream.layout
        n = s.n_fields
        time_mode = s.cfg.batching.mode is not Mode.ID
        value: bytes | None
        for row in rows:
            key = layout.message_key(row)
            if s.is_deleted is not None and s.is_deleted(row[layout.deleted_at]):
                value = None
            else:
                try:
                    value = s.encoder(row[:n])
                    if len(value) > s.max_value_bytes:  # the broker would refuse the commit
                        check_size(value, s.topic, s.max_value_bytes, s.compression)
                except BadValueError as exc:
                    if s.cfg.on_bad_row == "fail":
                        raise BadRowError(s.tenant, s.name, key, exc) from exc
                    payload = _dead_letter(s, row, key, exc)
                    pub.send(self.dead_letter_topic, s.json_key(key), payload, s.headers)
                    continue
            ts = epoch_ms(row[n], s.tz) if time_mode else 0
            pub.send(s.topic, s.message_key(key), value, s.headers, ts)
        pub.poll()

    def _send_encoded(self, job: Job, enc: Encoded, pub: TransactionalPublisher) -> None:
        """The native path's messages, as `_send_rows` would send them (no bad or soft-deleted
        row gets here: such a batch is the Python path's)."""
        s = job.stream
        stamps = enc.stamps if enc.stamps is not None else [0] * len(enc.values)
        for value, key, ts in zip(enc.values, enc.keys, stamps, strict=True):
            pub.send(s.topic, key, value, s.headers, ts)
        pub.poll()

    def _send_state(self, state: BackfillState, pub: TransactionalPublisher) -> None:
        key = backfill_state.key_bytes(state.tenant, state.entity)
        pub.send(self.watermark_topic, key, backfill_state.encode(state))

    def _commit_state(self, state: BackfillState) -> None:
        pub = self.publisher
        assert pub is not None
        pub.begin()
        try:
            self._send_state(state, pub)
        except BaseException:
            pub.abort()
            raise
        pub.commit()
        self.states[state.entity] = state

    def close(self) -> None:
        if self.publisher is not None:
            try:
                self.publisher.close()
            except PollerError as exc:
                log.warning("closing the backfill producer: %s", exc)
            self.publisher = None


def _count(got: list[Sequence[object]] | NativeBatch) -> int:
    return got.rows if isinstance(got, NativeBatch) else len(got)
