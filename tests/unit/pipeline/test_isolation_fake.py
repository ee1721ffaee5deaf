"""Entity isolation without a broker (fakes.py): one entity whose reads keep failing with a
transient database error backs off on its own, while the other entity keeps publishing; the
tenant's producer is never dropped, and once the entity reads again it publishes every row
once.

The failure is injected where the database's would come out: while a gate is closed, every
read of the failing entity raises SourceError as a statement timeout on its table does.
(SQLite has no per-table transient error to cause for real; the integration test
tests/integration/faults/test_entity_isolation.py does it with PostgreSQL's statement timeout.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from poller.batch import Batch, Position
from poller.errors import SourceError
from poller.ops.metrics import Health, Metrics
from poller.pipeline.runner import Poller
from poller.source.reader import SourceReader
from tests.unit.pipeline.fakes import (
    TENANT,
    Running,
    config,
    counter,
    customers_entity,
    execute,
    install,
    keys,
    sqlite_source,
)

INITIAL_S, MAX_S = 0.05, 0.2


def stuck_failures(health: Health) -> int:
    return int(str(health.stuck.get("product_categories", {}).get("failures", 0)))


def test_a_failing_entity_backs_off_alone_while_the_other_keeps_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = install(monkeypatch)
    url = sqlite_source(
        tmp_path / "source.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT)",
        "CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        rows={
            "customers": [(i, f"Customer {i}") for i in range(1, 31)],
            "categories": [(i, f"Category {i}") for i in range(1, 21)],
        },
    )
    categories = {
        "table": "categories",
        "key": "id",
        "fields": {"local_id": "id", "name": "name"},
        "batching": {"mode": "id", "column": "id"},
        "batch_size": 10,
        "poll_interval_s": 0.02,
        "settle_delay_s": 0,  # SQLite shows no open transactions: rows are read at once
    }
    cfg = config(
        url,
        # categories first: a failure that stopped the turn would starve customers
        {
            "product_categories": categories,
            "customers": customers_entity(poll_interval_s=0.02, settle_delay_s=0),
        },
        retry=(INITIAL_S, MAX_S),
    )
    metrics, health = Metrics(), Health()
    gate_closed = threading.Event()
    gate_closed.set()
    fetch = SourceReader.fetch

    def gated(reader: SourceReader, position: Position) -> Batch:
        if gate_closed.is_set() and reader is poller.readers["product_categories"]:
            raise SourceError("entity 'product_categories': canceling statement due to timeout")
        return fetch(reader, position)

    monkeypatch.setattr(SourceReader, "fetch", gated)
    poller = Poller(cfg, metrics=metrics, health=health, stop=threading.Event())
    customers = cfg.kafka.topic_for("customers", TENANT)
    categories_topic = cfg.kafka.topic_for("product_categories", TENANT)

    def failures() -> float:
        return counter(metrics, "poller_retries_total", tenant=TENANT, entity="product_categories")

    with Running(poller) as run:
        run.wait_until("customers published", lambda: len(log.rows(customers)) == 30)
        started, before = time.monotonic(), failures()
        # While categories keeps failing, new customers rows keep flowing.
        execute(url, "INSERT INTO customers VALUES (31, 'late'), (32, 'later')")
        run.wait_until("the late customers", lambda: len(log.rows(customers)) == 32)
        # (health.stuck is set after the counters: once it shows a failure, they count it)
        run.wait_until(
            "a few more failed reads",
            lambda: failures() >= before + 3 and stuck_failures(health) >= 3,
        )
        elapsed, failed = time.monotonic() - started, failures() - before
        assert log.rows(categories_topic) == []
        stuck = health.stuck.get("product_categories")
        assert stuck is not None and "canceling statement" in str(stuck["error"]), health.stuck
        assert "customers" not in health.stuck
        assert stuck["retry_in_s"] == MAX_S  # the backoff grew to its cap
        gauge = "poller_entity_consecutive_failures"
        assert counter(metrics, gauge, tenant=TENANT, entity="product_categories") >= 3

        gate_closed.clear()
        run.wait_until("categories published", lambda: len(log.rows(categories_topic)) == 20)
        run.wait_until("the stuck state cleared", lambda: not health.stuck)

    # Backed off, not hammered: each failed read waited at least its backoff (at most one read
    # per MAX_S once capped, whatever the machine's speed).
    assert failed <= 3 + elapsed / MAX_S, (failed, elapsed)
    assert sorted(log.rows(customers)) == sorted(keys(*range(1, 33)))
    assert sorted(log.rows(categories_topic)) == sorted(keys(*range(1, 21)))
    # The failure stayed with its entity: no tenant-wide retry, the producer never dropped.
    assert counter(metrics, "poller_retries_total", tenant=TENANT, entity="") == 0
    assert len(log.publishers) == 1
    assert counter(metrics, gauge, tenant=TENANT, entity="product_categories") == 0
