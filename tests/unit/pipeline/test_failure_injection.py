"""The watermark never moves past rows whose transaction did not commit.

A fake publisher with TransactionalPublisher's interface keeps each transaction's messages and
commits them to a fake log, or fails the commit on request (PublishError, as the real one raises
after aborting). The source is a real SQLite file, read by the real reader.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import poller.pipeline.runner as runner_module
from poller.config import AppConfig, parse_config
from poller.errors import PublishError, WatermarkRegressionError
from poller.kafka import watermark
from poller.kafka.backfill_state import Stored
from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller
from poller.pipeline.sizes import MessageLimits
from poller.pipeline.stream import make_streams
from poller.source.query import BEGINNING, Position

ROWS = 25
BATCH = 10

Message = tuple[str, bytes, bytes | None]


class FakeLog:
    """What a read_committed consumer would see: only committed transactions' messages."""

    def __init__(self, fail_commits: set[int] | None = None) -> None:
        self.fail_commits = fail_commits or set()  # 1-based numbers of commit() calls to fail
        self.commit_calls = 0
        self.committed: list[list[Message]] = []
        self.aborted: list[list[Message]] = []
        self.publishers: list[FakePublisher] = []

    def watermarks(self, tenant: str) -> dict[str, watermark.Watermark]:
        """The latest committed watermark per entity of `tenant` (what watermark.load reads)."""
        found = {}
        for txn in self.committed:
            for topic, _key, value in txn:
                if topic.endswith(".watermarks") and value is not None:
                    wm = watermark.decode(value)
                    if wm.tenant == tenant:
                        found[wm.entity] = wm
        return found

    def rows(self, topic: str) -> list[bytes]:
        return [key for txn in self.committed for t, key, _ in txn if t == topic]


class FakePublisher:
    """TransactionalPublisher's interface, in memory."""

    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.started = False
        self.closed = False
        self.failed = False  # a real producer fails for good when a transaction cannot end
        self._txn: list[Message] | None = None
        log.publishers.append(self)

    def start(self) -> None:
        self.started = True

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def begin(self) -> None:
        assert self._txn is None, "begin inside an open transaction"
        self._txn = []

    def send(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: Any = None,
        timestamp_ms: int = 0,
    ) -> None:
        assert self._txn is not None, "send outside a transaction"
        self._txn.append((topic, key, value))

    def produce_fast(
        self, topic: str, value: bytes | None, key: bytes, headers: Any = None, timestamp: int = 0
    ) -> None:
        """confluent_kafka.Producer.produce's argument order, as the hot loop calls it."""
        self.send(topic, key, value, headers, timestamp)

    def poll(self) -> None:
        pass

    def commit(self) -> None:
        assert self._txn is not None, "commit outside a transaction"
        self.log.commit_calls += 1
        txn, self._txn = self._txn, None
        if self.log.commit_calls in self.log.fail_commits:
            self.log.aborted.append(txn)  # the real publisher aborts, then raises
            raise PublishError("injected: commit_transaction failed")
        self.log.committed.append(txn)

    def abort(self) -> None:
        if self._txn is not None:
            self.log.aborted.append(self._txn)
            self._txn = None

    def queue_length(self) -> int:
        return 0

    def close(self) -> None:
        self.abort()
        self.closed = True


@pytest.fixture
def cfg(tmp_path: Path) -> AppConfig:
    db = tmp_path / "source.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT)")
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?)",
            [(i, f"Customer {i}") for i in range(1, ROWS + 1)],
        )
    return parse_config(
        {
            "tenant": "acme",
            "source": {"url": f"sqlite:///{db}"},
            "kafka": {
                "bootstrap_servers": "127.0.0.1:1",
                "topic_prefix": "unit",
                "format": "single_object",
            },
            "entities": {
                "customers": {
                    "table": "customers",
                    "key": "id",
                    "fields": {"local_id": "id", "full_name": "full_name"},
                    "batching": {"mode": "id", "column": "id"},
                    "batch_size": BATCH,
                }
            },
            "metrics": {"enabled": False},
            "retry": {"initial_backoff_s": 0.001, "max_backoff_s": 0.001},
        }
    )


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLog]:
    """The run loop's Kafka side replaced by a FakeLog; everything else is real."""
    log = FakeLog()
    monkeypatch.setattr(
        runner_module, "TransactionalPublisher", lambda *_a, **_k: FakePublisher(log)
    )
    monkeypatch.setattr(runner_module, "ensure_topics", lambda *_a, **_k: None)
    monkeypatch.setattr(runner_module, "read_limits", lambda *_a, **_k: MessageLimits())
    if hasattr(runner_module, "preflight"):
        monkeypatch.setattr(runner_module, "preflight", lambda *_a, **_k: None)
    monkeypatch.setattr(watermark, "load", lambda _k, _topic, tenant, **_kw: log.watermarks(tenant))
    monkeypatch.setattr(
        runner_module,
        "load_all",
        lambda _k, _topic, tenant, **_kw: Stored(log.watermarks(tenant), {}),
    )
    yield log


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


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
