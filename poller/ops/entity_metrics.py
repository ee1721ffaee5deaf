"""The run loop's metrics as intents, bound once per tenant and per (tenant, entity), as Kafka
Connect's `recordPoll`/`recordWrite`: the pipeline says what happened (`batch_committed`,
`read_failed`...), this module knows which series that moves.

Label children are bound at construction (`.labels()` takes a lock and hashes the labels on
every call), so a batch costs a few attribute reads. The children bound eagerly are exactly the
series `Metrics.init_labels` creates up front; the others (watermark, lag, caught-up time, the
native batch counter, database/Kafka up) are bound on first use, so no series appears earlier
than it did with inline `.labels()` calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import cached_property

from prometheus_client import Counter, Gauge, Histogram

from poller.ops.metrics import TENANT_ERROR_KINDS, Metrics


class TenantMetrics:
    """One tenant's run-loop metrics; `entity(name)` gives each entity's."""

    def __init__(
        self,
        metrics: Metrics,
        tenant: str,
        entities: Iterable[str],
        started_at: float | None = None,
    ) -> None:
        names = list(entities)
        metrics.init_labels(tenant, names, started_at)
        self.metrics, self.tenant = metrics, tenant
        m = metrics
        self._retries = m.retries.labels(tenant, "")
        self._errors = {kind: m.errors.labels(tenant, "", kind) for kind in TENANT_ERROR_KINDS}
        self.committed: Counter = m.transactions.labels(tenant, "committed")
        self.aborted: Counter = m.transactions.labels(tenant, "aborted")
        self._entities = {name: EntityMetrics(self, name) for name in names}

    def entity(self, name: str) -> EntityMetrics:
        return self._entities[name]

    @cached_property
    def _db_up(self) -> Gauge:
        return self.metrics.db_up.labels(self.tenant)

    @cached_property
    def _kafka_up(self) -> Gauge:
        return self.metrics.kafka_up.labels(self.tenant)

    def retrying(self, kind: str) -> None:
        """A transient error of the whole tenant (`kind`: its class name); it retries."""
        errors = self._errors.get(kind)
        (self.metrics.errors.labels(self.tenant, "", kind) if errors is None else errors).inc()
        self._retries.inc()

    def database_up(self, ok: bool) -> None:
        self._db_up.set(1 if ok else 0)

    def kafka_up(self, ok: bool) -> None:
        self._kafka_up.set(1 if ok else 0)

    def producer_stats(self, stats_json: str) -> None:
        """librdkafka's statistics callback (queue depth, produce latency)."""
        self.metrics.on_stats(self.tenant, stats_json)

    def running_as(self, transactional_id: str) -> None:
        """Which poller this is (what `poller status` asks the endpoint)."""
        self.metrics.instance.info({"tenant": self.tenant, "transactional_id": transactional_id})


