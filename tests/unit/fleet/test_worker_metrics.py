"""The worker's metric intents (poller.fleet.metrics.WorkerMetrics): each moves the series the
inline lines it replaced moved, and a tenant's series start as before."""

from __future__ import annotations

from poller.fleet.metrics import WorkerMetrics


def test_a_tenants_life_in_the_worker_metrics() -> None:
    m = WorkerMetrics("w1")
    get = m.registry.get_sample_value
    tenant = {"worker": "w1", "tenant": "acme"}
    assert get("poller_worker_tenant_up", tenant) is None
    m.tenant_added("acme")
    assert get("poller_worker_tenant_up", tenant) == 0
    assert get("poller_worker_child_restarts_total", tenant) == 0  # increase() sees the first
    m.tenant_running("acme", 2.5)
    assert get("poller_worker_tenant_up", tenant) == 1
    assert get("poller_worker_takeover_seconds_count", {"worker": "w1"}) == 1
    assert get("poller_worker_takeover_seconds_sum", {"worker": "w1"}) == 2.5
    m.tenant_down("acme")
    m.tenant_restarted("acme")
    m.tenant_running("acme", None)  # restarted, not taken over: no takeover time
    assert get("poller_worker_child_restarts_total", tenant) == 1
    assert get("poller_worker_takeover_seconds_count", {"worker": "w1"}) == 1
    m.forget_tenant("acme")
    assert get("poller_worker_tenant_up", tenant) is None


def test_worker_counts_and_rebalances() -> None:
    m = WorkerMetrics("w1")
    get = m.registry.get_sample_value
    w = {"worker": "w1"}
    assert get("poller_worker_tenants_failed", w) is None  # not before the first count
    m.tenant_counts(owned=5, running=3, waiting=1, failed=1)
    assert get("poller_worker_tenants", w) == 5
    assert get("poller_worker_tenants_running", w) == 3
    assert get("poller_worker_tenants_waiting", w) == 1
    assert get("poller_worker_tenants_failed", w) == 1
    m.rebalanced("assigned")
    m.rebalanced("lost")
    m.partitions_owned(4)
    assert get("poller_worker_rebalances_total", {**w, "event": "assigned"}) == 1
    assert get("poller_worker_rebalances_total", {**w, "event": "lost"}) == 1
    assert get("poller_worker_rebalances_total", {**w, "event": "revoked"}) == 0
    assert get("poller_worker_partitions", w) == 4
