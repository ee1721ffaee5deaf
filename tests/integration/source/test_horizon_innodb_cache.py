"""MariaDB's INFORMATION_SCHEMA.INNODB_TRX is a cache refreshed only when more than 0.1 s has
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
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.source.test_horizon_mariadb import STAMP, TABLE_T, Turns, _settle

pytestmark = pytest.mark.integration


class CacheKeeper:
    """A client reading INNODB_TRX every 20 ms, as a monitoring agent or a busy fleet does."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.stop = threading.Event()
        self.reads = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.INNODB_TRX"))
                self.reads += 1
                time.sleep(0.02)

    def __enter__(self) -> CacheKeeper:
        self.thread.start()
        time.sleep(0.3)  # the cache was filled at its first read, before the writer below
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.engine.dispose()


@pytest.fixture
def db(mariadb_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(mariadb_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(TABLE_T))
    yield engine
    engine.dispose()


def _insert(conn: sa.Connection, row_id: int) -> None:
    conn.execute(
        sa.text(f"INSERT INTO t (id, name, updated_at) SELECT :id, 'w', {STAMP}"), {"id": row_id}
    )


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
