"""Heartbeats without a broker (fakes.py): a caught-up entity rewrites its watermark record,
unmoved, with `heartbeat_at` = the database time of its read bound, not the database's now:
while something holds the bound back (an open transaction), "caught up at" stays behind."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from poller.batch import Batch, Position
from poller.kafka.watermark import Watermark
from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller
from poller.source.reader import SourceReader
from tests.unit.pipeline.fakes import (
    TENANT,
    Running,
    config,
    counter,
    customers_entity,
    install,
    keys,
    sqlite_source,
)

HELD_S = 600.0  # how far the read bound is held behind the database's now


@pytest.mark.parametrize("held_s", [0.0, HELD_S])
def test_a_caught_up_entity_heartbeats_at_its_read_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_s: float
) -> None:
    log = install(monkeypatch)
    url = sqlite_source(
        tmp_path / "source.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT)",
        rows={"customers": [(1, "A"), (2, "B")]},
    )
    ent = customers_entity(poll_interval_s=0.05, heartbeat_interval_s=0.2, settle_delay_s=0)
    cfg = config(url, {"customers": ent})
    fetch = SourceReader.fetch

    def held(reader: SourceReader, position: Position) -> Batch:
        """The bound as an open transaction `held_s` old would leave it."""
        batch = fetch(reader, position)
        if batch.safe_at is not None:
            batch.safe_at -= held_s
        return batch

    monkeypatch.setattr(SourceReader, "fetch", held)
    metrics = Metrics()

    def beats() -> list[Watermark]:
        return [w for w in log.watermark_history(TENANT, "customers") if w.heartbeat_at]

    with Running(Poller(cfg, metrics=metrics, stop=threading.Event())) as run:
        before = dt.datetime.now(dt.UTC)
        run.wait_until("two heartbeats", lambda: len(beats()) >= 2)
        after = dt.datetime.now(dt.UTC)

    history = log.watermark_history(TENANT, "customers")
    first, *_ = history
    assert first.heartbeat_at is None and first.rows_total == 2  # the batch's own watermark
    topic = cfg.kafka.topic_for("customers", TENANT)
    assert log.rows(topic) == keys(1, 2)  # a heartbeat publishes no row
    for beat in beats():
        # The watermark itself does not move.
        assert (beat.position, beat.rows_total) == (first.position, 2), beat
        assert beat.heartbeat_at is not None and beat.heartbeat_at.tzinfo is not None
        behind = (before - beat.heartbeat_at).total_seconds()
        # SQLite's CURRENT_TIMESTAMP has whole seconds: a second of slack either way.
        assert held_s - 1 <= behind, (beat.heartbeat_at, before)
        assert beat.heartbeat_at <= after - dt.timedelta(seconds=held_s - 1)
    latest = beats()[-1].heartbeat_at
    assert latest is not None
    caught_up = counter(
        metrics, "poller_caught_up_timestamp_seconds", tenant=TENANT, entity="customers"
    )
    assert abs(caught_up - latest.timestamp()) < 1e-3
