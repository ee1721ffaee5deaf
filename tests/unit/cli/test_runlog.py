"""`poller run` logs a progress line per busy entity, at most once per interval."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from poller.batch import Position
from poller.cli.runlog import RunLog
from poller.config import EntityConfig
from poller.ops.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entity(mode: str) -> EntityConfig:
    column = "id" if mode == "id" else "updated_at"
    return EntityConfig.model_validate(
        {"table": "t", "key": "id", "fields": {"local_id": "id"},
         "batching": {"mode": mode, "column": column}}
    )  # fmt: skip


def poller() -> Any:
    streams = {
        "customers": SimpleNamespace(
            cfg=entity("timestamp"), position=Position("2026-11-30 07:00:00", 42), rows_total=0
        ),
        "products": SimpleNamespace(cfg=entity("id"), position=Position(None, None), rows_total=0),
    }
    return SimpleNamespace(metrics=Metrics(), tenant="acme", streams=streams)


def test_one_line_per_busy_entity_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="poller.progress")
    clock, p = Clock(), poller()
    run = RunLog(60, clock)
    run.started(p)
    p.metrics.lag_seconds.labels("acme", "customers").set(3)
    for _ in range(10):
        clock.now += 5
        p.streams["customers"].rows_total += 1000
        run.committed("customers", 1000)
    assert caplog.records == []  # 50 s: not yet
    clock.now += 10
    p.streams["customers"].rows_total += 1000
    run.committed("customers", 1000)
    [record] = caplog.records
    assert record.entity == "customers"  # type: ignore[attr-defined]
    assert record.getMessage() == (
        "11,000 rows during the previous 1m0s (183.3 rows/s), 11,000 in total; "
        "watermark 2026-11-30 07:00:00 / 42; lag 3s"
    )
    clock.now += 1
    run.committed("customers", 10)
    assert len(caplog.records) == 1  # rate-limited


def test_a_held_back_entity_is_named_even_without_rows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="poller.progress")
    clock, p = Clock(), poller()
    run = RunLog(60, clock)
    run.started(p)
    p.metrics.horizon_holdback.labels("acme", "products").set(125)
    clock.now += 61
    run.caught_up("products")
    [record] = caplog.records
    assert record.getMessage() == (
        "0 rows during the previous 1m1s (0.0 rows/s), 0 in total; watermark earliest; "
        "held back 2m5s by open source transactions"
    )


def test_interval_zero_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="poller.progress")
    clock, p = Clock(), poller()
    run = RunLog(0, clock)
    run.started(p)
    clock.now += 3600
    run.committed("customers", 5)
    assert caplog.records == []
