"""Reads an entity's next batches in a background thread while the current one is encoded and
committed, so the database, the encoder and the broker work at the same time. Bounded: at most
`depth` batches wait, so memory does not grow with the table.

A reader keeps state between batches (the horizon's bounds), so it must never serve two threads:
a prefetcher holds the reader's `busy` lock from its start until its thread has returned, and a
new prefetcher of the same reader refuses to start while an old thread (a read that outlived
`stop()`'s wait, e.g. a query stuck on a dead connection) still holds it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from poller.batch import Batch, Position
from poller.errors import SourceError

_END = object()


class Prefetcher:
    def __init__(
        self,
        fetch: Callable[[Position], Batch],
        start: Position,
        batch_size: int,
        max_batches: int,
        depth: int = 1,
        on_fetch: Callable[[float, Batch], None] | None = None,
        busy: threading.Lock | None = None,
        what: str = "the entity",
    ) -> None:
        self._busy = busy if busy is not None else threading.Lock()
        if not self._busy.acquire(blocking=False):
            raise SourceError(
                f"{what}: the previous read has not returned yet; the next one waits for it "
                "(a reader never serves two threads)"
            )
        self._fetch = fetch
        self._batch_size = batch_size
        self._max_batches = max_batches
        self._on_fetch = on_fetch
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._guarded, args=(start,), daemon=True, name="prefetch"
        )
        try:
            self._thread.start()
        except BaseException:
            self._busy.release()
            raise

    def _put(self, item: object) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _guarded(self, position: Position) -> None:
        try:
            self._run(position)
        finally:
            self._busy.release()  # only once this thread is done with the reader

    def _run(self, position: Position) -> None:
        for _ in range(self._max_batches):
            if self._stopped.is_set():
                return
            t0 = time.perf_counter()
            try:
                batch = self._fetch(position)
            except BaseException as exc:  # handed to the consumer thread, which raises it
                self._put(exc)
                return
            if self._on_fetch is not None:  # as it is read: counters follow the database
                self._on_fetch(time.perf_counter() - t0, batch)
            if not self._put(batch):
                return
            if len(batch.rows) < self._batch_size or batch.last is None:
                return
            position = batch.last
        self._put(_END)

    def __iter__(self) -> Iterator[Batch]:
        """Yields batches until a short one (caught up) or the per-turn limit."""
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Batch)
            yield item
            if len(item.rows) < self._batch_size:
                return

    def stop(self, timeout: float = 60.0) -> bool:
        """Ask the thread to end and wait up to `timeout` seconds. False when it is still inside
        a read: it keeps the reader's `busy` lock until that read returns, so no other thread
        uses the reader meanwhile."""
        self._stopped.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()
