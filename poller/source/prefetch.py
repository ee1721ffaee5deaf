"""Reads an entity's next batches in a background thread while the current one is encoded and
committed, so the database, the encoder and the broker work at the same time. Bounded: at most
`depth` batches wait, so memory does not grow with the table."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from poller.source.query import Position
from poller.source.reader import Batch

_END = object()


class Prefetcher:
    def __init__(
        self,
        fetch: Callable[[Position], Batch],
        start: Position,
        batch_size: int,
        max_batches: int,
        depth: int = 1,
        on_fetch: Callable[[float], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._batch_size = batch_size
        self._max_batches = max_batches
        self._on_fetch = on_fetch
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(start,), daemon=True, name="prefetch"
        )
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

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
            if self._on_fetch is not None:
                self._on_fetch(time.perf_counter() - t0)
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

    def stop(self) -> None:
        self._stopped.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=60)
