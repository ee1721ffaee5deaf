"""Database load limits: query slots shared by processes through lock files (released when a
holder dies, even by SIGKILL), and the row-rate token bucket."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from poller.config import SourceConfig
from poller.source import limits as limits_module
from poller.source.limits import QuerySlots, RowRate, SourceLimits, source_key


def _hold(directory: str, key: str, slots: int, log: str, rounds: int) -> None:
    qs = QuerySlots(Path(directory), key, slots)
    for _ in range(rounds):
        with qs.hold():
            with open(log, "a") as f:
                f.write(f"+ {time.monotonic()}\n")
            time.sleep(0.02)
            with open(log, "a") as f:
                f.write(f"- {time.monotonic()}\n")


def test_slots_cap_concurrency_across_processes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_hold, args=(str(tmp_path), "k", 2, str(log), 15)) for _ in range(5)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events = sorted(
        (float(t), 1 if sign == "+" else -1)
        for sign, t in (line.split() for line in log.read_text().splitlines())
    )
    running, peak = 0, 0
    for _t, delta in events:
        running += delta
        peak = max(peak, running)
    assert len(events) == 5 * 15 * 2
    assert peak == 2, peak  # never more, and reached (5 processes competed)


def _hold_forever(directory: str) -> None:
    qs = QuerySlots(Path(directory), "k", 1)
    with qs.hold():
        time.sleep(60)


def test_a_killed_holder_releases_its_slot(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_hold_forever, args=(str(tmp_path),))
    p.start()
    qs = QuerySlots(tmp_path, "k", 1)
    deadline = time.monotonic() + 30
    while not (tmp_path / "k.0.lock").exists() or qs._try(0):  # until the child holds it
        if (tmp_path / "k.0.lock").exists():
            qs._release(0)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    got = threading.Event()

    def take() -> None:
        with qs.hold():
            got.set()

    threading.Thread(target=take, daemon=True).start()
    assert got.wait(10), "the dead holder's slot was not released"


def test_threads_of_one_process_share_the_cap(tmp_path: Path) -> None:
    qs = QuerySlots(tmp_path, "k", 1)
    inside, peak = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        for _ in range(10):
            with qs.hold():
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.005)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1


def test_row_rate_holds_the_cap() -> None:
    rate = RowRate(200, threading.Event())
    rate.take(200, rate.wait())  # one second's worth: the steady rate follows
    start, rows = time.monotonic(), 0
    while rows < 300:
        rate.take(20, rate.wait())
        rows += 20
    elapsed = time.monotonic() - start
    # 200 rows, then 15 reads of 20 at 200/s: the last starts 1 s + 14 x 0.1 s after the first.
    assert 2.35 <= elapsed <= 2.9, elapsed


class _Clock(threading.Event):
    """A fake monotonic clock whose waits advance it instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        self.now += timeout or 0.0
        return False


def test_row_rate_never_makes_up_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow commit (a pause of the run loop) is not made up by a burst afterwards: between
    the starts of any two reads, the rows read stay within the cap (issue 16 item 19)."""
    clock = _Clock()
    monkeypatch.setattr(limits_module.time, "monotonic", clock.monotonic)
    cap, batch = 60.0, 240
    rate = RowRate(cap, clock)
    starts: list[tuple[float, int]] = []
    for i in range(12):
        started = rate.wait()
        clock.now += 0.2  # the query
        rate.take(batch, started)
        starts.append((started, batch))
        clock.now += 9.0 if i == 4 else 0.3  # encode + commit; one slow commit
    for i in range(len(starts)):
        for j in range(i + 1, len(starts)):
            rows = sum(n for _, n in starts[i:j])
            assert rows <= cap * (starts[j][0] - starts[i][0]) + 1e-6, (i, j, starts)
    # and the cap is reached, not undershot, while the loop keeps up
    assert starts[3][0] - starts[2][0] == pytest.approx(batch / cap)


def test_source_key_ignores_credentials_and_limits_are_optional(tmp_path: Path) -> None:
    a = SourceConfig(url="postgresql+psycopg2://a:x@db:5432/crm")
    b = SourceConfig(url="postgresql+psycopg2://b:y@db:5432/crm")
    c = SourceConfig(url="postgresql+psycopg2://a:x@db:5432/other")
    assert source_key(a) == source_key(b) != source_key(c)
    limits = SourceLimits(a, threading.Event())
    fetch = limits.fetcher(len, len)
    assert fetch is len  # nothing configured: not even a wrapper
    limits.close()
