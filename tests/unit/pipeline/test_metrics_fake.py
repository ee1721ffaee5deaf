"""What a run records, without a broker (the fake log of fakes.py, a real SQLite source): the
run loop's metric intents end in the series the dashboard and alerts query."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller
from tests.unit.pipeline.fakes import FakeLog, config, customers_entity, install, sqlite_source

ROWS, BATCH = 25, 10


def test_a_run_once_records_batches_rows_phases_and_the_watermark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: FakeLog = install(monkeypatch)
    url = sqlite_source(
        tmp_path / "source.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT)",
        rows={"customers": [(i, f"Customer {i}") for i in range(1, ROWS + 1)]},
    )
    cfg = config(url, {"customers": customers_entity(batch_size=BATCH)})
    metrics = Metrics()
    started = time.time()
    Poller(cfg, metrics=metrics, stop=threading.Event()).run(once=True)
    assert len(log.committed) == 3

    def get(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    te = {"tenant": "acme", "entity": "customers"}
    assert get("poller_batches_total", **te) == 3  # 10, 10, 5
    assert get("poller_rows_read_total", **te) == ROWS
    assert get("poller_rows_published_total", **te) == ROWS
    assert get("poller_rows_dead_lettered_total", **te) == 0
    assert get("poller_transactions_total", tenant="acme", outcome="committed") == 3
    assert get("poller_transactions_total", tenant="acme", outcome="aborted") == 0
    for phase in ("encode", "commit"):
        assert get("poller_batch_phase_seconds_count", **te, phase=phase) == 3, phase
    fetches = get("poller_batch_phase_seconds_count", **te, phase="fetch")
    assert fetches is not None and fetches >= 3  # the prefetcher may have read one more
    assert get("poller_watermark_value", **te) == ROWS
    assert get("poller_watermark_lag_seconds", **te) == 0  # caught up, nothing held back
    for when in ("poller_last_success_timestamp_seconds", "poller_heartbeat_timestamp_seconds"):
        value = get(when, **te)
        assert value is not None and value >= started, when
    assert get("poller_database_up", tenant="acme") == 1
    assert get("poller_kafka_up", tenant="acme") == 1
    info = {"tenant": "acme", "transactional_id": cfg.transactional_id()}
    assert get("poller_instance_info", **info) == 1
