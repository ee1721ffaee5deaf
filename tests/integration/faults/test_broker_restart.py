"""The broker goes down in the middle of a run and comes back: the poller waits, retries and
finishes, and every row is in the topic exactly once.

The test stops a broker of its own (`own_kafka`), never the shared one on 9092, so the tests
running beside it are not disturbed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.faults.broker import DedicatedKafka
from tests.integration.faults.harness import SEED, Scenario, SourceDB, customers_entity

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 200_000


@pytest.fixture
def own_scenario(
    request: pytest.FixtureRequest, tmp_path: Path, own_kafka: DedicatedKafka
) -> Iterator[Scenario]:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30]
    sc = Scenario(tmp_path, own_kafka.bootstrap, name)
    yield sc
    sc.close()


def test_broker_restart_mid_run(
    own_scenario: Scenario, pg: SourceDB, own_kafka: DedicatedKafka
) -> None:
    scenario = own_scenario
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
    own_kafka.stop()
    assert proc.alive(), (
        f"the run ended before the broker went down; make the table bigger:\n{proc.describe()}"
    )
    down_for = scenario.rng.uniform(5, 10)
    time.sleep(down_for)
    assert proc.alive(), f"the poller gave up while the broker was down:\n{proc.describe()}"
    own_kafka.start()

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
