"""Fixtures of the observability tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.integration.conftest import unique_name
from tests.integration.ops.harness import (
    BAD_LEVEL,
    Proc,
    Source,
)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop(timeout=15)


@pytest.fixture
def source(pg_url: str, pg_admin_url: str) -> Iterator[Source]:
    """A fresh database with three entities' tables, some rows (one of them bad), and a login
    role with a random password for the poller."""
    database = make_url(pg_url).database
    assert database
    role = unique_name("obs")
    password = "pw-" + secrets.token_hex(12)
    engine = sa.create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        c.execute(
            sa.text("""
            CREATE TABLE customers (
                id bigint PRIMARY KEY, name text, email text,
                updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'))""")
        )
        c.execute(
            sa.text("""
            CREATE TABLE events (
                id bigint PRIMARY KEY, customer_id bigint, event_type text NOT NULL,
                occurred_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'))""")
        )
        c.execute(
            sa.text("""
            CREATE TABLE product_categories (
                id bigint PRIMARY KEY, name text NOT NULL, lvl bigint,
                updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'))""")
        )
        c.execute(
            sa.text("""
            INSERT INTO customers (id, name, email, updated_at)
            SELECT g, 'customer ' || g, 'c' || g || '@example.com',
                   now() AT TIME ZONE 'utc' - interval '2 hours' + g * interval '1 second'
            FROM generate_series(1, 200) g""")
        )
        c.execute(
            sa.text("""
            INSERT INTO events (id, customer_id, event_type)
            SELECT g, g % 200 + 1, 'login' FROM generate_series(1, 300) g""")
        )
        c.execute(
            sa.text("""
            INSERT INTO product_categories (id, name, lvl, updated_at)
            SELECT g, 'category ' || g, CASE WHEN g = 3 THEN :bad ELSE g % 4 END,
                   now() AT TIME ZONE 'utc' - interval '1 hour'
            FROM generate_series(1, 10) g"""),
            {"bad": BAD_LEVEL},
        )
        c.execute(sa.text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
        c.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    engine.dispose()
    poller_url = (
        make_url(pg_url).set(username=role, password=password).render_as_string(hide_password=False)
    )
    try:
        yield Source(pg_url, poller_url, password, database)
    finally:
        admin = sa.create_engine(pg_admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        engine = sa.create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"
                ),
                {"role": role},
            )
            c.execute(sa.text(f"DROP OWNED BY {role}"))
            c.execute(sa.text(f"DROP ROLE {role}"))
        engine.dispose()
