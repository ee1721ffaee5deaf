"""A writer queued behind a table lock, end to end on MariaDB (issue 16, item 3).

MariaDB stamps `UTC_TIMESTAMP(6)` at the statement's start, but lists the transaction in
`innodb_trx` only once InnoDB is touched, after any table or metadata lock wait. W's
`INSERT ... SELECT ... FROM lockme` waits behind `LOCK TABLES lockme WRITE` with its stamp taken;
X commits a newer row and the poller turns every 0.3 s (settle_delay_s 0). The old poller
published X's row and moved its watermark past W's stamp: W's row was never read. Now the
watermark waits for W and both rows are in the topic exactly once.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.faults.harness import (
    Scenario,
    SourceDB,
    bounded_connect_args,
    customers_entity,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEEDED = 10
W_ID, X_ID = 1_001, 1_002
WAIT_S = 3.0  # how long W queues: far above the list's 1 s slack and the 0.3 s polls


def test_writer_queued_behind_a_table_lock_is_published(
    scenario: Scenario, maria: SourceDB
) -> None:
    maria.create_customers()
    maria.seed_customers(SEEDED)
    maria.execute("CREATE TABLE lockme (x INT)", "INSERT INTO lockme VALUES (1)")
    entity = customers_entity("timestamp", batch_size=1_000, settle_delay_s=0, poll_interval_s=0.3)
    proc = scenario.start(scenario.config(maria.url, {"customers": entity}))
    seeded = maria.max_cursor("updated_at")
    scenario.wait_for_cursor("customers", seeded, timeout=60, watch=[proc])

    tx = sa.create_engine(
        maria.url, poolclass=NullPool, connect_args=bounded_connect_args(maria.url)
    )
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            with tx.begin() as w:  # autocommit off: commits when the block ends
                w.execute(
                    sa.text(
                        "INSERT INTO customers (id, full_name, updated_at) "
                        "SELECT :id, 'W', UTC_TIMESTAMP(6) FROM lockme"
                    ),
                    {"id": W_ID},
                )
        except BaseException as exc:  # reported by the test thread
            failed.append(exc)

    try:
        with maria.engine.connect() as lock:  # autocommit, as a backup's lock session
            lock.execute(sa.text("LOCK TABLES lockme WRITE"))
            w_thread = threading.Thread(target=writer, daemon=True)
            w_thread.start()
            queued = (
                "SELECT COALESCE(MAX(TIME_MS), 0) FROM information_schema.PROCESSLIST "
                "WHERE INFO LIKE 'INSERT INTO customers %' AND STATE LIKE '%lock%'"
            )
            wait_for(lambda: float(maria.scalar(queued) or 0) > 500, 30, "W to queue")
            maria.execute(
                "INSERT INTO customers (id, full_name, updated_at) "
                "VALUES (:id, 'X', UTC_TIMESTAMP(6))",
                params={"id": X_ID},
            )
            wait_for(
                lambda: float(maria.scalar(queued) or 0) > WAIT_S * 1000,
                30,
                f"W to have queued {WAIT_S}s while the poller turns",
                watch=[proc],
            )
            wm = scenario.stored("customers")
            assert wm is not None and wm.position.cursor == seeded, (
                f"the watermark moved to {wm} while W (stamped) was queued"
            )
            lock.execute(sa.text("UNLOCK TABLES"))
        w_thread.join(30)
        assert not failed and not w_thread.is_alive(), failed
    finally:
        tx.dispose()
    x_stamp = maria.scalar("SELECT updated_at FROM customers WHERE id = :id", {"id": X_ID})
    scenario.wait_for_cursor("customers", x_stamp, timeout=30, watch=[proc])
    scenario.verify_exactly_once("customers", maria.customers())
