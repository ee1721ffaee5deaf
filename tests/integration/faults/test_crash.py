"""SIGKILL at random moments while the table grows: whatever was in flight is aborted, the
restarted poller resumes from the committed watermark, and a read_committed consumer sees every
row exactly once."""

from __future__ import annotations

import time

import pytest

from tests.integration.faults.harness import (
    SEED,
    PollerProcess,
    Scenario,
    SourceDB,
    customers_entity,
    read_committed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 200_000  # seeded at first, and again whenever fewer than AHEAD rows are left to copy
AHEAD = 100_000  # at every start: a fast machine must not run out of rows before the kills end
BATCH = 5_000
# How each kill picks its moment; shuffled with the seeded generator.
MOMENTS = ["start-up"] * 2 + ["after commits"] * 3 + ["rows in flight"] * 2
MIN_KILLS_MID_RUN = 5


def kill_at(scenario: Scenario, proc: PollerProcess, moment: str) -> str:
    """Wait for the moment, SIGKILL the poller; say when it was."""
    rng = scenario.rng
    if moment == "start-up":  # loading, fencing the previous producer, first batch
        delay = rng.uniform(0.3, 2.5)
        time.sleep(delay)
        when = f"{delay:.2f}s after start"
    elif moment == "after commits":  # often lands inside the next transaction
        k, jitter = rng.randint(1, 3), rng.uniform(0.0, 0.3)
        scenario.wait_for_batches(k, timeout=90, watch=[proc])
        time.sleep(jitter)
        when = f"{k} commit(s) + {jitter:.2f}s"
    else:  # a transaction has rows on the broker and has not committed yet
        caught = scenario.kill_in_transaction(proc, scenario.topic("customers"), 90)
        assert caught, f"the poller ended by itself:\n{proc.describe()}"
        return "rows of an open transaction on the broker (left open: confirmed)"
    assert proc.alive(), f"the poller died by itself before the kill:\n{proc.describe()}"
    proc.kill()
    return when


def copied(scenario: Scenario) -> int:
    wm = scenario.stored("customers", after_kill=True)
    return 0 if wm is None else int(wm.position.cursor)


def test_sigkill_at_random_moments_then_exactly_once(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.seed_customers(ROWS)
    seeded = ROWS
    cfg = scenario.config(pg.url, {"customers": customers_entity("id", batch_size=BATCH)})
    moments = list(MOMENTS)
    scenario.rng.shuffle(moments)

    kills: list[str] = []
    mid_run = cursor = 0
    for n, moment in enumerate(moments, 1):
        # The source grows between crashes, as a live one does. Without it a fast machine
        # (the native path copies 200k rows in under a second) finished the table before the
        # later kills, and "rows in flight" waited for a transaction that never came.
        if seeded - cursor < AHEAD:
            pg.seed_customers(ROWS, first=seeded + 1)
            seeded += ROWS
            kills.append(f"rows {seeded - ROWS + 1}..{seeded} inserted")
        proc = scenario.start(cfg, label=f"killed-{n}")
        when = kill_at(scenario, proc, moment)
        cursor = copied(scenario)
        mid_run += cursor < seeded
        kills.append(f"kill {n} at {when}: committed watermark {cursor} of {seeded}")

    summary = "\n  ".join(kills)
    assert mid_run >= MIN_KILLS_MID_RUN, (
        f"only {mid_run} of {len(moments)} kills hit an unfinished run (seed {SEED}); AHEAD is "
        f"too small for this machine's speed:\n  {summary}"
    )
    assert "confirmed" in summary, (
        f"no kill left an open transaction with rows on the broker (seed {SEED}):\n  {summary}"
    )

    scenario.run_once(cfg, timeout=180, label="final")
    expected = pg.customers()
    assert len(expected) == seeded
    scenario.verify_exactly_once("customers", expected)

    shown = scenario.offsets(cfg)["customers"]
    assert shown["cursor"] == seeded == pg.max_cursor("id"), shown
    assert shown["rows_total"] == seeded, f"rows_total counts re-published rows: {shown}"

    # The killed transactions' rows are in the log, aborted: a read_uncommitted reader sees
    # them, the read_committed one above did not.
    uncommitted = read_committed(
        scenario.bootstrap, scenario.topic("customers"), isolation="read_uncommitted"
    )
    assert len(uncommitted) > seeded, f"no aborted rows in the log:\n  {summary}"
