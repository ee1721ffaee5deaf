"""Database load limits: how many queries the tenants of one source database may run at once
(`source.max_concurrent_queries`), and how many rows a second one tenant may read
(`source.max_rows_per_second`).

The concurrency cap is a counting semaphore made of lock files: slot `i` of a source is held by
whoever holds an exclusive `flock` on `<dir>/<source key>.<i>.lock`. Every process that uses the
same directory shares the slots (a worker hands its own directory to all its tenants through
POLLER_LIMITS_DIR), and the kernel releases a slot when its holder dies, even by SIGKILL, so a
crashed tenant never leaks one. Without POLLER_LIMITS_DIR the slots are private to the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url

from poller.config import SourceConfig

LIMITS_DIR_ENV = "POLLER_LIMITS_DIR"

T = TypeVar("T")
R = TypeVar("R")

_POLL_S = 0.005  # first wait for a free slot; doubles up to _POLL_MAX_S
_POLL_MAX_S = 0.05


def source_key(source: SourceConfig) -> str:
    """Which database a source reads, without credentials: tenants with the same backend, host,
    port and database share the cap, whatever user they log in as."""
    url = make_url(source.url)
    ident = f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{url.database or ''}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


class QuerySlots:
    """At most `slots` queries at once on one source, across every process sharing `directory`."""

    def __init__(self, directory: Path, key: str, slots: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._paths = [directory / f"{key}.{i}.lock" for i in range(slots)]
        self._fds: list[int | None] = [None] * slots
        # flock belongs to the open file: two threads of one process on the same fd would both
        # "get" it, so each slot also has a thread lock.
        self._local = [threading.Lock() for _ in range(slots)]

    def _try(self, i: int) -> bool:
        if not self._local[i].acquire(blocking=False):
            return False
        fd = self._fds[i]
        if fd is None:
            fd = self._fds[i] = os.open(self._paths[i], os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self._local[i].release()
            return False

    def _release(self, i: int) -> None:
        fd = self._fds[i]
        assert fd is not None
        fcntl.flock(fd, fcntl.LOCK_UN)
        self._local[i].release()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for a free slot (polling with a short backoff, starting at a random slot so no
        slot is everyone's first choice), hold it for the block."""
        n = len(self._paths)
        wait = _POLL_S
        while True:
            start = random.randrange(n)
            for k in range(n):
                i = (start + k) % n
                if self._try(i):
                    try:
                        yield
                    finally:
                        self._release(i)
                    return
            time.sleep(wait * random.uniform(0.5, 1.5))
            wait = min(_POLL_MAX_S, wait * 2)

    def close(self) -> None:
        for i, fd in enumerate(self._fds):
            if fd is not None:
                os.close(fd)
                self._fds[i] = None


class RowRate:
    """Paces reads to `rows_per_second`: a read of n rows that started at s lets the next read
    start at s + n / rate at the earliest. Time the run loop spends beyond that (a slow commit, a
    busy CPU) is not banked for a later burst, so between the starts of any two reads the rows
    read never exceed the cap times the time between them: the cap a DBA sets holds over every
    stretch, not only on average."""

    def __init__(self, rows_per_second: float, stop: threading.Event) -> None:
        self.rate = rows_per_second
        self._stop = stop
        self._next = time.monotonic()  # the earliest start of the next read
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Wait until a read may start; returns its start time, to hand back to `take`."""
        while True:
            with self._lock:
                now = time.monotonic()
                if now >= self._next or self._stop.is_set():
                    return now
                delay = self._next - now
            self._stop.wait(delay)

    def take(self, rows: int, started: float) -> None:
        """The read that started at `started` returned `rows` rows."""
        with self._lock:
            self._next = max(self._next, started) + rows / self.rate


class SourceLimits:
    """Both limits of one tenant's source; a no-op when neither is configured."""

    def __init__(self, source: SourceConfig, stop: threading.Event) -> None:
        self._slots: QuerySlots | None = None
        self._private: tempfile.TemporaryDirectory[str] | None = None
        if source.max_concurrent_queries is not None:
            shared = os.environ.get(LIMITS_DIR_ENV)
            if shared:
                directory = Path(shared)
            else:
                self._private = tempfile.TemporaryDirectory(prefix="poller-limits-")
                directory = Path(self._private.name)
            self._slots = QuerySlots(directory, source_key(source), source.max_concurrent_queries)
        self._rate = (
            RowRate(source.max_rows_per_second, stop) if source.max_rows_per_second else None
        )

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        """Hold a query slot of the source (if capped) for the block."""
        if self._slots is None:
            yield
        else:
            with self._slots.hold():
                yield

    def fetcher(self, fetch: Callable[[T], R], rows: Callable[[R], int]) -> Callable[[T], R]:
        """`fetch` paced by the row rate and run inside a query slot."""
        if self._slots is None and self._rate is None:
            return fetch
        rate = self._rate

        def limited(arg: T) -> R:
            started = rate.wait() if rate is not None else 0.0
            with self.query():
                result = fetch(arg)
            if rate is not None:
                rate.take(rows(result), started)
            return result

        return limited

    def close(self) -> None:
        if self._slots is not None:
            self._slots.close()
        if self._private is not None:
            self._private.cleanup()
