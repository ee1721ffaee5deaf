"""The transaction horizon on the real MariaDB (issue 16, items 3, 4, 5 and 18).

Each test drives real sessions against a fresh database and turns a real `SourceReader` (the
poller's batch reads, settle_delay_s 0 so only the horizon holds anything back):

* a writer queued behind a table lock has taken its `NOW(6)` stamp before InnoDB lists it; a
  newer row committed meanwhile must wait for it (item 3);
* a transaction that only read (`BEGIN; SELECT`, mysqldump's consistent snapshot) holds nothing
  back, one that wrote does (item 5);
* a transaction in another database of the server holds nothing back, one with no current
  database does (item 18);
* a real replica (a private primary + replica pair) refuses the horizon, `poller check` says so
  and the reader falls back to the settle delay (item 4).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from poller.batch import BEGINNING, Position
from poller.config import EntityConfig, SourceConfig, parse_config
from poller.pipeline.guards import horizon_warnings
from poller.source.horizon import HorizonAccess
from poller.source.horizon_writers import _MY_LOCAL_TO_UTC
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine
from tests.integration import own_mariadb
from tests.integration.own_mariadb import OwnMariaDB, own_server

pytestmark = pytest.mark.integration
mariadb_pair = own_mariadb.mariadb_pair  # the fixture: a private primary and its replica

TABLE_T = "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), updated_at DATETIME(6))"
STAMP = "UTC_TIMESTAMP(6)"  # the statement's start, as naive UTC like the column


def _entity(mode: str, table: str = "t") -> dict[str, object]:
    batching = {"mode": "id", "column": "id"} if mode == "id" else {
        "mode": "timestamp", "column": "updated_at"}  # fmt: skip
    return {
        "table": table,
        "key": "id",
        "fields": {"local_id": "id"},
        "batching": batching,
        "settle_delay_s": 0,
    }


class Turns:
    """A reader of table t and the ids it has published so far, turn after turn."""

    def __init__(self, url: str, mode: str = "timestamp", table: str = "t") -> None:
        self.src = SourceConfig(url=url)
        self.ent = EntityConfig.model_validate(_entity(mode, table))
        self.engine = make_engine(self.src)
        self.access = HorizonAccess(self.src.horizon, self.engine.dialect.name)
        with self.engine.connect() as conn:
            self.access.probe(conn)
        query = EntityQuery(self.ent, self.src, "acme", ["local_id"], self.engine.dialect, name="t")
        self.reader = SourceReader(self.engine, query, self.ent, self.src, access=self.access)
        self.position: Position = BEGINNING
        self.published: list[int] = []

    def turn(self) -> list[int]:
        """Read batches until one comes back empty; the ids read in this turn."""
        got: list[int] = []
        while True:
            batch = self.reader.fetch(self.position)
            if not batch.rows or batch.last is None:
                break
            got += [int(r[0]) for r in batch.rows]  # type: ignore[call-overload]
            self.position = batch.last
        self.published += got
        return got

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def db(mariadb_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(mariadb_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(TABLE_T))
        conn.execute(sa.text("CREATE TABLE lockme (x INT)"))
        conn.execute(sa.text("INSERT INTO lockme VALUES (1)"))
    yield engine
    engine.dispose()


def _insert(conn: sa.Connection, row_id: int, source: str = "") -> None:
    conn.execute(
        sa.text(f"INSERT INTO t (id, name, updated_at) SELECT :id, 'w', {STAMP} {source}"),
        {"id": row_id},
    )


def _settle(turns: Turns) -> None:
    """Two turns 0.3 s apart: innodb_trx is a cache (0.1 s), so a session missing from one look
    is forgotten at the next look at least 0.25 s later."""
    for _ in range(2):
        time.sleep(0.3)
        turns.turn()


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _seconds_since(engine: sa.Engine, stamp: object) -> float:
    with engine.connect() as conn:
        value = conn.execute(
            sa.text("SELECT TIMESTAMPDIFF(MICROSECOND, :s, UTC_TIMESTAMP(6))"), {"s": stamp}
        ).scalar()
    return float(value or 0) / 1e6


@contextlib.contextmanager
def blocking_lockme(db: sa.Engine, kind: str) -> Iterator[Callable[[], None]]:
    """A lock on table lockme that writers reading it queue behind; yields its release.
    lock_tables: LOCK TABLES lockme WRITE. alter_queue: an ALTER TABLE waits for a reader's
    metadata lock, and everything after it queues behind the ALTER."""
    with db.connect() as holder:

        def run(stmt: str) -> Callable[[], None]:
            def release() -> None:
                holder.execute(sa.text(stmt))

            return release

        if kind == "lock_tables":
            holder.execute(sa.text("LOCK TABLES lockme WRITE"))
            yield run("UNLOCK TABLES")
            return
        holder.execute(sa.text("BEGIN"))
        holder.execute(sa.text("SELECT * FROM lockme")).all()

        def alter() -> None:
            with db.connect() as conn:
                conn.execute(sa.text("ALTER TABLE lockme ADD COLUMN y INT"))

        thread = threading.Thread(target=alter, daemon=True)
        thread.start()
        waiting = sa.text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE 'ALTER TABLE lockme%' AND STATE LIKE '%metadata lock%'"
        )
        with db.connect() as conn:
            _wait(lambda: bool(conn.execute(waiting).scalar()), 30, "the ALTER to queue")
        try:
            yield run("COMMIT")
        finally:
            holder.execute(sa.text("COMMIT"))
            thread.join(30)


@pytest.mark.parametrize("kind", ["lock_tables", "alter_queue"])
def test_writer_queued_behind_a_table_lock_is_not_passed(
    db: sa.Engine, mariadb_url: str, kind: str
) -> None:
    """W's INSERT ... SELECT FROM lockme queues 2.5 s behind a lock on lockme (LOCK TABLES, or
    the queue behind an ALTER TABLE): its stamp is taken, InnoDB does not list it. X commits a
    newer row meanwhile. Then W writes and stays open (listed from after its wait). Before: the
    reader published X's row at once and W's row, committed behind it, never. Now X's row waits
    for W; both are published."""
    turns = Turns(mariadb_url)
    tx = sa.create_engine(mariadb_url, poolclass=NullPool)
    written, release, failed = threading.Event(), threading.Event(), []

    def writer() -> None:
        try:
            with tx.connect() as w:
                _insert(w, 1, "FROM lockme")
                written.set()
                release.wait(30)
                w.commit()
        except Exception as exc:  # reported by the main thread
            failed.append(exc)
            written.set()

    try:
        assert turns.turn() == []
        with blocking_lockme(db, kind) as unlock:
            w_thread = threading.Thread(target=writer, daemon=True)
            w_thread.start()
            with db.connect() as conn:
                waiting = sa.text(
                    "SELECT TIME_MS FROM information_schema.PROCESSLIST "
                    "WHERE INFO LIKE 'INSERT INTO t %' AND STATE LIKE '%lock%'"
                )
                _wait(lambda: (conn.execute(waiting).scalar() or 0) > 2_500, 30, "W to queue")
                _insert(conn, 2)  # X: newer stamp, committed
            assert 2 not in turns.turn(), "X's row was published while W (stamped) waited"
            unlock()
            assert written.wait(30) and not failed, failed
        assert written.wait(30) and not failed, failed
        time.sleep(0.3)  # innodb_trx's cache now lists W, registered after its wait
        assert 2 not in turns.turn(), "X's row was published while W (written, open) was open"
        release.set()
        w_thread.join(30)
        assert not failed, failed
        _settle(turns)
        assert sorted(turns.published) == [1, 2]
    finally:
        release.set()
        turns.close()
        tx.dispose()


@pytest.mark.parametrize(
    "begin", ["BEGIN", "START TRANSACTION WITH CONSISTENT SNAPSHOT"], ids=["select", "mysqldump"]
)
def test_a_transaction_that_only_read_holds_nothing_back_one_that_wrote_does(
    db: sa.Engine, mariadb_url: str, begin: str
) -> None:
    turns = Turns(mariadb_url)
    tx = sa.create_engine(mariadb_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with tx.connect() as reader_session, tx.connect() as writer_session:
            reader_session.execute(sa.text(begin))
            reader_session.execute(sa.text("SELECT COUNT(*) FROM t")).scalar()
            time.sleep(1.2)  # its start is now older than the list's 1 s slack
            with db.connect() as conn:
                _insert(conn, 1)
            assert turns.turn() == [1], "an idle transaction that only read held the rows back"
            # the other direction: a transaction that wrote holds newer rows back
            writer_session.execute(sa.text("BEGIN"))
            _insert(writer_session, 2)
            stamp = _stamp(writer_session, 2)
            _wait(lambda: _seconds_since(db, stamp) > 0.01, 5, "the clock to pass row 2's stamp")
            with db.connect() as conn:
                _insert(conn, 3)
            time.sleep(0.3)
            assert turns.turn() == [], "a row was published past an open transaction that wrote"
            writer_session.execute(sa.text("COMMIT"))
            reader_session.execute(sa.text("COMMIT"))
        _settle(turns)
        assert sorted(turns.published) == [1, 2, 3]
    finally:
        turns.close()
        tx.dispose()


def _stamp(conn: sa.Connection, row_id: int) -> object:
    return conn.execute(sa.text("SELECT updated_at FROM t WHERE id = :id"), {"id": row_id}).scalar()


@pytest.fixture
def other_database(mariadb_admin_url: str) -> Iterator[str]:
    name = f"other_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(mariadb_admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
        conn.execute(sa.text(f"CREATE TABLE `{name}`.u (id INT PRIMARY KEY)"))
    try:
        yield make_url(mariadb_admin_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.mark.parametrize("mode", ["timestamp", "id"])
def test_a_transaction_in_another_database_holds_nothing_back(
    db: sa.Engine, mariadb_url: str, other_database: str, mode: str
) -> None:
    """Before: a transaction open in a second database of the server held every entity (0 of
    2,000 rows). Now only sessions of the polled database count, and those with no current
    database (which can only write with qualified names, ours included) still do."""
    turns = Turns(mariadb_url, mode)
    other = sa.create_engine(other_database, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    ours = make_url(mariadb_url).database
    nodb = sa.create_engine(
        make_url(mariadb_url).set(database="").render_as_string(False),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
    )
    try:
        with other.connect() as o:
            o.execute(sa.text("BEGIN"))
            o.execute(sa.text("INSERT INTO u VALUES (1)"))
            time.sleep(1.2)
            with db.connect() as conn:
                _insert(conn, 1)
            assert turns.turn() == [1], "a transaction in another database held the rows back"
            o.execute(sa.text("COMMIT"))
        with nodb.connect() as n:
            n.execute(sa.text("BEGIN"))
            qualified = f"INSERT INTO `{ours}`.t VALUES (2, 'n', {STAMP})"  # noqa: S608
            n.execute(sa.text(qualified))
            time.sleep(0.3)
            with db.connect() as conn:
                _insert(conn, 3)
            assert turns.turn() == [], "a qualified write with no current database was passed"
            n.execute(sa.text("COMMIT"))
        _settle(turns)
        assert sorted(turns.published) == [1, 2, 3]
    finally:
        turns.close()
        other.dispose()
        nodb.dispose()


def test_a_replica_refuses_the_horizon(mariadb_pair: tuple[OwnMariaDB, OwnMariaDB]) -> None:
    """On a real replica the transaction lists show only the replica's own sessions. The
    horizon is refused there with the reason, `poller check` says so, and the reader falls back
    to the settle delay; the primary keeps it."""
    primary, replica = mariadb_pair
    primary.execute(
        "CREATE TABLE horizon.t (id INT PRIMARY KEY, name VARCHAR(20), updated_at DATETIME(6))"
    )
    cfg = {
        "tenant": "acme",
        "kafka": {"format": "single_object"},
        "entities": {"customers": _entity("timestamp")},
    }
    assert horizon_warnings(parse_config({**cfg, "source": {"url": primary.url}})) == []
    warnings = horizon_warnings(parse_config({**cfg, "source": {"url": replica.url}}))
    assert len(warnings) == 1, warnings  # the family in use only (timestamp)
    assert all("this server is a replica" in w and "settle_delay_s" in w for w in warnings)
    turns = Turns(replica.url)
    try:
        assert not turns.reader.horizon_active
        default = EntityConfig.model_validate({**_entity("timestamp"), "settle_delay_s": None})
        assert default.settle_s(turns.reader.horizon_active) == 30.0
    finally:
        turns.close()


def test_local_start_times_are_read_as_their_earliest_utc_instant_across_dst(
    tmp_path: Path,
) -> None:
    """innodb_trx.trx_started is in the server's system time zone. On a server in Europe/Berlin,
    CONVERT_TZ(..., 'SYSTEM', '+00:00') reads 02:30 on the fall-back night as 01:30 UTC (CET),
    an hour late for a transaction that started at 02:30 CEST (00:30 UTC): rows stamped after it
    would have been published past it. The horizon's conversion gives the earliest instant a
    local time may denote, and the exact one away from the transitions."""
    berlin = ZoneInfo("Europe/Berlin")
    with own_server(tmp_path, tz="Europe/Berlin") as server:
        assert server.scalar("SELECT @@system_time_zone") == "CET"
        expr = _MY_LOCAL_TO_UTC.format(x="CAST(:x AS DATETIME)")
        engine = sa.create_engine(server.admin_url, poolclass=NullPool)
        start = dt.datetime(2026, 10, 24, 23, 0)
        try:
            with engine.connect() as conn:
                for day_start in (start, dt.datetime(2026, 3, 28, 23, 0)):
                    for minutes in range(0, 6 * 60, 10):
                        local = day_start + dt.timedelta(minutes=minutes)
                        got = conn.execute(sa.text(f"SELECT {expr}"), {"x": local}).scalar()
                        assert isinstance(got, dt.datetime)
                        utc = {  # the instants `local` denotes: one, two (fall-back), none
                            u
                            for f in (0, 1)
                            if (u := local.replace(fold=f, tzinfo=berlin).astimezone(dt.UTC))
                            .astimezone(berlin)
                            .replace(tzinfo=None)
                            == local
                        }
                        if not utc:  # in the spring-forward gap: no clock shows it
                            continue
                        earliest = min(u.replace(tzinfo=None) for u in utc)
                        assert got <= earliest, (local, got, earliest)
                        assert earliest - got <= dt.timedelta(hours=1), (local, got)
                        if len(utc) == 1:  # an ordinary local time: exact
                            assert got == earliest, (local, got)
        finally:
            engine.dispose()


def test_the_pollers_own_reads_hold_nothing_back_another_sessions_statement_does(
    db: sa.Engine, mariadb_url: str
) -> None:
    """A running statement counts from its start (it may write what it stamped), except in the
    poller's own sessions: they are READ ONLY, and a slow batch of one entity must not hold back
    the others. A statement of any other session does hold the horizon back."""
    turns = Turns(mariadb_url)
    outside = sa.create_engine(mariadb_url, poolclass=NullPool)
    running = sa.text(
        "SELECT MAX(TIME_MS) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(4)'"
    )

    def sleep_in(engine: sa.Engine) -> threading.Thread:
        def run() -> None:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT SLEEP(4)"))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        with db.connect() as conn:
            _wait(lambda: (conn.execute(running).scalar() or 0) > 2_000, 30, "the statement")
        return thread

    try:
        assert turns.turn() == []
        own = sleep_in(turns.engine)  # another session of the poller's own engine
        with db.connect() as conn:
            _insert(conn, 1)
        assert turns.turn() == [1], "the poller's own read held the rows back"
        own.join(10)
        other = sleep_in(outside)
        with db.connect() as conn:
            _insert(conn, 2)
        assert turns.turn() == [], "a row was published past another session's statement"
        other.join(10)
        _settle(turns)
        assert sorted(turns.published) == [1, 2]
    finally:
        turns.close()
        outside.dispose()


@pytest.mark.parametrize("mode", ["timestamp", "id"])
def test_a_table_of_another_database_is_guarded_by_that_databases_sessions(
    db: sa.Engine, mariadb_url: str, other_database: str, mode: str
) -> None:
    """An entity whose table is qualified (`other.t`) counts the sessions of `other`, not of
    the connection's database."""
    other_name = make_url(other_database).database
    other = sa.create_engine(other_database, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with other.connect() as conn:
        conn.execute(sa.text(TABLE_T))
    turns = Turns(mariadb_url, mode, table=f"{other_name}.t")
    try:
        assert turns.turn() == []
        with other.connect() as o:
            o.execute(sa.text("BEGIN"))
            _insert(o, 1)
            time.sleep(0.3)
            with other.connect() as conn:
                _insert(conn, 2)
            assert turns.turn() == [], "a row was published past an open writer of its database"
            o.execute(sa.text("COMMIT"))
        _settle(turns)
        assert sorted(turns.published) == [1, 2]
    finally:
        turns.close()
        other.dispose()
