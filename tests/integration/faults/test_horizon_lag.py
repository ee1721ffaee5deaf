"""Lag and heartbeats while the horizon holds back (issue 16, item 5, second half), and a
revoked role noticed while running (item 6).

Before: while an open transaction held the read bound back, the caught-up entity reported
`poller_watermark_lag_seconds` 0 and its heartbeats wrote `heartbeat_at` = the database's now,
so a consumer trusting "caught up at T" closed its windows over rows still to come. Both are now
measured against the read bound.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.integration.faults.harness import (
    Scenario,
    SourceDB,
    customers_entity,
    free_port,
    metric,
    scrape,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEEDED = 10
HOLD_S = 5.0


def test_lag_and_heartbeats_follow_the_read_bound_not_the_clock(
    scenario: Scenario, pg: SourceDB
) -> None:
    pg.create_customers()
    pg.seed_customers(SEEDED)
    port = free_port()
    entity = customers_entity("timestamp", poll_interval_s=0.3, heartbeat_interval_s=1)
    proc = scenario.start(scenario.config(pg.url, {"customers": entity}, metrics_port=port))
    scenario.wait_for_cursor("customers", pg.max_cursor("updated_at"), timeout=60, watch=[proc])
    tx = sa.create_engine(pg.url, poolclass=NullPool)
    try:
        with tx.connect() as t1:
            started = t1.execute(
                sa.text(
                    "INSERT INTO customers (id, full_name, updated_at) VALUES "
                    "(1001, 'T1', (now() AT TIME ZONE 'UTC')::timestamp(6)) RETURNING updated_at"
                )
            ).scalar_one()
            t1_start = started.replace(tzinfo=dt.UTC)

            def open_long_enough() -> bool:
                now = pg.scalar("SELECT now() AT TIME ZONE 'UTC'").replace(tzinfo=dt.UTC)
                return bool((now - t1_start).total_seconds() > HOLD_S)

            wait_for(open_long_enough, HOLD_S + 20, "T1 to be open a while", watch=[proc])
            lag = metric(scrape(port), "poller_watermark_lag_seconds", entity="customers")
            assert lag is not None and lag > HOLD_S / 2, f"lag {lag} while T1 holds the bound"

            # The newest record is a heartbeat (one a second) written while T1 was open: it
            # claims no more than T1's start (+ the settle delay, 1 s with the horizon).
            wm = scenario.stored("customers")
            at = wm.heartbeat_at if wm is not None else None
            assert at is not None, f"no heartbeat in {wm}"
            assert at <= t1_start + dt.timedelta(seconds=1.5), (
                f"heartbeat_at {at} is past the start of the open transaction {t1_start}"
            )
            t1.commit()
    finally:
        tx.dispose()
    wait_for(
        lambda: metric(scrape(port), "poller_watermark_lag_seconds", entity="customers") == 0,
        20,
        "the lag to return to 0 once T1 committed",
        watch=[proc],
    )


def test_a_revoked_role_turns_the_horizon_off_with_a_warning_and_the_gauge(
    scenario: Scenario, pg: SourceDB
) -> None:
    """pg_read_all_stats revoked while `poller run` is running: the next batch notices (the
    gauge drops to 0, the log says why) instead of reading past transactions it cannot see;
    granted again, the horizon comes back."""
    pg.create_customers()
    pg.seed_customers(SEEDED)
    role = f"low_{uuid.uuid4().hex[:10]}"
    pg.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD 'low-pw'",
        f'GRANT CONNECT ON DATABASE "{pg.database}" TO {role}',
        f"GRANT SELECT ON customers TO {role}",
        f"GRANT pg_read_all_stats TO {role}",
    )
    try:
        low = make_url(pg.url).set(username=role, password="low-pw").render_as_string(False)
        port = free_port()
        entity = customers_entity("timestamp", poll_interval_s=0.3)
        proc = scenario.start(scenario.config(low, {"customers": entity}, metrics_port=port))
        scenario.wait_for_cursor("customers", pg.max_cursor("updated_at"), timeout=60, watch=[proc])

        def gauge() -> float | None:
            return metric(scrape(port), "poller_horizon_active", entity="customers")

        assert gauge() == 1
        pg.execute(f"REVOKE pg_read_all_stats FROM {role}")
        wait_for(lambda: gauge() == 0, 20, "poller_horizon_active to drop to 0", watch=[proc])
        assert "went blind" in proc.log() and "pg_read_all_stats" in proc.log()
        pg.execute(f"GRANT pg_read_all_stats TO {role}")
        wait_for(lambda: gauge() == 1, 20, "poller_horizon_active back at 1", watch=[proc])
        proc.terminate()
        proc.wait(30)
    finally:
        scenario.close()
        pg.execute(
            f"DROP OWNED BY {role}",
            f'REVOKE CONNECT ON DATABASE "{pg.database}" FROM {role}',
            f"DROP ROLE {role}",
        )
