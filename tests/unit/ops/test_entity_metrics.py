"""The run loop's metric intents (poller.ops.entity_metrics): each moves exactly the series the
inline `.labels()` lines it replaced moved, with the same labels and values, and creates no
series earlier than they did."""

from __future__ import annotations

import json

import pytest
from prometheus_client import generate_latest

import poller.ops.entity_metrics as entity_metrics
from poller.ops.entity_metrics import TenantMetrics
from poller.ops.metrics import Metrics

TE = {"tenant": "acme", "entity": "customers"}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_700_000_000.0]
    monkeypatch.setattr(entity_metrics.time, "time", lambda: now[0])
    return now


def meters(started_at: float = 1000.0) -> TenantMetrics:
    return TenantMetrics(Metrics(), "acme", ["customers", "receipts"], started_at=started_at)


def value(t: TenantMetrics, name: str, **labels: str) -> float | None:
    return t.metrics.registry.get_sample_value(name, {**TE, **labels})


def series(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample but the *_created ones (they carry each child's creation time)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in m.registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_binding_creates_exactly_the_series_init_labels_creates() -> None:
    """Bound children are the up-front series; nothing lazily bound shows before its first
    value (a gauge at 0 would claim a watermark or lag that is not known)."""
    reference = Metrics()
    reference.init_labels("acme", ["customers", "receipts"], started_at=1000.0)
    t = meters(1000.0)
    assert series(t.metrics) == series(reference)
    names = {name for name, _ in series(t.metrics)}
    for lazy in (
        "poller_watermark_value",
        "poller_watermark_lag_seconds",
        "poller_caught_up_timestamp_seconds",
        "poller_native_batches_total",
        "poller_database_up",
        "poller_kafka_up",
    ):
        assert lazy not in names, lazy


def test_batch_fetched_and_committed(clock: list[float]) -> None:
    t = meters()
    e = t.entity("customers")
    e.batch_fetched(500, 0.02)
    e.batch_committed(498, 2, 0.3, 0.04)
    e.batch_committed(10, 0, 0.01, 0.02)
    assert value(t, "poller_rows_read_total") == 500
    assert value(t, "poller_rows_published_total") == 508
    assert value(t, "poller_rows_dead_lettered_total") == 2
    assert value(t, "poller_batches_total") == 2
    assert value(t, "poller_batch_phase_seconds_count", phase="fetch") == 1
    assert value(t, "poller_batch_phase_seconds_sum", phase="fetch") == pytest.approx(0.02)
    assert value(t, "poller_batch_phase_seconds_sum", phase="encode") == pytest.approx(0.31)
    assert value(t, "poller_batch_phase_seconds_sum", phase="commit") == pytest.approx(0.06)
    assert value(t, "poller_heartbeat_timestamp_seconds") == clock[0]
    committed = {"tenant": "acme", "outcome": "committed"}
    assert t.metrics.registry.get_sample_value("poller_transactions_total", committed) == 2
    # the other entity did not move
    other = {"tenant": "acme", "entity": "receipts"}
    assert t.metrics.registry.get_sample_value("poller_batches_total", other) == 0


def test_batch_aborted_and_bad_row() -> None:
    t = meters()
    e = t.entity("customers")
    e.batch_aborted()
    e.bad_row()
    aborted = {"tenant": "acme", "outcome": "aborted"}
    assert t.metrics.registry.get_sample_value("poller_transactions_total", aborted) == 1
    assert value(t, "poller_errors_total", kind="bad_row") == 1
    assert value(t, "poller_batches_total") == 0


def test_batch_read_sets_the_gauges_it_knows(clock: list[float]) -> None:
    t = meters()
    e = t.entity("customers")
    e.batch_read(holdback_s=0.0, horizon_active=True, watermark=None, lag_s=None)
    assert value(t, "poller_last_success_timestamp_seconds") == clock[0]
    assert value(t, "poller_horizon_active") == 1
    assert value(t, "poller_watermark_value") is None  # not known: no series
    assert value(t, "poller_watermark_lag_seconds") is None
    clock[0] += 5
    e.batch_read(holdback_s=12.5, horizon_active=False, watermark=42.0, lag_s=3.0)
    assert value(t, "poller_last_success_timestamp_seconds") == clock[0]
    assert value(t, "poller_horizon_holdback_seconds") == 12.5
    assert value(t, "poller_horizon_active") == 0
    assert value(t, "poller_watermark_value") == 42
    assert value(t, "poller_watermark_lag_seconds") == 3
    e.batch_read(holdback_s=0.0, horizon_active=False, watermark=None, lag_s=None)
    assert value(t, "poller_watermark_lag_seconds") == 3  # unknown now: the last value stays


def test_heartbeat_written(clock: list[float]) -> None:
    t = meters()
    t.entity("customers").heartbeat_written(1_699_999_990.0)
    assert value(t, "poller_heartbeat_timestamp_seconds") == clock[0]
    assert value(t, "poller_caught_up_timestamp_seconds") == 1_699_999_990.0
    committed = {"tenant": "acme", "outcome": "committed"}
    assert t.metrics.registry.get_sample_value("poller_transactions_total", committed) == 1


def test_read_failed_and_reads_again() -> None:
    t = meters()
    e = t.entity("customers")
    e.read_failed("SourceError", 1)
    e.read_failed("SourceError", 2)
    e.read_failed("StatementTimeoutError", 3)  # a kind not created up front
    assert value(t, "poller_errors_total", kind="SourceError") == 2
    assert value(t, "poller_errors_total", kind="StatementTimeoutError") == 1
    assert value(t, "poller_retries_total") == 3
    assert value(t, "poller_entity_consecutive_failures") == 3
    e.reads_again()
    assert value(t, "poller_entity_consecutive_failures") == 0


def test_tenant_wide_intents() -> None:
    t = meters()
    t.retrying("PublishError")
    t.retrying("SomethingNew")
    whole = {"tenant": "acme", "entity": ""}
    get = t.metrics.registry.get_sample_value
    assert get("poller_errors_total", {**whole, "kind": "PublishError"}) == 1
    assert get("poller_errors_total", {**whole, "kind": "SomethingNew"}) == 1
    assert get("poller_retries_total", whole) == 2
    t.database_up(True)
    t.kafka_up(False)
    assert get("poller_database_up", {"tenant": "acme"}) == 1
    assert get("poller_kafka_up", {"tenant": "acme"}) == 0
    t.running_as("poller-acme")
    info = {"tenant": "acme", "transactional_id": "poller-acme"}
    assert get("poller_instance_info", info) == 1
    t.producer_stats(json.dumps({"msg_cnt": 7}))
    assert get("poller_producer_queue_messages", {"tenant": "acme"}) == 7


def test_checks_drift_and_native_path() -> None:
    t = meters()
    e = t.entity("customers")
    e.drift_found(2)
    e.horizon_checked(True)
    e.null_cursors_skipped(9)
    assert value(t, "poller_schema_drift") == 2
    assert value(t, "poller_horizon_active") == 1
    assert value(t, "poller_null_cursor_rows") == 9
    fallback, served = e.native_callbacks()
    assert value(t, "poller_native_batches_total") == 0  # from the attach on, as before
    served()
    served()
    fallback("unsupported type")
    assert value(t, "poller_native_batches_total") == 2
    assert value(t, "poller_native_fallbacks_total", reason="unsupported type") == 1


def test_unknown_entity_is_an_error() -> None:
    with pytest.raises(KeyError):
        meters().entity("nope")


def test_same_exposition_as_the_inline_lines(clock: list[float]) -> None:
    """A batch's worth of intents against the inline lines they replaced (as the run loop had
    them): the /metrics text is byte for byte the same."""
    old = Metrics()
    old.init_labels("acme", ["customers"], started_at=1000.0)
    labels = ("acme", "customers")
    old.instance.info({"tenant": "acme", "transactional_id": "tid"})
    old.phase_seconds.labels(*labels, "fetch").observe(0.02)
    old.rows_read.labels(*labels).inc(100)
    old.phase_seconds.labels(*labels, "encode").observe(0.1)
    old.phase_seconds.labels(*labels, "commit").observe(0.05)
    old.transactions.labels("acme", "committed").inc()
    old.batches.labels(*labels).inc()
    old.rows_published.labels(*labels).inc(99)
    old.rows_dead_lettered.labels(*labels).inc(1)
    old.heartbeat.labels(*labels).set(clock[0])
    old.kafka_up.labels("acme").set(1)
    old.errors.labels(*labels, "bad_row").inc()
    old.last_success.labels(*labels).set(clock[0])
    old.horizon_holdback.labels(*labels).set(2.5)
    old.horizon_active.labels(*labels).set(1)
    old.watermark_value.labels(*labels).set(77)
    old.lag_seconds.labels(*labels).set(2.5)
    old.transactions.labels("acme", "aborted").inc()
    old.errors.labels("acme", "", "SourceError").inc()
    old.retries.labels("acme", "").inc()
    old.db_up.labels("acme").set(0)

    t = TenantMetrics(Metrics(), "acme", ["customers"], started_at=1000.0)
    t.running_as("tid")
    e = t.entity("customers")
    e.batch_fetched(100, 0.02)
    e.batch_committed(99, 1, 0.1, 0.05)
    t.kafka_up(True)
    e.bad_row()
    e.batch_read(2.5, True, 77, 2.5)
    e.batch_aborted()
    t.retrying("SourceError")
    t.database_up(False)

    def text(m: Metrics) -> list[str]:  # the *_created samples carry creation times
        lines = generate_latest(m.registry).decode().splitlines()
        return [line for line in lines if "_created{" not in line]

    assert text(t.metrics) == text(old)
