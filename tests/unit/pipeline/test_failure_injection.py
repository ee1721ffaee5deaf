"""The watermark never moves past rows whose transaction did not commit.

The Kafka side is the fake log of fakes.py (failing commits on request); the source is a real
SQLite file, read by the real reader.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from poller.batch import BEGINNING, Position
from poller.config import AppConfig
from poller.errors import PublishError, WatermarkRegressionError
from poller.kafka import watermark
from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller
from poller.pipeline.stream import make_streams
from tests.unit.pipeline.fakes import (
    FakeLog,
    FakePublisher,
    config,
    counter,
    customers_entity,
    install,
    sqlite_source,
)

ROWS = 25
BATCH = 10


@pytest.fixture
def cfg(tmp_path: Path) -> AppConfig:
    url = sqlite_source(
        tmp_path / "source.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT)",
        rows={"customers": [(i, f"Customer {i}") for i in range(1, ROWS + 1)]},
    )
    return config(url, {"customers": customers_entity(batch_size=BATCH)})


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> FakeLog:
    """The run loop's Kafka side replaced by a FakeLog; everything else is real."""
    return install(monkeypatch)


def test_failed_commit_leaves_stream_and_watermark_unmoved(cfg: AppConfig) -> None:
    log = FakeLog(fail_commits={1})
    metrics = Metrics()
    p = Poller(cfg, metrics=metrics, stop=threading.Event())
    try:
        p.publisher = FakePublisher(log)  # type: ignore[assignment]
        p.streams = make_streams(cfg, p.schemas, {}, {"customers": BEGINNING})
        s = p.streams["customers"]
        batch = p.readers["customers"].fetch(s.position)
        assert len(batch.rows) == BATCH and batch.last is not None

        with pytest.raises(PublishError):
            p._commit(s, batch)
        assert s.position == BEGINNING
        assert s.rows_total == 0
        assert log.committed == []
        # The aborted transaction held the batch's rows and a watermark at its end; neither
        # is visible to a read_committed consumer.
        (aborted,) = log.aborted
        wms = [watermark.decode(v) for t, _, v in aborted if t == p.watermark_topic and v]
        assert [w.position for w in wms] == [batch.last]
        assert sum(t == s.topic for t, _, _ in aborted) == BATCH
        assert counter(metrics, "poller_transactions_total", tenant="acme", outcome="aborted") == 1
        assert (
            counter(metrics, "poller_transactions_total", tenant="acme", outcome="committed") == 0
        )
        assert (
            counter(metrics, "poller_rows_published_total", tenant="acme", entity="customers") == 0
        )

        # The same batch again, committed this time: now the stream moves.
        p._commit(s, batch)
        assert s.position == batch.last
        assert s.rows_total == BATCH
        assert len(log.committed) == 1
        assert log.watermarks("acme")["customers"].position == batch.last
    finally:
        p.close()


@pytest.mark.parametrize("fail_commits", [{1}, {2}, {2, 3}, {3}])
def test_run_loop_redoes_uncommitted_batches_exactly_once(
    cfg: AppConfig, no_kafka: FakeLog, fail_commits: set[int]
) -> None:
    no_kafka.fail_commits = fail_commits
    metrics = Metrics()
    Poller(cfg, metrics=metrics, stop=threading.Event()).run(once=True)

    topic = cfg.kafka.topic_for("customers", "acme")
    keys = no_kafka.rows(topic)
    assert sorted(keys) == sorted(f'["acme",{i}]'.encode() for i in range(1, ROWS + 1)), keys
    assert len(no_kafka.aborted) == len(fail_commits)
    # Each failure dropped the producer and started a new one, which re-read the watermark.
    assert len(no_kafka.publishers) == 1 + len(fail_commits)
    assert all(pub.started and pub.closed for pub in no_kafka.publishers)
    # Committed watermarks only ever move forward, one per committed batch, ending at the top.
    positions = [
        watermark.decode(v).position.cursor
        for txn in no_kafka.committed
        for t, _, v in txn
        if t.endswith("watermarks") and v
    ]
    assert positions == [10, 20, 25]
    assert no_kafka.watermarks("acme")["customers"].rows_total == ROWS
    assert counter(metrics, "poller_retries_total", tenant="acme", entity="") == len(fail_commits)


def test_retried_transaction_resends_what_the_failed_one_held(
    cfg: AppConfig, no_kafka: FakeLog
) -> None:
    no_kafka.fail_commits = {2}
    Poller(cfg, metrics=Metrics(), stop=threading.Event()).run(once=True)
    (failed,) = no_kafka.aborted
    retried = no_kafka.committed[1]
    assert [m[:2] for m in failed if not m[0].endswith("watermarks")] == [
        m[:2] for m in retried if not m[0].endswith("watermarks")
    ]
    assert no_kafka.watermarks("acme")["customers"].position.cursor == ROWS


def test_a_watermark_behind_the_stored_one_is_raised_and_never_saved(
    cfg: AppConfig, no_kafka: FakeLog
) -> None:
    """The stored watermark says 20 rows are done; a source whose rows now come back from the
    start (restored from an old backup, say) must stop the poller, not rewrite history."""
    p = Poller(cfg, metrics=Metrics(), stop=threading.Event())
    try:
        p.publisher = FakePublisher(no_kafka)  # type: ignore[assignment]
        p.streams = make_streams(cfg, p.schemas, {}, {"customers": BEGINNING})
        s = p.streams["customers"]
        ahead = p.readers["customers"].fetch(Position(20, 20))  # rows 21..25
        assert ahead.last == Position(25, 25)
        p._commit(s, ahead)
        assert len(no_kafka.committed) == 1

        behind = p.readers["customers"].fetch(BEGINNING)  # rows 1..10: behind 25
        with pytest.raises(WatermarkRegressionError, match="behind the stored"):
            p._commit(s, behind)
        assert s.position == Position(25, 25)
        assert len(no_kafka.committed) == 1  # nothing of the regressed batch was committed
        assert no_kafka.watermarks("acme")["customers"].position == Position(25, 25)
    finally:
        p.close()


@pytest.mark.parametrize(
    ("old", "new", "raises"),
    [
        (Position(10, 3), Position(9, 99), True),
        (Position(10, 3), Position(10, 2), True),
        (Position(10, 3), Position(10, 3), False),
        (Position(10, 3), Position(11, 0), False),
        (Position(None, None), Position(1, 1), False),
        (Position("b", "x"), Position("a", "y"), False),  # text order is the database's
        (Position(dt.datetime(2024, 1, 2), 1), Position(dt.datetime(2024, 1, 1), 5), True),
    ],
)
def test_check_forward(old: Position, new: Position, raises: bool) -> None:
    if raises:
        with pytest.raises(WatermarkRegressionError):
            watermark.check_forward(old, new, "acme/customers")
    else:
        watermark.check_forward(old, new, "acme/customers")
