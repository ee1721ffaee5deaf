"""The run loop without a broker: a fake publisher with TransactionalPublisher's interface that
keeps each transaction's messages and commits them to a fake log (or fails the commit on
request, raising PublishError as the real one does after aborting). The source stays real: a
SQLite file read by the real reader. `install` swaps the Kafka side of the run loop and of the
backfill runner for the fake log; everything else (reader, encoder, watermarks, backfill
states, isolation, heartbeats, drift checks) is the product's code.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

import poller.pipeline.backfill as backfill_module
import poller.pipeline.runner as runner_module
from poller.config import AppConfig, parse_config
from poller.errors import PublishError
from poller.kafka import backfill_state, watermark
from poller.kafka.backfill_state import BackfillState, Stored
from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller
from poller.pipeline.sizes import MessageLimits

T = TypeVar("T")
Message = tuple[str, bytes, bytes | None]
TENANT = "acme"


class FakeLog:
    """What a read_committed consumer would see: only committed transactions' messages."""

    def __init__(self, fail_commits: set[int] | None = None) -> None:
        self.fail_commits = fail_commits or set()  # 1-based numbers of commit() calls to fail
        # 1-based numbers of one transactional id's commit() calls to fail
        self.fail_commits_of: dict[str, set[int]] = {}
        self.commit_calls = 0
        self.commit_calls_of: dict[str, int] = {}
        self.committed: list[list[Message]] = []
        self.committed_by: list[str] = []  # the transactional id of each committed transaction
        self.aborted: list[list[Message]] = []
        self.publishers: list[FakePublisher] = []
        self._lock = threading.Lock()  # a test thread reads while the poller's thread commits

    def _commit(self, tid: str, txn: list[Message]) -> None:
        with self._lock:
            self.commit_calls += 1
            n = self.commit_calls_of[tid] = self.commit_calls_of.get(tid, 0) + 1
            if self.commit_calls in self.fail_commits or n in self.fail_commits_of.get(tid, ()):
                self.aborted.append(txn)  # the real publisher aborts, then raises
                raise PublishError("injected: commit_transaction failed")
            self.committed.append(txn)
            self.committed_by.append(tid)

    def transactions(self) -> list[tuple[str, list[Message]]]:
        """(transactional id, messages) of every committed transaction, in commit order."""
        with self._lock:
            return list(zip(self.committed_by, self.committed, strict=True))

    def records(self, tenant: str) -> dict[tuple[str, ...], bytes]:
        """The latest committed value per key of the watermark topic (what a compacted read
        returns), for `tenant`'s keys."""
        found: dict[tuple[str, ...], bytes] = {}
        for _tid, txn in self.transactions():
            for topic, key, value in txn:
                if topic.endswith(".watermarks") and value is not None:
                    parts = tuple(json.loads(key))
                    if parts[0] == tenant:
                        found[parts] = value
        return found

    def watermarks(self, tenant: str) -> dict[str, watermark.Watermark]:
        """The latest committed watermark per entity of `tenant` (what watermark.load reads)."""
        return {k[1]: watermark.decode(v) for k, v in self.records(tenant).items() if len(k) == 2}

    def watermark_history(self, tenant: str, entity: str) -> list[watermark.Watermark]:
        """Every committed watermark record of one entity, oldest first (heartbeats too)."""
        key = watermark.key_bytes(tenant, entity)
        return [
            watermark.decode(value)
            for _tid, txn in self.transactions()
            for topic, k, value in txn
            if topic.endswith(".watermarks") and k == key and value is not None
        ]

    def backfills(self, tenant: str) -> dict[str, BackfillState]:
        """The latest committed backfill state per entity of `tenant`."""
        return {
            k[1]: backfill_state.decode(v)
            for k, v in self.records(tenant).items()
            if len(k) == 3 and k[2] == backfill_state.BACKFILL
        }

    def rows(self, topic: str, tid: str | None = None) -> list[bytes]:
        """The keys committed to `topic` (by transactional id `tid` only, when given)."""
        return [
            key
            for by, txn in self.transactions()
            if tid is None or by == tid
            for t, key, _ in txn
            if t == topic
        ]


class FakePublisher:
    """TransactionalPublisher's interface, in memory."""

    def __init__(self, log: FakeLog, transactional_id: str = "fake") -> None:
        self.log = log
        self.transactional_id = transactional_id
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
        txn, self._txn = self._txn, None
        self.log._commit(self.transactional_id, txn)

    def abort(self) -> None:
        if self._txn is not None:
            self.log.aborted.append(self._txn)
            self._txn = None

    def queue_length(self) -> int:
        return 0

    def close(self) -> None:
        self.abort()
        self.closed = True


