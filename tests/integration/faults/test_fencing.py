"""Two pollers of one tenant: the newer one fences the older, which stops with exit code 3;
nothing is published twice."""

from __future__ import annotations

import re

import pytest

from tests.integration.faults.harness import Scenario, SourceDB, customers_entity

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 200_000
LATE_ROWS = 1_000


def test_second_poller_fences_the_first(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.seed_customers(ROWS)
    cfg = scenario.config(pg.url, {"customers": customers_entity("id", batch_size=5_000)})

    a = scenario.start(cfg, label="poller-A")
    scenario.wait_for_batches(2, timeout=90, watch=[a])
    b = scenario.start(cfg, once=True, label="poller-B")  # same tenant, same config
    rc_b = b.wait(timeout=180)
    assert rc_b == 0, f"poller B (the newer one) must finish:\n{b.describe()}\n{a.describe()}"

    # A may have been idle when B took over; new rows make it publish, which must fail.
    pg.seed_customers(LATE_ROWS, first=ROWS + 1)
    rc_a = a.wait(timeout=60)
    assert rc_a == 3, f"poller A must stop as fenced (exit 3), got {rc_a}:\n{a.describe()}"
    assert re.search(r"fenced|another poller", a.log(), re.IGNORECASE), a.describe()
    assert "fenced" not in b.log().lower(), b.describe()

    # What B published plus A's committed part: every row once, nothing of A's fenced batch.
    published = scenario.delivery("customers")
    early = {k: v for k, v in pg.customers().items() if int(k) <= ROWS}
    late_seen = {k for k in published.by_id if int(k) > ROWS}
    assert not late_seen, f"the fenced poller A published {len(late_seen)} rows after B's run"
    scenario.verify_exactly_once("customers", early, published)

    # A third run picks the late rows up: still every row exactly once.
    scenario.run_once(cfg, timeout=120, label="poller-C")
    scenario.verify_exactly_once("customers", pg.customers())
    shown = scenario.offsets(cfg)["customers"]
    assert shown["cursor"] == ROWS + LATE_ROWS and shown["rows_total"] == ROWS + LATE_ROWS, shown
