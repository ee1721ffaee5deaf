"""The horizon on a hot standby (issue 16, item 4): a real streaming replica of a private
PostgreSQL. Its pg_stat_activity lists only the standby's own sessions, so the horizon would
report itself active and see none of the primary's writers; it must refuse, say why (at start and
in `poller check`), and fall back to the settle delay."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poller.batch import BEGINNING
from poller.config import EntityConfig, SourceConfig, parse_config
from poller.pipeline.guards import horizon_warnings
from poller.source.horizon import HorizonAccess
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine
from tests.integration.pg_replica import PostgresReplica, pg_replica  # noqa: F401 (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENTITY = {
    "table": "t",
    "key": "id",
    "fields": {"local_id": "id"},
    "batching": {"mode": "timestamp", "column": "updated_at"},
}


def test_a_hot_standby_refuses_the_horizon_and_falls_back_to_the_settle_delay(
    pg_replica: PostgresReplica,  # noqa: F811
) -> None:
    primary = sa.create_engine(pg_replica.primary_url, poolclass=NullPool)
    try:
        with primary.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id integer PRIMARY KEY, updated_at timestamp)"))
            conn.execute(
                sa.text(
                    "INSERT INTO t SELECT g, timestamp '2024-01-01' + g * interval '1 s' "
                    "FROM generate_series(1, 5) g"
                )
            )
        pg_replica.wait_replayed()
        check_prepared_transaction_holds_id_mode_back(pg_replica.primary_url)
        # A writer open on the primary: the standby cannot see it.
        with primary.connect() as writer:
            writer.execute(sa.text("INSERT INTO t VALUES (100, now())"))
            for mode in ("timestamp", "id"):
                ent_spec = dict(ENTITY)
                if mode == "id":
                    ent_spec["batching"] = {"mode": "id", "column": "id"}
                cfg = parse_config(
                    {
                        "tenant": "acme",
                        "source": {"url": pg_replica.standby_url},
                        "kafka": {"format": "single_object"},
                        "entities": {"customers": ent_spec},
                    }
                )
                warnings = horizon_warnings(cfg)  # what `poller check` prints
                assert len(warnings) == 1 and "hot standby" in warnings[0], warnings
            src = SourceConfig(url=pg_replica.standby_url)
            ent = EntityConfig.model_validate(ENTITY)
            engine = make_engine(src)
            try:
                access = HorizonAccess(src.horizon, engine.dialect.name)
                with engine.connect() as conn:
                    access.probe(conn)
                query = EntityQuery(ent, src, "acme", ["local_id"], engine.dialect, name="c")
                reader = SourceReader(engine, query, ent, src, access=access)
                assert not reader.horizon_active
                assert ent.settle_s(reader.horizon_active) == 30.0
                batch = reader.fetch(BEGINNING)  # the replicated rows, older than the settle
                assert [r[0] for r in batch.rows] == [1, 2, 3, 4, 5]
            finally:
                engine.dispose()
            writer.rollback()
    finally:
        primary.dispose()


def check_prepared_transaction_holds_id_mode_back(url: str) -> None:
    """On the primary: a prepared transaction (no session any more) holds id mode back until
    COMMIT PREPARED."""
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE p (id bigint PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO p VALUES (1)"))
        src = SourceConfig(url=url)
        ent = EntityConfig.model_validate(
            {
                "table": "p",
                "key": "id",
                "fields": {"local_id": "id"},
                "batching": {"mode": "id", "column": "id"},
            }
        )
        reader_engine = make_engine(src)
        try:
            access = HorizonAccess(src.horizon, reader_engine.dialect.name)
            with reader_engine.connect() as conn:
                access.probe(conn)
            query = EntityQuery(ent, src, "acme", ["local_id"], reader_engine.dialect, name="p")
            reader = SourceReader(reader_engine, query, ent, src, access=access)
            assert reader.horizon_active
            first = reader.fetch(BEGINNING)
            assert [r[0] for r in first.rows] == [1] and first.last is not None
            with engine.connect() as conn:
                conn.execute(sa.text("BEGIN"))
                conn.execute(sa.text("INSERT INTO p VALUES (2)"))
                conn.execute(sa.text("PREPARE TRANSACTION 'poller_test_px'"))
                conn.execute(sa.text("INSERT INTO p VALUES (3)"))  # committed, after it
            seen: list[object] = []
            position = first.last
            for _ in range(2):
                batch = reader.fetch(position)
                seen.extend(r[0] for r in batch.rows)
                position = batch.last or position
            assert seen == [] and "prepared/" in batch.held_by, batch.held_by
            with engine.connect() as conn:
                conn.execute(sa.text("COMMIT PREPARED 'poller_test_px'"))
            for _ in range(3):
                batch = reader.fetch(position)
                seen.extend(r[0] for r in batch.rows)
                position = batch.last or position
            assert seen == [2, 3]
        finally:
            reader_engine.dispose()
    finally:
        engine.dispose()