class EntityMetrics:
    """One (tenant, entity)'s metrics."""

    def __init__(self, tenant: TenantMetrics, entity: str) -> None:
        m, te = tenant.metrics, (tenant.tenant, entity)
        self._m, self._te = m, te
        self._tx_committed, self._tx_aborted = tenant.committed, tenant.aborted
        self._rows_read = m.rows_read.labels(*te)
        self._rows_published = m.rows_published.labels(*te)
        self._rows_dead_lettered = m.rows_dead_lettered.labels(*te)
        self._batches = m.batches.labels(*te)
        self._fetch: Histogram = m.phase_seconds.labels(*te, "fetch")
        self._encode: Histogram = m.phase_seconds.labels(*te, "encode")
        self._commit: Histogram = m.phase_seconds.labels(*te, "commit")
        self._bad_row = m.errors.labels(*te, "bad_row")
        self._source_errors = m.errors.labels(*te, "SourceError")
        self._retries = m.retries.labels(*te)
        self._failures = m.entity_failures.labels(*te)
        self._last_success = m.last_success.labels(*te)
        self._heartbeat = m.heartbeat.labels(*te)
        self._holdback = m.horizon_holdback.labels(*te)
        self._horizon_active = m.horizon_active.labels(*te)
        self._drift = m.schema_drift.labels(*te)
        self._null_cursor_rows = m.null_cursor_rows.labels(*te)

    @cached_property
    def _watermark(self) -> Gauge:
        return self._m.watermark_value.labels(*self._te)

    @cached_property
    def _lag(self) -> Gauge:
        return self._m.lag_seconds.labels(*self._te)

    @cached_property
    def _caught_up(self) -> Gauge:
        return self._m.caught_up.labels(*self._te)

    @cached_property
    def _native_batches(self) -> Counter:
        return self._m.native_batches.labels(*self._te)

    # -- the batch path ---------------------------------------------------------------------

    def batch_fetched(self, rows: int, seconds: float) -> None:
        """The database served a batch (counted when read: what max_rows_per_second caps)."""
        self._fetch.observe(seconds)
        self._rows_read.inc(rows)

    def batch_committed(
        self, published: int, dead_lettered: int, encode_s: float, commit_s: float
    ) -> None:
        """A batch's transaction committed: its rows and the new watermark are written."""
        self._encode.observe(encode_s)
        self._commit.observe(commit_s)
        self._tx_committed.inc()
        self._batches.inc()
        self._rows_published.inc(published)
        if dead_lettered:
            self._rows_dead_lettered.inc(dead_lettered)
        self._heartbeat.set(time.time())  # the watermark was rewritten: the entity is alive

    def batch_aborted(self) -> None:
        """A batch's transaction was aborted (or its commit failed): nothing was written."""
        self._tx_aborted.inc()

    def bad_row(self) -> None:
        """A row could not be published (the batch before it was committed)."""
        self._bad_row.inc()

    def batch_read(
        self,
        holdback_s: float,
        horizon_active: bool,
        watermark: float | None,
        lag_s: float | None,
    ) -> None:
        """A batch (maybe empty) was read and handled: the read bound's holdback, whether it
        waits for open transactions, the watermark as a number (None: not numeric) and the
        lag (None: not known, the gauge keeps its last value)."""
        self._last_success.set(time.time())
        self._holdback.set(holdback_s)
        self._horizon_active.set(1 if horizon_active else 0)
        if watermark is not None:
            self._watermark.set(watermark)
        if lag_s is not None:
            self._lag.set(lag_s)

    def heartbeat_written(self, caught_up_at: float) -> None:
        """An idle entity's heartbeat committed; `caught_up_at`: the read bound (Unix s)."""
        self._tx_committed.inc()
        self._heartbeat.set(time.time())
        self._caught_up.set(caught_up_at)

    # -- failures and checks --------------------------------------------------------------

    def read_failed(self, kind: str, failures: int) -> None:
        """A read failed (`kind`: the error's class name); the entity backs off on its own,
        `failures` attempts in a row so far."""
        if kind == "SourceError":
            self._source_errors.inc()
        else:
            self._m.errors.labels(*self._te, kind).inc()
        self._retries.inc()
        self._failures.set(failures)

    def reads_again(self) -> None:
        self._failures.set(0)

    def drift_found(self, problems: int) -> None:
        """The last check of the mapping against the source found `problems` (0: fits)."""
        self._drift.set(problems)

    def horizon_checked(self, active: bool) -> None:
        """Whether batches wait for open transactions (start-up probe)."""
        self._horizon_active.set(1 if active else 0)

    def null_cursors_skipped(self, rows: int) -> None:
        self._null_cursor_rows.set(rows)

    # -- the native PostgreSQL path -------------------------------------------------------

    def native_callbacks(self) -> tuple[Callable[[str], None], Callable[[], None]]:
        """(fallback(reason), batch()) for a native reader; its batch counter starts at 0."""
        counter = self._native_batches
        return self.native_fallback, counter.inc

    def native_fallback(self, reason: str) -> None:
        """A batch the native path handed to the Python path."""
        self._m.native_fallbacks.labels(*self._te, reason).inc()
