"""Transactions that commit late.

A row's cursor (a timestamp, an id) is taken when its transaction writes it, but the row becomes
visible only at commit. With `horizon: transactions` (the default) the poller reads only rows no
still-open transaction can commit behind: a transaction held open far longer than the settle
delay is published exactly once, on PostgreSQL and MariaDB, in timestamp and id modes, and the
metrics show how long it held the poller back. With `horizon: settle` the poller reads up to
(database now - settle_delay_s): a commit within the settle delay is delivered, a later one can
be missed (the documented limit, pinned below).
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
    free_port,
    metric,
    scrape,
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
    """A continuous poller (0.3 s polls, settle-delay horizon) that has published the seeded
    rows."""
    pg.create_customers()
    pg.seed_customers(SEEDED)
    cfg = scenario.config(
        pg.url,
        {
            "customers": customers_entity(
                "timestamp", batch_size=1_000, settle_delay_s=settle, poll_interval_s=0.3
            )
        },
        source={"horizon": "settle"},
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
        "T1's late row was delivered after all: the limit is gone, update docs/concepts.md"
    )
    wm = scenario.stored("customers")
    assert wm is not None and wm.position.cursor == t2_stamp, wm


# --------------------------------------------------------------- the transaction horizon

HOLD_S = 10.0  # far longer than the settle delay (0) and the poll interval (0.3 s)
NOW_UTC = {
    "postgresql": "(now() AT TIME ZONE 'UTC')::timestamp(6)",  # the transaction's start
    "mysql": "UTC_TIMESTAMP(6)",  # the statement's time: T1 writes first thing
}


def _insert_now(db: SourceDB, conn: sa.Connection, row_id: int, name: str) -> object:
    conn.execute(
        sa.text(
            "INSERT INTO customers (id, full_name, updated_at) "  # noqa: S608 - fixed text
            f"VALUES (:id, :name, {NOW_UTC[db.dialect]})"
        ),
        {"id": row_id, "name": name},
    )
    return conn.execute(
        sa.text("SELECT updated_at FROM customers WHERE id = :id"), {"id": row_id}
    ).scalar_one()


def _db_seconds_since(db: SourceDB, stamp: object) -> float:
    now = db.scalar(f"SELECT {NOW_UTC[db.dialect]}")
    assert isinstance(now, dt.datetime) and isinstance(stamp, dt.datetime)
    return (now - stamp).total_seconds()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@pytest.mark.parametrize("mode", ["timestamp", "id"])
def test_long_transaction_is_published_exactly_once(
    backend: str, mode: str, scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    """T1 writes a row stamped at its start (id 1001) and stays open HOLD_S seconds; T2 writes a
    later row (id 1002, a later stamp) and commits at once. With settle_delay_s 0 the old poller
    published T2's row and lost T1's. Now T2's row waits behind T1, both are published once
    T1 commits, and poller_horizon_holdback_seconds shows the wait."""
    db: SourceDB = request.getfixturevalue("pg" if backend == "postgresql" else "maria")
    db.create_customers()
    db.seed_customers(SEEDED)
    port = free_port()
    entity = customers_entity(mode, batch_size=1_000, settle_delay_s=0, poll_interval_s=0.3)
    proc = scenario.start(scenario.config(db.url, {"customers": entity}, metrics_port=port))
    seeded = db.max_cursor("id" if mode == "id" else "updated_at")
    scenario.wait_for_cursor("customers", seeded, timeout=60, watch=[proc])

    tx = sa.create_engine(db.url, poolclass=NullPool, connect_args=bounded_connect_args(db.url))
    try:
        with tx.connect() as t1:
            t1_stamp = _insert_now(db, t1, T1_ID, "T1")
            wait_for(lambda: _db_seconds_since(db, t1_stamp) > 0.01, 5, "the clock to pass T1")
            with tx.begin() as t2:
                t2_stamp = _insert_now(db, t2, T2_ID, "T2")
            assert t2_stamp > t1_stamp  # type: ignore[operator]
            held: list[float] = []

            def holding() -> bool:
                value = metric(scrape(port), "poller_horizon_holdback_seconds", entity="customers")
                if value:
                    held.append(value)
                return _db_seconds_since(db, t1_stamp) > HOLD_S

            wait_for(holding, HOLD_S + 20, f"{HOLD_S}s with T1 open", interval=0.5, watch=[proc])
            wm = scenario.stored("customers")
            assert wm is not None and wm.position.cursor == seeded, (
                f"the watermark moved to {wm} while T1 (stamped {t1_stamp}) was open"
            )
            assert held and max(held) > HOLD_S / 2, f"holdback gauge while T1 was open: {held}"
            active = metric(scrape(port), "poller_horizon_active", entity="customers")
            assert active == 1
            t1.commit()
    finally:
        tx.dispose()
    last = T2_ID if mode == "id" else t2_stamp
    scenario.wait_for_cursor("customers", last, timeout=30, watch=[proc])
    scenario.verify_exactly_once("customers", db.customers())
    wait_for(
        lambda: metric(scrape(port), "poller_horizon_holdback_seconds", entity="customers") == 0,
        15,
        "the holdback gauge to return to 0",
        watch=[proc],
    )
