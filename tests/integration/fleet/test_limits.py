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
        fleet.tenant_config(paced, source={**limits, "max_rows_per_second": RATE}, batch_size=240)
    )
    sampler = ActivitySampler(fleet.pg_url)
    sampler.start()
    fleet.wait_all_running([*slow, paced], timeout=120)

    # The counter moves a batch at a time: measure between its first and last move in the
    # window, so the rate is not off by a batch at either end.
    time.sleep(2)
    ((_at, started),) = worker.events(rf"tenant {paced}: started .*127\.0\.0\.1:(\d+)")
    child_port = int(started.group(1))  # its own /metrics: one small scrape, little delay
    changes: list[tuple[float, float]] = []
    end = time.monotonic() + 24
    while time.monotonic() < end:
        n = rows_read(fetch_text(child_port), paced)
        if n >= 0 and (not changes or n != changes[-1][1]):
            changes.append((time.monotonic(), n))
        time.sleep(0.1)
    sampler.stop()
    assert len(changes) >= 4, (changes, worker.describe())
    (t0, n0), (t1, n1) = changes[1], changes[-1]  # changes[0]: wherever the counter stood
    rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
    busy = sum(1 for n in sampler.samples if n >= CAP) / max(1, len(sampler.samples))
    print(
        f"\nmax_concurrent_queries {CAP}: peak {sampler.peak} sessions in a query over "
        f"{len(sampler.samples)} samples ({busy:.0%} of them at the cap); "
        f"max_rows_per_second {RATE:.0f}: measured {rate:.1f} rows/s"
    )
    assert sampler.peak <= CAP, sampler.peak
    assert sampler.peak == CAP, "the cap was never reached: the test would not notice a leak"
    phases = [
        line
        for line in worker.metrics().splitlines()
        if line.startswith("poller_batch_phase_seconds_sum") and paced in line
    ]
    assert abs(rate - RATE) <= 0.1 * RATE, (rate, changes, phases)
