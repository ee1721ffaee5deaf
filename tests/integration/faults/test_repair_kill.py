"""SIGKILL during `poller verify --repair`, with the live poller running: what the killed repair
had not committed never becomes visible, the next repair finishes the job, every deleted key
ends with exactly one committed tombstone, and the live poller is neither fenced nor moved."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.faults.harness import (
    SEED,
    PollerProcess,
    Scenario,
    SourceDB,
    customers_entity,
    read_committed,
)
from tests.integration.faults.waits import poller_argv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 20_000
DELETED = range(2, ROWS + 1, 2)  # every even id
ATTEMPTS = 4


def kill_mid_transaction(scenario: Scenario, config: Path, attempt: int) -> bool:
    """Run a repair and SIGKILL it while one of its transactions (after a first committed
    one) has rows on the broker; False when it finished before such a moment was seen."""
    topic = scenario.topic("customers")
    argv = poller_argv("verify", "--config", str(config), "--repair", "--rows-per-s", "4000")
    repair = PollerProcess(argv, scenario.dir / f"repair-{attempt}.log", f"repair-{attempt}")
    scenario.procs.append(repair)
    start = scenario.ends.committed(topic)
    if scenario.kill_in_transaction(
        repair, topic, 120, lambda: scenario.ends.committed(topic) > start
    ):
        return True
    assert repair.returncode == 0, repair.describe()
    return False


def test_sigkill_during_repair_then_exactly_one_tombstone_per_key(
    scenario: Scenario, pg: SourceDB
) -> None:
    pg.create_customers()
    pg.seed_customers(ROWS)
    entity = customers_entity("id", batch_size=5_000, poll_interval_s=0.5)
    config = scenario.config(pg.url, {"customers": entity})
    live = scenario.start(config, label="live")
    wm = scenario.wait_for_cursor("customers", ROWS, 120, watch=[live])
    pg.execute("DELETE FROM customers WHERE id % 2 = 0")

    topic = scenario.topic("customers")
    in_flight = False
    for attempt in range(1, ATTEMPTS + 1):
        # Odd rows changed behind the poller's back (id mode never sees updates): ~2 KB values
        # to re-publish, so a repair transaction stays open long enough to be caught.
        pg.execute(
            "UPDATE customers SET full_name = repeat(md5(id::text || :a), 60)",
            params={"a": str(attempt)},
        )
        in_flight = kill_mid_transaction(scenario, config, attempt)
        if in_flight:
            break
    assert in_flight, f"no kill in {ATTEMPTS} attempts landed inside a repair transaction"

    # The live poller keeps going: new rows are published while the repair is half done.
    pg.seed_customers(10, first=ROWS + 1)
    scenario.wait_for_cursor("customers", ROWS + 10, 120, watch=[live])

    finish = scenario.cli("verify", "--config", str(config), "--repair", timeout=180)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    check = scenario.cli("verify", "--config", str(config), "--json", timeout=180)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)["entities"]["customers"]
    assert report["counts"]["equal"] == ROWS + 10 - len(DELETED), report["counts"]

    records = read_committed(scenario.bootstrap, topic)
    tombstones = Counter(json.loads(r.key)[1] for r in records if r.value is None)
    assert set(tombstones) == set(DELETED), (
        f"tombstones for {len(tombstones)} keys, {len(DELETED)} deleted (seed {SEED})"
    )
    twice = {k: n for k, n in tombstones.items() if n != 1}
    assert not twice, f"keys with more than one committed tombstone: {list(twice.items())[:5]}"
    uncommitted = read_committed(scenario.bootstrap, topic, isolation="read_uncommitted")
    assert len(uncommitted) > len(records), "no aborted repair records in the log"

    assert live.alive(), f"the live poller stopped (fenced?):\n{live.describe()}"
    stored = scenario.stored("customers")
    assert stored is not None and stored.position.cursor == ROWS + 10
    assert stored.rows_total == wm.rows_total + 10, "the repair moved the watermark"
    live.terminate()
    assert live.wait(60) == 0, live.describe()
