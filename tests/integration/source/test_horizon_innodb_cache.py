"""How the horizon reads MariaDB's INNODB_TRX: fresh, and by a transaction's session and start.

INFORMATION_SCHEMA.INNODB_TRX is a cache refreshed only when more than 0.1 s has
passed since anyone last *read* it: clients that read it more often than that (the other
pollers of a fleet, a monitoring agent) keep it stale for as long as they go on. Found by the
model soak (seeds 1036, 1308, 1337, 1406 of mariadb/id with four shards polling one server): a
stale list missed a writer's open transaction and its row was never published.

Each test keeps the cache stale with a client that reads INNODB_TRX every 20 ms, opens a
writer after the cache was last filled, commits a newer row beside it and turns the reader: it
must hold the newer row back (and say why) while the list cannot be shown fresh, and publish
both once the keeper stops and the writer commits.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poller.source.horizon import open_transactions
from poller.source.innodb_cache import StaleList
from tests.integration.source.test_horizon_mariadb import Turns, _insert, _settle
from tests.integration.source.test_horizon_mariadb import db as db  # the fixture: table t

pytestmark = pytest.mark.integration


class CacheKeeper:
    """A client reading INNODB_TRX every 20 ms, as a monitoring agent or a busy fleet does."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.stop = threading.Event()
        self.reading = threading.Event()
        self.reading.set()
        self.reads = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                if self.reading.wait(0.05):
                    conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.INNODB_TRX"))
                    self.reads += 1
                time.sleep(0.02)

    def quiet(self) -> None:
        """Stop reading for a while: the next reader gets a fresh buffer."""
        self.reading.clear()
        time.sleep(0.2)

    def __enter__(self) -> CacheKeeper:
        self.thread.start()
        time.sleep(0.3)  # the cache was filled at its first read, before the writer below
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.engine.dispose()


@pytest.mark.parametrize("mode", ["id", "timestamp"])
def test_a_stale_transaction_list_holds_back_instead_of_missing_a_writer(
    db: sa.Engine, mariadb_url: str, mode: str
) -> None:
    turns = Turns(mariadb_url, mode)
    try:
        with CacheKeeper(mariadb_url) as keeper, db.connect() as writer:
            writer.execute(sa.text("BEGIN"))
            _insert(writer, 1)  # written, then idle: only INNODB_TRX shows its transaction
            time.sleep(0.05)
            with db.connect() as other:
                _insert(other, 2)
            time.sleep(0.1)
            got = turns.turn()
            assert keeper.reads > 10, "the keeper did not keep reading"
            assert got == [], f"a stale transaction list let row(s) {got} past an open writer"
            held = turns.reader.fetch(turns.position).held_by
            assert "INNODB_TRX" in held, held
            writer.execute(sa.text("COMMIT"))
        _settle(turns)
        assert sorted(turns.published) == [1, 2]
    finally:
        turns.close()


def test_a_transaction_that_starts_writing_keeps_its_identity(
    db: sa.Engine, mariadb_url: str
) -> None:
    """InnoDB gives a transaction a new trx_id when it first writes. A transaction listed while
    it had only read (Hibernate loads before it inserts) must not look ended once it writes:
    before, the id-mode list keyed it by trx_id, so a max read while it was open settled as
    soon as it wrote, and the id it had reserved (id 3, below a committed 5) was passed over."""
    turns = Turns(mariadb_url, "id")
    try:
        with db.connect() as app:
            app.execute(sa.text("BEGIN"))
            app.execute(sa.text("SELECT COUNT(*) FROM t")).all()  # listed, read-only id
            with db.connect() as other:
                _insert(other, 5)
            assert turns.turn() == [], "id 5 passed an open transaction"
            _insert(app, 3)  # the id it reserved earlier (a sequence, a hi/lo block)
            time.sleep(0.2)
            got = turns.turn()
            assert got == [], f"id(s) {got} passed the transaction once it wrote"
            app.execute(sa.text("COMMIT"))
        _settle(turns)
        assert sorted(turns.published) == [3, 5]
    finally:
        turns.close()


def test_an_earlier_marker_in_a_stale_list_is_not_taken_for_this_one(
    db: sa.Engine, mariadb_url: str
) -> None:
    """The reader proves a list fresh by finding its own transaction in it. The buffer filled
    during its previous read shows an earlier marker transaction of the same session, and
    trx_started (whole seconds) cannot tell them apart: the second soak lost rows so. The own
    row must show this read's statement (trx_query), not an earlier one."""
    turns = Turns(mariadb_url, "id")
    try:
        with db.connect() as conn:
            _insert(conn, 1)
        with CacheKeeper(mariadb_url) as keeper, db.connect() as writer:
            keeper.quiet()
            assert turns.turn() == [1]  # the buffer refills during this read, marker and all
            keeper.reading.set()  # and stays so: it shows that read's marker from now on
            time.sleep(0.1)
            writer.execute(sa.text("BEGIN"))
            _insert(writer, 3)
            with db.connect() as other:
                _insert(other, 5)
            got = turns.turn()
            assert got == [], f"a list holding an earlier marker let id(s) {got} past a writer"
            writer.execute(sa.text("COMMIT"))
        _settle(turns)
        assert sorted(turns.published) == [1, 3, 5]
    finally:
        turns.close()


def test_many_pollers_reading_lists_at_once_all_get_fresh_ones_promptly(mariadb_url: str) -> None:
    """Eight pollers on one server, each reading transaction lists back to back (a fleet in
    id mode). Every read restarts InnoDB's 0.1 s, so readers that merely retry keep the buffer
    stale for one another: before they took turns, about one read in five gave up after 4 s
    (StaleList: held back) and the median took 1.6 s (the soak's four shards crawled).
    Taking turns, one fill serves every reader queued behind it."""
    engine = sa.create_engine(mariadb_url, poolclass=NullPool)
    stale: list[str] = []
    slowest: list[float] = []

    def poller() -> None:
        with engine.connect() as conn:
            for _ in range(8):
                began = time.monotonic()
                try:
                    open_transactions(conn, "mysql")
                except StaleList as e:
                    stale.append(str(e))
                slowest.append(time.monotonic() - began)

    threads = [threading.Thread(target=poller) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        engine.dispose()
    assert len(slowest) == 64, "a reader did not finish"
    assert stale == [], f"{len(stale)} of 64 list reads gave up: {stale[:1]}"
    assert max(slowest) < 2.0, f"the slowest list read took {max(slowest):.2f} s"
