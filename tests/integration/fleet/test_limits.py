"""Database load limits on a worker: tenants of one database never run more queries at once
than `source.max_concurrent_queries` (seen from the database, in pg_stat_activity), and a
tenant reads at most `source.max_rows_per_second`."""

from __future__ import annotations

import re
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poller.fleet.metrics import fetch_text
from tests.integration.fleet.harness import Fleet, insert_rows

pytestmark = pytest.mark.integration

CAP = 2
RATE = 60.0
BATCH = 60  # a second's worth of rows: the granularity of the promise
WINDOW_S = 24.0
SLOW_QUERY = "SELECT c.* FROM customers c CROSS JOIN (SELECT pg_sleep(0.15)) AS s"


class ActivitySampler(threading.Thread):
    """Counts the database's client sessions inside a statement or transaction, every 10 ms."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="pg_stat_activity")
        self.engine = sa.create_engine(url, poolclass=NullPool)
        self.database = self.engine.url.database
        self.halt = threading.Event()
        self.peak = 0
        self.samples: list[int] = []

    def run(self) -> None:
        sql = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND state IN ('active', 'idle in transaction')"
        )
        with self.engine.connect() as conn:
            while not self.halt.wait(0.01):
                n = int(conn.execute(sql, {"db": self.database}).scalar_one())
                conn.rollback()
                self.samples.append(n)
                self.peak = max(self.peak, n)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        self.engine.dispose()


def rows_read(text: str, tenant: str) -> float:
    m = re.search(
        rf'^poller_rows_read_total\{{[^}}]*tenant="{re.escape(tenant)}"[^}}]*\}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(m.group(1)) if m else -1.0


def test_concurrent_queries_and_row_rate_stay_under_their_caps(fleet: Fleet) -> None:
    slow = [fleet.tenant_name(i) for i in range(4)]
    paced = fleet.tenant_name(9)
    engine = sa.create_engine(fleet.pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        insert_rows(conn, slow, 5)
        insert_rows(conn, [paced], 5000)
    engine.dispose()
    worker = fleet.start_worker()
    limits = {"max_concurrent_queries": CAP}
    for t in slow:  # every poll holds a query for 0.15 s
        fleet.put(
            fleet.tenant_config(t, source=limits, query=SLOW_QUERY, table=None, poll_interval_s=0.5)
        )
    fleet.put(
        fleet.tenant_config(paced, source={**limits, "max_rows_per_second": RATE}, batch_size=BATCH)
    )
    sampler = ActivitySampler(fleet.pg_url)
    sampler.start()
    fleet.wait_all_running([*slow, paced], timeout=120)

    # The promise, in a form the machine's load cannot blur: reads start at least BATCH / RATE
    # apart, so between any two instants W apart at most RATE * W + one batch is read, plus one
    # read begun before the window that lands in it (the counter moves when a read returns).
    # Each counter value is read between the times taken before and after its scrape, so the
    # window is taken at its widest for the upper bound.
    time.sleep(2)
    ((_at, started),) = worker.events(rf"tenant {paced}: started .*127\.0\.0\.1:(\d+)")
    child_port = int(started.group(1))  # its own /metrics: one small scrape, little delay
    t0 = time.monotonic()
    n0 = rows_read(fetch_text(child_port), paced)
    time.sleep(WINDOW_S)
    n1 = rows_read(fetch_text(child_port), paced)
    t1 = time.monotonic()
    sampler.stop()
    assert n0 >= 0 and n1 >= 0, worker.describe()
    window = t1 - t0
    rate = (n1 - n0) / window
    busy = sum(1 for n in sampler.samples if n >= CAP) / max(1, len(sampler.samples))
    print(
        f"\nmax_concurrent_queries {CAP}: peak {sampler.peak} sessions in a query over "
        f"{len(sampler.samples)} samples ({busy:.0%} of them at the cap); "
        f"max_rows_per_second {RATE:.0f}: {n1 - n0:.0f} rows in {window:.1f} s ({rate:.1f}/s)"
    )
    assert sampler.peak <= CAP, sampler.peak
    assert sampler.peak == CAP, "the cap was never reached: the test would not notice a leak"
    phases = [
        line
        for line in worker.metrics().splitlines()
        if line.startswith("poller_batch_phase_seconds_sum") and paced in line
    ]
    assert n1 - n0 <= RATE * window + 2 * BATCH, (n1 - n0, window, phases)
    # and the tenant is paced, not stalled (the loop may fall behind the cap on a busy machine)
    assert n1 - n0 >= 0.5 * RATE * window, (n1 - n0, window, phases)
