"""The dashboard's panels, row by row (poller/ops/dashboard.py lays them out as Grafana JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TE = 'tenant=~"$tenant", entity=~"$entity"'
T = 'tenant=~"$tenant"'
RI = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: list[tuple[str, str]]  # (expr, legend)
    unit: str = "none"
    kind: str = "timeseries"
    width: int = 12
    extra: dict[str, Any] = field(default_factory=dict)  # fieldConfig.defaults additions


UP_DOWN = {
    "min": 0,
    "max": 1,
    "mappings": [
        {
            "type": "value",
            "options": {
                "0": {"text": "DOWN", "color": "red", "index": 0},
                "1": {"text": "UP", "color": "green", "index": 1},
            },
        }
    ],
    "thresholds": {
        "mode": "absolute",
        "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
    },
}
ZERO_GOOD = {
    "thresholds": {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
    }
}


def quantiles(metric: str, by: str, selector: str) -> list[tuple[str, str]]:
    sel = f"{{{selector}}}" if selector else ""
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{sel}[{RI}])))",
            f"p{int(float(q) * 100)} {{{{{by}}}}}",
        )
        for q in ("0.5", "0.95", "0.99")
    ]


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Overview",
        [
            Panel(
                "Database / Kafka up",
                "1 if the poller's last call to the database / Kafka worked.",
                [
                    (f"min by (tenant) (poller_database_up{{{T}}})", "{{tenant}} database"),
                    (f"min by (tenant) (poller_kafka_up{{{T}}})", "{{tenant}} kafka"),
                ],
                kind="stat",
                width=6,
                extra=UP_DOWN,
            ),
            Panel(
                "Time since last success",
                "A: seconds since the last committed batch or caught-up poll. B: seconds since "
                "the last watermark write (a batch or a heartbeat); PollerStalled fires when B "
                "is above 15m.",
                [
                    (
                        "time() - max by (tenant, entity) "
                        f"(poller_last_success_timestamp_seconds{{{TE}}})",
                        "{{tenant}}/{{entity}}",
                    ),
                    (
                        "time() - max by (tenant, entity) "
                        f"(poller_heartbeat_timestamp_seconds{{{TE}}})",
                        "{{tenant}}/{{entity}} since watermark write",
                    ),
                ],
                unit="s",
                kind="stat",
                width=6,
            ),
            Panel(
                "Rows published / s (tenant)",
                "All selected entities together.",
                [
                    (
                        f"sum by (tenant) (rate(poller_rows_published_total{{{TE}}}[{RI}]))",
                        "{{tenant}}",
                    )
                ],
                unit="rowsps",
                kind="stat",
                width=4,
            ),
            Panel(
                "Entities backing off",
                "Entities whose reads failed and that back off alone (EntityStuck fires after "
                "3 failures in a row for 5 minutes); /readyz names them.",
                [
                    (
                        f"sum by (tenant) (poller_entity_consecutive_failures{{{TE}}} > bool 0)",
                        "{{tenant}}",
                    )
                ],
                kind="stat",
                width=4,
                extra=ZERO_GOOD,
            ),
            Panel(
                "Schema drift",
                "Problems the last mapping re-check found in the source; above 0 the poller "
                "stops with exit code 8.",
                [(f"max by (tenant) (poller_schema_drift{{{TE}}})", "{{tenant}}")],
                kind="stat",
                width=4,
                extra=ZERO_GOOD,
            ),
        ],
    ),
    (
        "Entities",
        [
            Panel(
                "Throughput per entity",
                "Rows per second read from the source and published in committed transactions.",
                [
                    (
                        "sum by (tenant, entity) "
                        f"(rate(poller_rows_published_total{{{TE}}}[{RI}]))",
                        "{{tenant}}/{{entity}} published",
                    ),
                    (
                        f"sum by (tenant, entity) (rate(poller_rows_read_total{{{TE}}}[{RI}]))",
                        "{{tenant}}/{{entity}} read",
                    ),
                ],
                unit="rowsps",
            ),
            Panel(
                "Watermark lag",
                "A: database time minus the watermark's cursor time (timestamp modes; 0 once "
                "caught up). B: seconds since the entity's last heartbeat found it caught up "
                "(every mode; heartbeat_interval_s): flat near the interval while idle, growing "
                "while it is behind or stalled.",
                [
                    (
                        f"max by (tenant, entity) (poller_watermark_lag_seconds{{{TE}}})",
                        "{{tenant}}/{{entity}}",
                    ),
                    (
                        "time() - max by (tenant, entity) "
                        f"(poller_caught_up_timestamp_seconds{{{TE}}})",
                        "{{tenant}}/{{entity}} since caught up",
                    ),
                ],
                unit="s",
            ),
            Panel(
                "Batch duration p50 / p95 / p99 by phase",
                "Per batch: fetch (database read), encode (Avro + produce), commit (Kafka "
                "transaction commit).",
                quantiles("poller_batch_phase_seconds", "phase", TE),
                unit="s",
            ),
            Panel(
                "Batches committed / s",
                "One Kafka transaction per batch.",
                [
                    (
                        f"sum by (tenant, entity) (rate(poller_batches_total{{{TE}}}[{RI}]))",
                        "{{tenant}}/{{entity}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "Errors and retries",
                "Errors by kind and retries per second. Tenant-wide errors (database or broker "
                "gone) have an empty entity and are always shown.",
                [
                    (
                        "sum by (tenant, entity, kind) (rate(poller_errors_total"
                        f'{{{T}, entity=~"$entity|"}}[{RI}]))',
                        "error {{kind}} {{entity}}",
                    ),
                    (
                        "sum by (tenant, entity) (rate(poller_retries_total"
                        f'{{{T}, entity=~"$entity|"}}[{RI}]))',
                        "retry {{tenant}} {{entity}}",
                    ),
                ],
                unit="ops",
            ),
            Panel(
                "Consecutive failures (stuck entities)",
                "Failed attempts in a row of an entity backing off on its own; 0 while it "
                "flows. The others keep flowing meanwhile.",
                [
                    (
                        f"max by (tenant, entity) (poller_entity_consecutive_failures{{{TE}}})",
                        "{{tenant}}/{{entity}}",
                    )
                ],
            ),
            Panel(
                "Dead-lettered rows",
                "Rows sent to the dead-letter topic (on_bad_row: dead_letter). Any growth means "
                "bad source data.",
                [
                    (
                        "sum by (tenant, entity) "
                        f"(increase(poller_rows_dead_lettered_total{{{TE}}}[{RI}]))",
                        "{{tenant}}/{{entity}}",
                    )
                ],
                unit="short",
            ),
            Panel(
                "Repairs",
                "Messages the delete reconciliation (repair_interval_s) or `verify --repair` "
                "published: tombstones for rows deleted in the source, re-published rows.",
                [
                    (
                        "sum by (tenant, entity, action) "
                        f"(increase(poller_repair_messages_total{{{TE}}}[{RI}]))",
                        "{{tenant}}/{{entity}} {{action}}",
                    )
                ],
                unit="short",
            ),
            Panel(
                "Watermark position",
                "The cursor: an id, or Unix seconds in timestamp modes.",
                [
                    (
                        f"max by (tenant, entity) (poller_watermark_value{{{TE}}})",
                        "{{tenant}}/{{entity}}",
                    )
                ],
            ),
            Panel(
                "Rows with a NULL cursor (skipped)",
                "null_cursor: skip leaves such rows unread; this is their last count.",
                [
                    (
                        f"max by (tenant, entity) (poller_null_cursor_rows{{{TE}}})",
                        "{{tenant}}/{{entity}}",
                    )
                ],
                unit="short",
            ),
        ],
    ),
    (
        "Kafka",
        [
            Panel(
                "Kafka transactions",
                "Committed and aborted transactions per second (tenant-wide; one per batch).",
                [
                    (
                        f"sum by (tenant, outcome) (rate(poller_transactions_total{{{T}}}[{RI}]))",
                        "{{tenant}} {{outcome}}",
                    )
                ],
                unit="ops",
                width=8,
            ),
            Panel(
                "Producer queue depth",
                "Messages waiting in librdkafka's queue (from its statistics, every 5s).",
                [(f"max by (tenant) (poller_producer_queue_messages{{{T}}})", "{{tenant}}")],
                unit="short",
                width=8,
            ),
            Panel(
                "Delivery latency (librdkafka)",
                "int_latency: time in the producer queue; rtt: broker round trip (p99 and "
                "average, from librdkafka statistics).",
                [
                    (
                        f"max by (tenant, stat) (poller_producer_delivery_latency_seconds{{{T}}})",
                        "{{tenant}} {{stat}}",
                    )
                ],
                unit="s",
                width=8,
            ),
        ],
    ),
    (
        "Source horizon",
        [
            Panel(
                "Horizon holdback",
                "How far open source transactions hold the read bound back (timestamp modes: "
                "seconds behind now - settle; id mode: how long the newest id has waited). A "
                "long-open transaction holds every entity of its database back: find it in "
                "the database's session list.",
                [
                    (
                        f"max by (tenant, entity) (poller_horizon_holdback_seconds{{{TE}}})",
                        "{{tenant}}/{{entity}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Transaction horizon active",
                "1: batches wait for open transactions; 0: the settle delay only (the database "
                "user lacks the grant `poller check` names).",
                [
                    (
                        f"min by (tenant, entity) (poller_horizon_active{{{TE}}})",
                        "{{tenant}}/{{entity}}",
                    )
                ],
                extra={"min": 0, "max": 1},
            ),
        ],
    ),
    (
        "Fleet",
        [
            Panel(
                "Tenants per worker",
                "Fleet: tenants each worker owns (poller worker), and how many of them run with "
                "Kafka fenced in and watermarks loaded. Empty for a standalone poller.",
                [
                    (f"count by (worker) (poller_worker_tenant_up{{{T}}})", "{{worker}} owned"),
                    (f"sum by (worker) (poller_worker_tenant_up{{{T}}})", "{{worker}} running"),
                ],
                width=8,
            ),
            Panel(
                "Tenant restarts per worker",
                "Fleet: tenant processes that ended unexpectedly and were restarted (with "
                "backoff).",
                [
                    (
                        "sum by (worker) "
                        f"(increase(poller_worker_child_restarts_total{{{T}}}[{RI}]))",
                        "{{worker}}",
                    )
                ],
                width=8,
            ),
            Panel(
                "Takeover time p50 / p95 / p99",
                "Fleet: from a partition's assignment to its tenant's process running (the old "
                "writer fenced, watermarks loaded). Worker-wide: not filtered by tenant.",
                quantiles("poller_worker_takeover_seconds", "worker", ""),
                unit="s",
                width=8,
            ),
            Panel(
                "Rebalances",
                "Fleet: consumer group events per worker (assigned, revoked, lost). "
                "Worker-wide: not filtered by tenant.",
                [
                    (
                        f"sum by (worker, event) (increase(poller_worker_rebalances_total[{RI}]))",
                        "{{worker}} {{event}}",
                    )
                ],
                unit="short",
                width=12,
            ),
            Panel(
                "Tenants waiting",
                "Fleet: tenants a worker owns but does not run because of max_tenants (its "
                "/readyz is not ready): add workers. Worker-wide: not filtered by tenant.",
                [("sum by (worker) (poller_worker_tenants_waiting)", "{{worker}}")],
                width=12,
                extra=ZERO_GOOD,
            ),
        ],
    ),
]

# Metrics of a worker as a whole: their queries cannot be filtered by tenant.
WORKER_WIDE = {
    "poller_worker_takeover_seconds_bucket",
    "poller_worker_rebalances_total",
    "poller_worker_tenants_waiting",
}
