"""The broker goes down in the middle of a run and comes back: the poller waits, retries and
finishes, and every row is in the topic exactly once."""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.conftest import KafkaService
from tests.integration.faults.harness import SEED, Scenario, SourceDB, customers_entity

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 200_000


def test_broker_restart_mid_run(
    scenario: Scenario, pg: SourceDB, kafka_restart: KafkaService
) -> None:
    pg.create_customers()
    pg.seed_customers(ROWS)
    expected = pg.customers()
    cfg = scenario.config(
        pg.url,
        {"customers": customers_entity("timestamp", batch_size=5_000)},
        retry={"initial_backoff_s": 0.5, "max_backoff_s": 4},
    )

    proc = scenario.start(cfg, once=True, label="poller")
    scenario.wait_for_batches(2, timeout=90, watch=[proc])
    kafka_restart.stop()
    assert proc.alive(), (
        f"the run ended before the broker went down; make the table bigger:\n{proc.describe()}"
    )
    down_for = scenario.rng.uniform(5, 10)
    time.sleep(down_for)
    assert proc.alive(), f"the poller gave up while the broker was down:\n{proc.describe()}"
    kafka_restart.start()

    rc = proc.wait(timeout=300)
    assert rc == 0, f"exit {rc} after a {down_for:.1f}s broker outage (seed {SEED}):\n" + (
        proc.describe(80)
    )
    assert re.search(r"retry|refused", proc.log(), re.IGNORECASE), (
        f"the outage left no trace in the log:\n{proc.describe()}"
    )

    scenario.verify_exactly_once("customers", expected)
    last_cursor, last_id = pg.rows(
        "SELECT updated_at, id FROM customers ORDER BY updated_at DESC, id DESC LIMIT 1"
    )[0]
    shown = scenario.offsets(cfg)["customers"]
    assert (shown["cursor"], shown["key"]) == (str(last_cursor), last_id), shown
    assert shown["rows_total"] == ROWS, shown
