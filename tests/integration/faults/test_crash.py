"""SIGKILL at random moments: whatever was in flight is aborted, the restarted poller resumes
from the committed watermark, and a read_committed consumer sees every row exactly once."""

from __future__ import annotations

import time

import pytest

from tests.integration.faults.conftest import (
    SEED,
    Scenario,
    SourceDB,
    customers_entity,
    read_committed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 200_000
BATCH = 5_000
KILLS = 7
MIN_KILLS_MID_RUN = 5


def test_sigkill_at_random_moments_then_exactly_once(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.seed_customers(ROWS)
    expected = pg.customers()
    cfg = scenario.config(pg.url, {"customers": customers_entity("id", batch_size=BATCH)})
    rng = scenario.rng

    kills: list[str] = []
    mid_run = 0
    for n in range(1, KILLS + 1):
        proc = scenario.start(cfg, label=f"killed-{n}")
        if rng.random() < 0.3:
            # Any moment after the start: start-up, fencing the previous producer, first batch.
            delay = rng.uniform(0.3, 2.5)
            time.sleep(delay)
            moment = f"{delay:.2f}s after start"
        else:
            # After k more commits, plus a jitter that often lands inside a transaction.
            k, jitter = rng.randint(1, 3), rng.uniform(0.0, 0.3)
            scenario.wait_for_batches(k, timeout=90, watch=[proc])
            time.sleep(jitter)
            moment = f"{k} batch(es) + {jitter:.2f}s"
        assert proc.alive(), f"the poller died by itself before kill {n}:\n{proc.describe()}"
        proc.kill()
        wm = scenario.stored("customers")
        cursor = None if wm is None else wm.position.cursor
        mid_run += cursor != ROWS
        kills.append(f"kill {n} at {moment}: committed watermark {cursor}")

    summary = "\n  ".join(kills)
    assert mid_run >= MIN_KILLS_MID_RUN, (
        f"only {mid_run} of {KILLS} kills hit an unfinished run (seed {SEED}); the table is "
        f"too small for this machine's speed:\n  {summary}"
    )

    scenario.run_once(cfg, timeout=180, label="final")
    scenario.verify_exactly_once("customers", expected)

    shown = scenario.offsets(cfg)["customers"]
    assert shown["cursor"] == ROWS == pg.max_cursor("id"), shown
    assert shown["rows_total"] == ROWS, f"rows_total counts re-published rows: {shown}"

    # The kills did land inside open transactions: their rows reached the log, then were
    # aborted (a read_uncommitted reader sees them, read_committed does not).
    uncommitted = read_committed(scenario.bootstrap, scenario.topic("customers"),
                                 isolation="read_uncommitted")
    assert len(uncommitted) > ROWS, (
        f"no kill interrupted a transaction with rows in flight (seed {SEED}):\n  {summary}"
    )
