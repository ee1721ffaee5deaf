"""The transaction horizon without the privilege to see other sessions: `poller check` names the
missing grant, and the reader falls back to the settle delay (with its longer default)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from poller.batch import BEGINNING
from poller.config import EntityConfig, SourceConfig, parse_config
from poller.pipeline.guards import horizon_warnings
from poller.source.horizon import HorizonAccess
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine

pytestmark = pytest.mark.integration

ENTITY = {
    "table": "t",
    "key": "id",
    "fields": {"local_id": "id"},
    "batching": {"mode": "timestamp", "column": "updated_at"},
}


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def low_privilege_url(url: str) -> Iterator[str]:
    """A login that may read table t and nothing else, removed afterwards."""
    name, password = f"low_{uuid.uuid4().hex[:10]}", "low-pw"
    admin = _admin(url)
    pg = admin.dialect.name == "postgresql"
    database = make_url(url).database
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (id integer PRIMARY KEY, updated_at timestamp)"))
        if pg:
            conn.execute(sa.text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
            conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{database}" TO {name}'))
            conn.execute(sa.text(f"GRANT SELECT ON t TO {name}"))
        else:
            for host in ("%", "localhost"):
                conn.execute(sa.text(f"CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'"))
                conn.execute(sa.text(f"GRANT SELECT ON `{database}`.t TO '{name}'@'{host}'"))
    try:
        yield make_url(url).set(username=name, password=password).render_as_string(False)
    finally:
        with admin.connect() as conn:
            if pg:
                conn.execute(sa.text(f"DROP OWNED BY {name}"))
                conn.execute(sa.text(f'REVOKE CONNECT ON DATABASE "{database}" FROM {name}'))
                conn.execute(sa.text(f"DROP ROLE {name}"))
            else:
                for host in ("%", "localhost"):
                    conn.execute(sa.text(f"DROP USER '{name}'@'{host}'"))
        admin.dispose()


def _config(url: str, mode: str = "timestamp") -> dict[str, object]:
    ent = dict(ENTITY)
    if mode == "id":
        ent["batching"] = {"mode": "id", "column": "id"}
    return {
        "tenant": "acme",
        "source": {"url": url},
        "kafka": {"format": "single_object"},
        "entities": {"customers": ent},
    }


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_missing_privilege_is_named_and_the_settle_delay_takes_over(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    with low_privilege_url(url) as low:
        warnings = horizon_warnings(parse_config(_config(low)))
        if backend == "postgresql":
            # both lists need the role; only the timestamp entity's family is warned about
            assert warnings == [
                "horizon: transactions unavailable for timestamp modes: other sessions' "
                "transactions are hidden without: GRANT pg_read_all_stats TO <user> (or "
                "pg_monitor); falling back to settle_delay_s"
            ]
            id_warnings = horizon_warnings(parse_config(_config(low, mode="id")))
            assert [w.split(":")[1] for w in id_warnings] == [
                " transactions unavailable for id mode"
            ]
        else:
            assert len(warnings) == 1  # the timestamp entity's family only
            assert all("GRANT PROCESS ON *.* TO <user>" in w for w in warnings)
            assert all("PROCESS privilege" in w for w in warnings)  # the server's own words
        # the reader of a timestamp entity falls back to the settle delay, 30 s by default
        src = SourceConfig(url=low)
        ent = EntityConfig.model_validate(ENTITY)
        engine = make_engine(src)
        try:
            access = HorizonAccess(src.horizon, engine.dialect.name)
            with engine.connect() as conn:
                access.probe(conn)
            query = EntityQuery(ent, src, "acme", ["local_id"], engine.dialect, name="customers")
            reader = SourceReader(engine, query, ent, src, access=access)
            assert not reader.horizon_active
            assert ent.settle_s(reader.horizon_active) == 30.0
            assert reader.fetch(BEGINNING).rows == []  # it still reads (t is empty)
        finally:
            engine.dispose()
        # the privileged user of the test suite sees everything
        assert horizon_warnings(parse_config(_config(url))) == []