def install(monkeypatch: pytest.MonkeyPatch, log: FakeLog | None = None) -> FakeLog:
    """The Kafka side of the run loop and of the backfill runner replaced by a FakeLog."""
    log = log or FakeLog()

    def publisher(_kafka: object, transactional_id: str, *_a: object, **_k: object) -> Any:
        return FakePublisher(log, transactional_id)

    def stored(_k: object, _topic: str, tenant: str, **_kw: object) -> Stored:
        return Stored(log.watermarks(tenant), log.backfills(tenant))

    for module in (runner_module, backfill_module):
        monkeypatch.setattr(module, "TransactionalPublisher", publisher)
        monkeypatch.setattr(module, "ensure_topics", lambda *_a, **_k: None)
        monkeypatch.setattr(module, "read_limits", lambda *_a, **_k: MessageLimits())
    if hasattr(runner_module, "preflight"):
        monkeypatch.setattr(runner_module, "preflight", lambda *_a, **_k: None)
    monkeypatch.setattr(watermark, "load", lambda _k, _topic, tenant, **_kw: log.watermarks(tenant))
    monkeypatch.setattr(runner_module, "load_all", stored)
    monkeypatch.setattr(backfill_state, "load_all", stored)
    return log


# ---------------------------------------------------------------------------------- source


def sqlite_source(
    path: Path, *statements: str, rows: Mapping[str, Iterable[tuple[Any, ...]]]
) -> str:
    """A SQLite file made by `statements`, with `rows` inserted per table; its URL."""
    with sqlite3.connect(path) as conn:
        for stmt in statements:
            conn.execute(stmt)
        for table, values in rows.items():
            values = list(values)
            if values:
                marks = ", ".join("?" * len(values[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)  # noqa: S608
    conn.close()
    return f"sqlite:///{path}"


def execute(url: str, *statements: str) -> None:
    """Change the source under a running poller (autocommit, one statement at a time)."""
    with sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None) as conn:
        for stmt in statements:
            conn.execute(stmt)
    conn.close()


def customers_entity(**extra: Any) -> dict[str, Any]:
    """The customers entity over `customers (id INTEGER PRIMARY KEY, full_name TEXT)`."""
    return {
        "table": "customers",
        "key": "id",
        "fields": {"local_id": "id", "full_name": "full_name"},
        "batching": {"mode": "id", "column": "id"},
        **extra,
    }


def config(
    url: str,
    entities: Mapping[str, Any],
    retry: tuple[float, float] = (0.001, 0.001),
    **source: Any,
) -> AppConfig:
    """A tenant's configuration with no metrics server; `retry`: the initial and the maximum
    backoff (fast by default)."""
    return parse_config(
        {
            "tenant": TENANT,
            "source": {"url": url, **source},
            "kafka": {
                "bootstrap_servers": "127.0.0.1:1",
                "topic_prefix": "unit",
                "format": "single_object",
            },
            "entities": dict(entities),
            "metrics": {"enabled": False},
            "retry": {"initial_backoff_s": retry[0], "max_backoff_s": retry[1]},
        }
    )


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def keys(*ids: int, tenant: str = TENANT) -> list[bytes]:
    """The message keys of the rows with these ids (single_object format)."""
    return [json.dumps([tenant, i], separators=(",", ":")).encode() for i in ids]


# ---------------------------------------------------------------------------- running loop


class Running:
    """A continuous `Poller.run()` in a thread, stopped (and joined) on exit."""

    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="poller")

    def _run(self) -> None:
        try:
            self.poller.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Running:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        self.poller.stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the poller did not stop within {timeout}s"

    def ended(self, timeout: float) -> BaseException | None:
        """Wait for the loop to end on its own; its error (None: it returned)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the poller still runs after {timeout}s"
        return self.error

    def wait_until(self, what: str, check: Callable[[], T | None], timeout: float = 20.0) -> T:
        """Poll `check` until it returns a value; fails naming `what` (or the loop's error)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.error is not None:
                pytest.fail(f"the poller stopped while waiting for {what}: {self.error!r}")
            found = check()
            if found is not None and found is not False:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout}s")
            time.sleep(0.01)
