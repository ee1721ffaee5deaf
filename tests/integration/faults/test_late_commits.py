"""Timestamp mode and transactions that commit late.

A row's timestamp is taken when its transaction writes it, but the row becomes visible only at
commit. The poller reads up to (database now - settle_delay_s), so a transaction that commits
within the settle delay is never skipped even though a later-stamped row committed first. One
that stays open longer than that can be missed: the second test pins that documented limit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.faults.harness import (
    PollerProcess,
    Scenario,
    SourceDB,
    bounded_connect_args,
    customers_entity,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEEDED = 10
T1_ID, T2_ID = 1_001, 1_002
# `now()` is the transaction's start; stored as naive UTC like the rest of the table.
INSERT_NOW = (
    "INSERT INTO customers (id, full_name, updated_at) "
    "VALUES (:id, :name, (now() AT TIME ZONE 'UTC')::timestamp(6)) RETURNING updated_at"
)


@pytest.fixture
def tx_engine(pg: SourceDB) -> Iterator[sa.Engine]:
    """An engine whose connections run real transactions (the `pg` one autocommits)."""
    engine = sa.create_engine(pg.url, poolclass=NullPool, connect_args=bounded_connect_args(pg.url))
    yield engine
    engine.dispose()


def start_caught_up(
    scenario: Scenario, pg: SourceDB, settle: float
) -> tuple[PollerProcess, object]:
    """A continuous poller (0.3 s polls) that has published the seeded rows."""
    pg.create_customers()
    pg.seed_customers(SEEDED)
    cfg = scenario.config(
        pg.url,
        {
            "customers": customers_entity(
                "timestamp", batch_size=1_000, settle_delay_s=settle, poll_interval_s=0.3
            )
        },
    )
    proc = scenario.start(cfg, label="poller")
    seeded_max = pg.max_cursor("updated_at")
    scenario.wait_for_cursor("customers", seeded_max, timeout=60, watch=[proc])
    return proc, seeded_max


def test_commit_within_settle_delay_is_delivered(
    scenario: Scenario, pg: SourceDB, tx_engine: sa.Engine
) -> None:
    settle = 5.0
    proc, seeded_max = start_caught_up(scenario, pg, settle)

    with tx_engine.connect() as t1:
        t1_stamp = t1.execute(sa.text(INSERT_NOW), {"id": T1_ID, "name": "T1"}).scalar_one()
        # T2 starts later, stamps later, and commits first.
        wait_for(
            lambda: pg.scalar("SELECT (now() AT TIME ZONE 'UTC') > :t", {"t": t1_stamp}),
            5,
            "the database clock to pass T1's stamp",
            interval=0.01,
        )
        with tx_engine.begin() as t2:
            t2_stamp = t2.execute(sa.text(INSERT_NOW), {"id": T2_ID, "name": "T2"}).scalar_one()
        assert t2_stamp > t1_stamp
        # The poller polls every 0.3 s meanwhile; T2's row is visible, T1's is not yet.
        wait_for(
            lambda: pg.scalar(
                "SELECT (now() AT TIME ZONE 'UTC') - :t > interval '3 s'", {"t": t1_stamp}
            ),
            10,
            "3 s to pass since T1's stamp",
            interval=0.05,
            watch=[proc],
        )
        wm = scenario.stored("customers")
        assert wm is not None and wm.position.cursor == seeded_max, (
            f"the watermark moved to {wm} while T1 (stamped {t1_stamp}) was still open"
        )
        t1.commit()  # within the settle delay of its stamp

    scenario.wait_for_cursor("customers", t2_stamp, timeout=30, watch=[proc])
    scenario.verify_exactly_once("customers", pg.customers())


def test_commit_after_settle_delay_may_be_missed(
    scenario: Scenario, pg: SourceDB, tx_engine: sa.Engine
) -> None:
    """The documented limit: a transaction open longer than settle_delay_s after stamping its
    rows can commit behind the watermark, and those rows are not read."""
    settle = 1.0
    proc, _ = start_caught_up(scenario, pg, settle)

    with tx_engine.connect() as t1:
        t1_stamp = t1.execute(sa.text(INSERT_NOW), {"id": T1_ID, "name": "T1"}).scalar_one()
        wait_for(
            lambda: pg.scalar("SELECT (now() AT TIME ZONE 'UTC') > :t", {"t": t1_stamp}),
            5,
            "the database clock to pass T1's stamp",
            interval=0.01,
        )
        with tx_engine.begin() as t2:
            t2_stamp = t2.execute(sa.text(INSERT_NOW), {"id": T2_ID, "name": "T2"}).scalar_one()
        scenario.wait_for_cursor("customers", t2_stamp, timeout=30, watch=[proc])
        t1.commit()  # settle delay long gone: T1's row is behind the watermark

    # Several more polls: T1's row stays unread.
    polls_after = dt.timedelta(seconds=settle + 2)
    wait_for(
        lambda: pg.scalar(
            "SELECT (now() AT TIME ZONE 'UTC') - :t > :d", {"t": t2_stamp, "d": polls_after}
        ),
        15,
        "a few more polls",
        interval=0.1,
        watch=[proc],
    )
    delivered = scenario.delivery("customers")
    assert str(T2_ID) in delivered.by_id
    assert str(T1_ID) not in delivered.by_id, (
        "T1's late row was delivered after all: the limit is gone, update the README"
    )
    wm = scenario.stored("customers")
    assert wm is not None and wm.position.cursor == t2_stamp, wm
