"""The transaction horizon on the real PostgreSQL (issue 16, items 1, 2, 6).

Each test gets a fresh database (`pg_url`), so the only open transactions in it are the test's
own; writers use their own engine and real transactions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poller.batch import BEGINNING, Batch, Position
from poller.config import EntityConfig, SourceConfig
from poller.source.horizon import HorizonAccess
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine
from tests.integration.source.test_horizon_access import low_privilege_url

pytestmark = pytest.mark.integration


def id_entity(**extra: Any) -> EntityConfig:
    spec: dict[str, Any] = {
        "table": "t",
        "key": "id",
        "fields": {"local_id": "id"},
        "batching": {"mode": "id", "column": "id"},
    }
    return EntityConfig.model_validate(spec | extra)


@contextlib.contextmanager
def id_reader(url: str, ent: EntityConfig | None = None) -> Iterator[SourceReader]:
    src = SourceConfig(url=url)
    ent = ent or id_entity()
    engine = make_engine(src)
    try:
        access = HorizonAccess(src.horizon, engine.dialect.name)
        with engine.connect() as conn:
            access.probe(conn)
        query = EntityQuery(ent, src, "acme", ["local_id"], engine.dialect, name="customers")
        yield SourceReader(engine, query, ent, src, access=access)
    finally:
        engine.dispose()


@pytest.fixture
def writer(pg_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def drain(reader: SourceReader, position: Position, seen: list[object]) -> tuple[Position, Batch]:
    """One poller turn: fetch until a batch comes back empty."""
    while True:
        batch = reader.fetch(position)
        seen.extend(r[0] for r in batch.rows)
        if batch.last is None:
            return position, batch
        position = batch.last


def test_an_id_taken_by_nextval_before_the_first_write_is_not_passed(
    pg_url: str, writer: sa.Engine
) -> None:
    """Session A takes id 2 with nextval() (no xid yet), B inserts id 3 and commits, the poller
    turns, then A inserts id 2 and commits: A's row must still be read."""
    with writer.begin() as conn:
        conn.execute(sa.text("CREATE SEQUENCE t_seq"))
        conn.execute(sa.text("CREATE TABLE t (id bigint PRIMARY KEY, name text)"))
        # The first nextval() WAL-logs 32 values ahead (and so takes an xid); the next ones
        # come from that and take none: A's id below is such a one.
        conn.execute(sa.text("INSERT INTO t VALUES (nextval('t_seq'), 'first')"))
    seen: list[object] = []
    with id_reader(pg_url) as reader, writer.connect() as a:
        assert reader.horizon_active
        position, _ = drain(reader, BEGINNING, seen)
        taken = a.execute(sa.text("SELECT nextval('t_seq')")).scalar_one()
        with writer.begin() as b:
            b.execute(sa.text("INSERT INTO t VALUES (nextval('t_seq'), 'b')"))
        position, held = drain(reader, position, seen)
        position, held = drain(reader, position, seen)  # the snapshot has had its list
        assert seen == [1]  # id 3 waits for A, which holds id 2
        assert held.holdback_s > 0 and "open transaction(s)" in held.held_by
        a.execute(sa.text("INSERT INTO t VALUES (:id, 'a')"), {"id": taken})
        a.commit()
        for _ in range(3):
            position, _batch = drain(reader, position, seen)
    assert seen == [1, 2, 3]


def test_a_numeric_id_column_is_read(pg_url: str, writer: sa.Engine) -> None:
    """NUMERIC(18,0) ids come back as Decimal: the horizon must order them, not drop them."""
    with writer.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id numeric(18,0) PRIMARY KEY, name text)"))
        conn.execute(sa.text("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 5) g"))
    seen: list[object] = []
    with id_reader(pg_url) as reader:
        position, _ = drain(reader, BEGINNING, seen)
        position, _ = drain(reader, position, seen)
        with writer.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (6, 'y')"))
        for _ in range(2):
            position, _ = drain(reader, position, seen)
    assert [int(str(v)) for v in seen] == [1, 2, 3, 4, 5, 6]


def test_a_revoked_role_is_noticed_at_the_next_horizon_query(pg_url: str) -> None:
    """pg_read_all_stats revoked while running: the reader falls back to the settle delay (and
    says so) instead of reading past transactions it can no longer see; granted again, the
    horizon comes back."""
    ts_entity = EntityConfig.model_validate(
        {
            "table": "t",
            "key": "id",
            "fields": {"local_id": "id"},
            "batching": {"mode": "timestamp", "column": "updated_at"},
        }
    )
    admin = sa.create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with low_privilege_url(pg_url) as low:
            role = sa.engine.make_url(low).username
            with admin.connect() as conn:
                conn.execute(sa.text(f"GRANT pg_read_all_stats TO {role}"))
            with id_reader(low, ts_entity) as reader:
                assert reader.horizon_active
                reader.fetch(BEGINNING)
                with admin.connect() as conn:
                    conn.execute(sa.text(f"REVOKE pg_read_all_stats FROM {role}"))
                reader._bound = (-1e9, None, None, 0.0, "")  # no reuse: ask again
                reader.fetch(BEGINNING)
                assert not reader.horizon_active
                assert reader._access is not None and "pg_read_all_stats" in str(
                    reader._access.lost
                )
                with admin.connect() as conn:
                    conn.execute(sa.text(f"GRANT pg_read_all_stats TO {role}"))
                reader.fetch(BEGINNING)
                assert reader.horizon_active
                with admin.connect() as conn:
                    conn.execute(sa.text(f"REVOKE pg_read_all_stats FROM {role}"))
    finally:
        admin.dispose()
