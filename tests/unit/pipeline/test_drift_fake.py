"""Source drift under a running poller, without a broker (fakes.py): a mapped column dropped
while running is named (field and column) and stops the poller with SchemaMismatchError
(exit 8), instead of being retried forever; nothing after the last committed batch is written."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from poller.errors import SchemaMismatchError
from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller
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

DDL = "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT, mail TEXT)"


@pytest.mark.parametrize("drift_check_interval_s", [0.05, 0])
def test_a_mapped_column_dropped_while_running_is_named_and_stops_the_poller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drift_check_interval_s: float
) -> None:
    """With the periodic check (0.05 s) the re-check finds the drop; without it (0) the next
    batch fails and the drift check explains the failure. Either way: named, stopped."""
    log = install(monkeypatch)
    url = sqlite_source(
        tmp_path / "source.db",
        DDL,
        rows={"customers": [(i, f"Customer {i}", f"c{i}@example.com") for i in (1, 2, 3)]},
    )
    ent = customers_entity(poll_interval_s=0.02)
    ent["fields"]["email"] = "mail"
    cfg = config(url, {"customers": ent}, drift_check_interval_s=drift_check_interval_s)
    metrics = Metrics()
    topic = cfg.kafka.topic_for("customers", TENANT)
    with Running(Poller(cfg, metrics=metrics, stop=threading.Event())) as run:
        run.wait_until("the first rows", lambda: len(log.rows(topic)) == 3)
        execute(
            url, "ALTER TABLE customers DROP COLUMN mail", "INSERT INTO customers VALUES (4, 'D')"
        )
        error = run.ended(timeout=20)

    assert isinstance(error, SchemaMismatchError), repr(error)
    message = str(error)
    assert "schema drift" in message
    assert "entity 'customers': field 'email' (column 'mail')" in message, message
    # Nothing after the last committed batch: the row added with the drop is not published.
    assert log.rows(topic) == keys(1, 2, 3)
    assert log.watermarks(TENANT)["customers"].position.cursor == 3
    assert counter(metrics, "poller_schema_drift", tenant=TENANT, entity="customers") >= 1
    assert counter(metrics, "poller_retries_total", tenant=TENANT, entity="") == 0
