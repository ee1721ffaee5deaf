"""The source database fails under the poller: its sessions are killed (PostgreSQL
pg_terminate_backend, MariaDB KILL) again and again, or the whole PostgreSQL server is down for
30 s. The poller logs each retry, backs off (capped, exponential), reconnects, and the result is
exactly once."""

from __future__ import annotations

import itertools
import re
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.faults.harness import (
    SEED,
    PollerProcess,
    Scenario,
    SourceDB,
    SourceRow,
    customers_entity,
    wait_for,
)
from tests.integration.faults.own_postgres import DedicatedPostgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 300_000
KILLS = 5
# A batch must outgrow the socket buffers, or MariaDB has sent all of it before the KILL lands
# (the client then reads it from its buffer, unharmed); PostgreSQL's native path (COPY BINARY)
# reads 20,000 rows in a few tens of milliseconds, too fast to catch reliably.
BATCH = {"postgresql": 100_000, "mariadb": 100_000}
RETRY_LINE = re.compile(r"(\w+Error): (.*); retry (\d+) in ([\d.]+)s")


def retries(log: str) -> list[tuple[str, str, int, float]]:
    """(error kind, message, attempt, delay) of every retry the poller logged."""
    return [(m[1], m[2], int(m[3]), float(m[4])) for m in RETRY_LINE.finditer(log)]


def assert_backoff(logged: list[tuple[str, str, int, float]], initial: float, cap: float) -> None:
    """One retry logged per failed attempt, each a SourceError naming the database, delays
    doubling from `initial` up to `cap`; the count restarts at 1 once a batch was committed."""
    attempts = [a for _, _, a, _ in logged]
    assert attempts and attempts[0] == 1, attempts
    for before, after in itertools.pairwise(attempts):
        assert after in (1, before + 1), f"attempts neither consecutive nor restarted: {attempts}"
    delays = [d for *_, d in logged]
    assert delays == [min(cap, initial * 2 ** (a - 1)) for a in attempts], delays
    for kind, message, _, _ in logged:
        assert kind == "SourceError" and "127.0.0.1" in message, (kind, message)


def kill_reads_repeatedly(scenario: Scenario, db: SourceDB, proc: PollerProcess) -> list[str]:
    """KILLS times, after a seeded random pause while the run is not finished: kill the
    poller's session in the middle of a batch read. Returns what happened, for messages."""
    done: list[str] = []
    while len(done) < KILLS:
        pause = scenario.rng.uniform(0.0, 0.3)
        time.sleep(pause)
        killed = wait_for(lambda: db.kill_poller_sessions(reading=True), 60,
                          "a batch read to kill", interval=0.002, watch=[proc])  # fmt: skip
        wm = scenario.stored("customers")
        cursor = None if wm is None else wm.position.cursor
        assert cursor != ROWS, (
            f"the run finished after {len(done)} kills; make the table bigger (seed {SEED})"
        )
        done.append(f"killed {killed} session(s) after {pause:.2f}s at watermark {cursor}")
    return done


def assert_exactly_once(
    scenario: Scenario, expected: dict[str, SourceRow], proc: PollerProcess, what: str
) -> None:
    rc = proc.wait(timeout=240)
    assert rc == 0, f"exit {rc} after {what}:\n{proc.describe(80)}"
    scenario.verify_exactly_once("customers", expected)


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_sessions_killed_mid_run(
    scenario: Scenario, dialect: str, request: pytest.FixtureRequest
) -> None:
    db: SourceDB = request.getfixturevalue("pg" if dialect == "postgresql" else "maria")
    db.create_customers()
    db.seed_customers(ROWS)
    cfg = scenario.config(
        db.url,
        {"customers": customers_entity("id", batch_size=BATCH[dialect])},
        retry={"initial_backoff_s": 0.2, "max_backoff_s": 1.6},
    )
    proc = scenario.start(cfg, once=True, label="poller")
    done = kill_reads_repeatedly(scenario, db, proc)

    assert_exactly_once(scenario, db.customers(), proc, "; ".join(done))
    logged = retries(proc.log())
    assert len(logged) >= KILLS - 1, f"{len(logged)} retries logged after {done}:\n" + (
        proc.describe()
    )
    assert_backoff(logged, 0.2, 1.6)
    shown = scenario.offsets(cfg)["customers"]
    assert shown["cursor"] == ROWS and shown["rows_total"] == ROWS, shown


def test_session_killed_during_startup_check_is_retried(scenario: Scenario, pg: SourceDB) -> None:
    """The start-up mapping check (catalog reads, zero-row probes) loses its connection: that
    is a database outage like any other, retried, not a mapping problem."""
    rows = 20_000
    pg.create_customers()
    pg.seed_customers(rows)
    cfg = scenario.config(pg.url, {"customers": customers_entity("id", batch_size=5_000)})
    # Hold an exclusive lock on the table so the check's zero-row probe of it waits: the kill
    # then lands inside the start-up check every time, not only when the timing happens to fit.
    locker = sa.create_engine(pg.url, poolclass=NullPool)
    lock = locker.connect()
    try:
        lock.execute(sa.text("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"))
        proc = scenario.start(cfg, once=True, label="poller")

        def kill_during_check() -> bool:
            return bool(
                pg.scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name = 'poller' AND state = 'active' "
                    "AND wait_event_type = 'Lock' AND query ILIKE '%WHERE false%'"
                )
            )

        wait_for(kill_during_check, 60, "the start-up check's probe", interval=0.01, watch=[proc])
    finally:
        lock.rollback()  # releases the lock: the retried check and the copy go through
        lock.close()
        locker.dispose()
    rc = proc.wait(timeout=120)
    assert rc == 0, f"a lost connection during the start-up check stopped it:\n{proc.describe()}"
    scenario.verify_exactly_once("customers", pg.customers())


def test_postgres_down_for_30s(scenario: Scenario, own_postgres: DedicatedPostgres) -> None:
    """On a cluster of the test's own: the shared one stays up for the tests beside it."""
    pg = SourceDB(own_postgres.url)
    postgres_server = own_postgres
    pg.create_customers()
    pg.seed_customers(ROWS)
    expected = pg.customers()
    initial, cap = 0.5, 4.0
    cfg = scenario.config(
        pg.url,
        {"customers": customers_entity("id", batch_size=5_000)},
        retry={"initial_backoff_s": initial, "max_backoff_s": cap},
    )
    proc = scenario.start(cfg, once=True, label="poller")
    scenario.wait_for_batches(1, timeout=90, watch=[proc])
    postgres_server.stop()
    try:
        down_at = time.monotonic()
        wm = scenario.stored("customers")
        assert wm is not None and wm.position.cursor != ROWS, (
            f"the run finished before PostgreSQL went down ({wm}); make the table bigger"
        )
        while time.monotonic() - down_at < 30:
            assert proc.alive(), f"it stopped while the database was down:\n{proc.describe()}"
            time.sleep(1)
    finally:
        postgres_server.start()

    assert_exactly_once(scenario, expected, proc, "30s without PostgreSQL")
    shown = scenario.offsets(cfg)["customers"]
    assert shown["cursor"] == ROWS and shown["rows_total"] == ROWS, shown

    logged = retries(proc.log())
    pg.close()
    assert len(logged) >= 6, f"{len(logged)} retries logged in 30s:\n{proc.describe()}"
    assert_backoff(logged, initial, cap)
