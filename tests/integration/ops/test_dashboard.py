"""Every Grafana panel query returns data from a real Prometheus scraping a real poller, the
alert rules load and evaluate, and /readyz follows the database going away and coming back.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from tests.integration.ops.harness import (
    ENTITIES,
    RATE_INTERVAL,
    Proc,
    Source,
    Writer,
    allow_connections,
    check_log_lines,
    delete_topics,
    http_get,
    start_poller,
    start_prometheus,
    tail,
    wait_for,
)
from tests.unit.ops.test_dashboards import load_dashboard, metric_names, panel_queries, substitute

pytestmark = pytest.mark.integration


def test_dashboard_alerts_and_readiness(
    tmp_path: Path,
    source: Source,
    pg_admin_url: str,
    kafka_bootstrap: str,
    procs: list[Proc],
) -> None:
    tenant, port, prefix, base, poller = start_poller(
        tmp_path, source, kafka_bootstrap, procs, "obs-tenant"
    )
    prom = start_prometheus(tmp_path, procs, f"127.0.0.1:{port}")
    writer = Writer(source.admin_url)
    writer.start()

    def diagnose() -> str:
        state = "running" if poller.proc.poll() is None else f"exited {poller.proc.returncode}"
        return f"poller {state}\n{tail(poller.log_path)}\n{tail(tmp_path / 'prometheus.log', 10)}"

    t = f'tenant="{tenant}"'
    try:
        # /healthz and /metrics answer as soon as the process is up.
        wait_for("/healthz", lambda: http_get(f"{base}/healthz", 2)[0] == 200, 60, diagnose)
        status, body, ctype = http_get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain"), ctype
        assert b"poller_build_info{" in body

        # Data flows and is scraped: rows of every entity, dead letters, librdkafka stats.
        def flowing() -> bool:
            published = {
                r["metric"]["entity"] for r in prom.query(f"poller_rows_published_total{{{t}}} > 0")
            }
            return (
                published == set(ENTITIES)
                and bool(prom.query(f"poller_rows_dead_lettered_total{{{t}}} > 0"))
                and bool(prom.query(f"poller_producer_delivery_latency_seconds{{{t}}}"))
                and bool(prom.query(f"poller_watermark_lag_seconds{{{t}}}"))
            )

        wait_for("rows, dead letters and producer statistics in Prometheus", flowing, 120, diagnose)
        wait_for("/readyz 200", lambda: http_get(f"{base}/readyz")[0] == 200, 30, diagnose)

        # The dashboard's variables resolve to this tenant and its entities.
        assert tenant in prom.label_values("poller_rows_read_total", "tenant")
        entity_values = prom.label_values(f'poller_rows_read_total{{tenant=~"{tenant}"}}', "entity")
        assert entity_values == set(ENTITIES)

        # The database goes away: /readyz says so, errors are counted.
        writer.paused.set()
        allow_connections(pg_admin_url, source.database, allowed=False)
        try:
            # The probes run in the background (metrics.probe_interval_s): the database check
            # turns false at the next round, not at the request.
            wait_for(
                "/readyz 503 with the database check false",
                lambda: json.loads(http_get(f"{base}/readyz")[1])["checks"]["database"] is False,
                60,
                diagnose,
            )
            status, body, _ = http_get(f"{base}/readyz")
            answer = json.loads(body)
            assert status == 503 and answer["ready"] is False, answer
            assert answer["checks"]["database"] is False, answer
            assert answer["checks"]["kafka"] is True, answer
            wait_for(
                "database errors and poller_database_up 0 in Prometheus",
                lambda: bool(
                    prom.query(f'poller_errors_total{{{t}, kind="SourceError"}} > 0')
                    and prom.query(f"poller_retries_total{{{t}}} > 0")
                    and prom.query(f"poller_database_up{{{t}}} == 0")
                ),
                60,
                diagnose,
            )
        finally:
            allow_connections(pg_admin_url, source.database, allowed=True)
            writer.paused.clear()

        # ... and comes back.
        wait_for("/readyz 200 again", lambda: http_get(f"{base}/readyz")[0] == 200, 60, diagnose)
        answer = json.loads(http_get(f"{base}/readyz")[1])
        assert answer == {
            "ready": True,
            "checks": {"database": True, "kafka": True, "last_batch": True, "entities": True},
        }
        wait_for(
            "poller_database_up 1 again",
            lambda: bool(prom.query(f"poller_database_up{{{t}}} == 1")),
            30,
            diagnose,
        )
        at = time.time() + 3  # one minute back from here covers before, during and after
        wait_for(
            "rows published after the outage",
            lambda: (
                time.time() > at + 2
                and bool(prom.query(f"increase(poller_rows_published_total{{{t}}}[3s]) > 0", at))
            ),
            60,
            diagnose,
        )

        # Every panel query returns data for this tenant, with real numbers in it.
        queries = panel_queries(load_dashboard())
        assert len(queries) >= 15
        for title, ref, expr in queries:
            if any(n.startswith("poller_worker_") for n in metric_names(expr)):
                continue  # a fleet worker's panels: tests/integration/fleet checks them
            promql = substitute(expr, tenant, ENTITIES, RATE_INTERVAL)
            result = prom.query(promql, at)
            assert result, f"panel {title!r} query {ref} returned nothing: {promql}"
            values = [float(r["value"][1]) for r in result]
            assert any(math.isfinite(v) for v in values), f"{title!r} {ref}: {result}"
            for r in result:
                assert r["metric"].get("tenant", tenant) == tenant, (title, r)
            if metric_names(expr) & {
                "poller_rows_published_total",
                "poller_rows_read_total",
                "poller_batches_total",
                "poller_errors_total",
                "poller_retries_total",
                "poller_rows_dead_lettered_total",
                "poller_transactions_total",
                "poller_watermark_value",
                "poller_database_up",
                "poller_kafka_up",
            }:
                assert max(values) > 0, f"panel {title!r} query {ref} has only zeros: {result}"

        # Specific real values behind the panels.
        by_kind = {
            r["metric"]["kind"]: float(r["value"][1])
            for r in prom.query(
                f"sum by (kind) (increase(poller_errors_total{{{t}}}[{RATE_INTERVAL}]))", at
            )
        }
        assert by_kind.get("SourceError", 0) > 0, by_kind
        outcomes = {
            r["metric"]["outcome"] for r in prom.query(f"poller_transactions_total{{{t}}} > 0", at)
        }
        assert "committed" in outcomes
        lag = prom.values(f'poller_watermark_lag_seconds{{{t}, entity="customers"}}', at)
        assert lag and 0 <= lag[0] < 600, lag
        since = prom.values(f"time() - max(poller_last_success_timestamp_seconds{{{t}}})", at)
        assert since and 0 <= since[0] < 30, since
        dead = prom.values(f"poller_rows_dead_lettered_total{{{t}}}", at)
        assert sum(dead) >= 2, dead
        quantiles = prom.values(
            substitute(
                "histogram_quantile(0.99, sum by (le, phase) "
                '(rate(poller_batch_phase_seconds_bucket{tenant=~"$tenant"}[1m])))',
                tenant,
                ENTITIES,
                RATE_INTERVAL,
            ),
            at,
        )
        assert len([q for q in quantiles if math.isfinite(q) and q > 0]) == 3, quantiles

        # The alert rules load and evaluate against the real series without errors.
        status, body, _ = http_get(f"{prom.url}/api/v1/rules")
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        assert {r["name"] for r in rules} == {
            "PollerDown",
            "PollerStalled",
            "LagHigh",
            "ErrorRateHigh",
            "DeadLettersGrowing",
            "EntityStuck",
        }
        for r in rules:
            assert r["health"] == "ok", r
        assert writer.errors == [], writer.errors[:3]
    finally:
        writer.stop()
        code = poller.stop()
        delete_topics(kafka_bootstrap, prefix)
    assert code == 0, diagnose()
    records = check_log_lines(poller.log_path, tenant, source.password)
    assert any(r["entity"] == "customers" for r in records)
    assert any("***@" in r["message"] for r in records), "the source URL was never logged"
