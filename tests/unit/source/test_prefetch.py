"""The prefetcher never lets two threads use one reader: a read that outlives `stop()`'s wait
keeps the reader busy, and the entity's next prefetcher refuses to start until it returns
(issue 16 item 17)."""

from __future__ import annotations

import threading

import pytest

from poller.batch import Batch, Position
from poller.errors import SourceError
from poller.source.prefetch import Prefetcher


class _StuckReader:
    """A fetch that blocks until released, and counts the threads inside it at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.inside = 0
        self.peak = 0
        self._lock = threading.Lock()

    def fetch(self, position: Position) -> Batch:
        with self._lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        self.entered.set()
        self.release.wait(10)
        with self._lock:
            self.inside -= 1
        return Batch(rows=[], last=None, db_now=None)


def test_a_read_that_outlives_stop_keeps_the_reader_busy() -> None:
    reader = _StuckReader()
    busy = threading.Lock()
    first = Prefetcher(reader.fetch, Position(None, None), 10, 5, busy=busy, what="entity 'x'")
    assert reader.entered.wait(5)
    assert first.stop(timeout=0.05) is False  # still inside the read
    with pytest.raises(SourceError, match="entity 'x': the previous read has not returned"):
        Prefetcher(reader.fetch, Position(None, None), 10, 5, busy=busy, what="entity 'x'")
    reader.release.set()
    assert first.stop(timeout=5) is True
    second = Prefetcher(reader.fetch, Position(None, None), 10, 5, busy=busy)
    assert list(second) == [Batch(rows=[], last=None, db_now=None)]
    assert second.stop(timeout=5) is True
    assert reader.peak == 1
    assert not busy.locked()


def test_a_failing_read_releases_the_reader() -> None:
    busy = threading.Lock()

    def fail(position: Position) -> Batch:
        raise SourceError("connection lost")

    prefetch = Prefetcher(fail, Position(None, None), 10, 5, busy=busy)
    with pytest.raises(SourceError, match="connection lost"):
        list(prefetch)
    assert prefetch.stop(timeout=5) is True
    assert not busy.locked()
