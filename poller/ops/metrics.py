"""Prometheus metrics. Labels are tenant and entity only (plus small fixed enums), so the
series count is bounded by configuration, never by data."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from poller import __version__

log = logging.getLogger(__name__)

PHASE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PHASES = ("fetch", "encode", "commit")
OUTCOMES = ("committed", "aborted")
# Error kinds the run loop counts for the whole tenant (entity=""): the transient errors it
# retries. Per entity it counts "bad_row". Other kinds still appear when they happen.
TENANT_ERROR_KINDS = ("SourceError", "PublishError", "BrokerUnavailableError")
LATENCY_STATS = ("int_latency_p99", "rtt_p99", "int_latency_avg", "rtt_avg")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        te = ("tenant", "entity")
        self.rows_read = Counter("poller_rows_read", "Rows read from the source", te, registry=r)
        self.rows_published = Counter(
            "poller_rows_published", "Rows published in committed transactions", te, registry=r
        )
        self.rows_dead_lettered = Counter(
            "poller_rows_dead_lettered", "Rows sent to the dead-letter topic", te, registry=r
        )
        self.batches = Counter("poller_batches", "Batches committed", te, registry=r)
        self.native_fallbacks = Counter(
            "poller_native_fallbacks",
            "Batches the native PostgreSQL path handed to the Python path, by reason",
            (*te, "reason"),
            registry=r,
        )
        self.native_batches = Counter(
            "poller_native_batches", "Batches read and encoded by the native path", te, registry=r
        )
        self.repaired = Counter(
            "poller_repair_messages",
            "Messages the delete reconciliation (repair_interval_s) committed, by action",
            (*te, "action"),
            registry=r,
        )
        self.transactions = Counter(
            "poller_transactions",
            "Kafka transactions by outcome",
            ("tenant", "outcome"),
            registry=r,
        )
        self.phase_seconds = Histogram(
            "poller_batch_phase_seconds",
            "Time per batch phase (fetch, encode, commit)",
            (*te, "phase"),
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.lag_seconds = Gauge(
            "poller_watermark_lag_seconds",
            "How far the read is behind: while catching up, database now minus the watermark's "
            "cursor time (timestamp modes); once caught up, how far open transactions hold the "
            "read bound back (poller_horizon_holdback_seconds; 0 without any)",
            te,
            registry=r,
        )
        self.watermark_value = Gauge(
            "poller_watermark_value",
            "The watermark cursor (id, or Unix seconds in timestamp modes)",
            te,
            registry=r,
        )
        self.last_success = Gauge(
            "poller_last_success_timestamp_seconds",
            "Unix time of the last committed batch or caught-up poll (the process start time "
            "until then)",
            te,
            registry=r,
        )
        self.heartbeat = Gauge(
            "poller_heartbeat_timestamp_seconds",
            "Unix time of the entity's last watermark write: a committed batch, or a heartbeat "
            "while idle (every heartbeat_interval_s); the process start time until then",
            te,
            registry=r,
        )
        self.caught_up = Gauge(
            "poller_caught_up_timestamp_seconds",
            "Database time (Unix seconds) up to which the entity's last heartbeat says every "
            "committed row (less the settle delay) was published: the read bound, held back by "
            "open transactions",
            te,
            registry=r,
        )
        self.horizon_holdback = Gauge(
            "poller_horizon_holdback_seconds",
            "How far open source transactions hold the read bound back: timestamp modes, "
            "seconds behind now - settle; id mode, how long the newest id has waited",
            te,
            registry=r,
        )
        self.horizon_active = Gauge(
            "poller_horizon_active",
            "1: batches wait for open transactions; 0: settle_delay_s only (no privilege)",
            te,
            registry=r,
        )
        self.null_cursor_rows = Gauge(
            "poller_null_cursor_rows",
            "Rows skipped because their cursor is NULL (null_cursor: skip), last counted",
            te,
            registry=r,
        )
        self.schema_drift = Gauge(
            "poller_schema_drift",
            "Problems the last check of the mapping found in the source (a mapped column "
            "dropped, renamed or retyped while running); above 0 the poller stops (exit 8)",
            te,
            registry=r,
        )
        self.errors = Counter(
            "poller_errors", "Errors by kind", ("tenant", "entity", "kind"), registry=r
        )
        self.retries = Counter("poller_retries", "Retries after transient errors", te, registry=r)
        self.entity_failures = Gauge(
            "poller_entity_consecutive_failures",
            "Failed attempts in a row of an entity that is backing off on its own (0: flowing)",
            te,
            registry=r,
        )
        self.producer_queue = Gauge(
            "poller_producer_queue_messages",
            "Messages waiting in librdkafka's queue",
            ("tenant",),
            registry=r,
        )
        self.delivery_latency = Gauge(
            "poller_producer_delivery_latency_seconds",
            "librdkafka produce latency (queue + broker round trip), from its statistics",
            ("tenant", "stat"),
            registry=r,
        )
        self.db_up = Gauge(
            "poller_database_up", "1 if the last database call worked", ("tenant",), registry=r
        )
        self.kafka_up = Gauge(
            "poller_kafka_up", "1 if the last Kafka call worked", ("tenant",), registry=r
        )
        self.instance = Info(
            "poller_instance",
            "Which poller this is: tenant and transactional.id (what `poller status` asks)",
            registry=r,
        )
        self.build = Info("poller_build", "Build information", registry=r)
        self.build.info({"version": __version__})

    def init_labels(
        self, tenant: str, entities: Iterable[str], started_at: float | None = None
    ) -> None:
        """Create the tenant's series up front: counters at 0 (so rate()/increase() count the
        first increment and alerts see it), and the last-success time at the process start
        (so a poller that never succeeds still goes stale)."""
        started = time.time() if started_at is None else started_at
        for entity in entities:
            labels = (tenant, entity)
            for counter in (
                self.rows_read,
                self.rows_published,
                self.rows_dead_lettered,
                self.batches,
                self.retries,
            ):
                counter.labels(*labels)
            self.errors.labels(*labels, "bad_row")
            for phase in PHASES:
                self.phase_seconds.labels(*labels, phase)
            self.last_success.labels(*labels).set(started)
            self.entity_failures.labels(*labels).set(0)
            self.errors.labels(*labels, "SourceError")
            self.heartbeat.labels(*labels).set(started)
            self.horizon_holdback.labels(*labels)
            self.horizon_active.labels(*labels)
            self.schema_drift.labels(*labels)
            self.null_cursor_rows.labels(*labels)
            for kind in ("tombstone", "republish"):
                self.repaired.labels(*labels, kind)
        for outcome in OUTCOMES:
            self.transactions.labels(tenant, outcome)
        for kind in TENANT_ERROR_KINDS:
            self.errors.labels(tenant, "", kind)
        self.retries.labels(tenant, "")

    def count_repairs(self, tenant: str) -> Callable[[str, int, int], None]:
        """A callback for the delete reconciliation: (entity, tombstones, re-published)."""

        def count(entity: str, tombstones: int, republished: int) -> None:
            self.repaired.labels(tenant, entity, "tombstone").inc(tombstones)
            self.repaired.labels(tenant, entity, "republish").inc(republished)

        return count

    def on_stats(self, tenant: str, stats_json: str) -> None:
        """librdkafka statistics callback: queue depth and latency (microseconds → seconds)."""
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        self.producer_queue.labels(tenant).set(stats.get("msg_cnt", 0))
        lat = dict.fromkeys(LATENCY_STATS, 0.0)
        for b in stats.get("brokers", {}).values():
            for name in ("int_latency", "rtt"):
                w = b.get(name) or {}
                lat[f"{name}_p99"] = max(lat[f"{name}_p99"], w.get("p99", 0) / 1e6)
                lat[f"{name}_avg"] = max(lat[f"{name}_avg"], w.get("avg", 0) / 1e6)
        for stat, v in lat.items():
            self.delivery_latency.labels(tenant, stat).set(v)


@dataclass
class Health:
    """What /readyz reports; the run loop keeps it current."""

    database_ok: bool = False
    kafka_ok: bool = False
    last_batch_ok: bool = True
    detail: str = ""
    # Entities backing off after failed reads: name -> error, failures, since, retry_in_s.
    # Replaced, never mutated, so the HTTP thread can read it without a lock.
    stuck: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.database_ok and self.kafka_ok and self.last_batch_ok and not self.stuck
