"""Source databases of the fault tests: fast seeding, snapshots of what the topics must
hold, killing the poller's sessions, stopping PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.faults.waits import port_open, wait_for

T = TypeVar("T")

SEED = int(os.environ.get("POLLER_FAULT_SEED", "20240611"))
UTC = dt.UTC

# Where `.venv/bin/poller` lives: next to the interpreter running the tests.
POLLER_BIN = Path(sys.executable).with_name("poller")


@dataclass(frozen=True)
class SourceRow:
    """What the topic must hold for one source row (keyed by local_id): decoded field values."""

    fields: Mapping[str, object]


class SourceDB:
    """One test database (the fresh one of `pg_url` / `mariadb_url`), autocommit, no pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=bounded_connect_args(url),
        )
        self.dialect = self.engine.dialect.name
        self.database = self.engine.url.database or ""

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def execute(self, *statements: str, params: Mapping[str, object] | None = None) -> None:
        with self.engine.connect() as conn:
            for stmt in statements:
                conn.execute(sa.text(stmt), dict(params or {}))

    def rows(self, sql: str, params: Mapping[str, object] | None = None) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), dict(params or {}))]

    def scalar(self, sql: str, params: Mapping[str, object] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), dict(params or {})).scalar()

    # -- the customers table ------------------------------------------------------------------

    def create_customers(self) -> None:
        if self.is_postgres:
            self.execute(
                "CREATE TABLE customers (id bigint PRIMARY KEY, full_name text NOT NULL, "
                "email text, birth_date date, updated_at timestamp(6) NOT NULL)",
                "CREATE INDEX customers_updated ON customers (updated_at, id)",
            )
        else:
            self.execute(
                "CREATE TABLE customers (id BIGINT PRIMARY KEY, full_name VARCHAR(100) NOT NULL, "
                "email VARCHAR(100), birth_date DATE, updated_at DATETIME(6) NOT NULL, "
                "KEY customers_updated (updated_at, id))"
            )

    def seed_customers(self, n: int, first: int = 1, per_second: int = 7) -> None:
        """Rows `first`..`first+n-1`, `per_second` rows sharing each updated_at value (so
        batch boundaries fall inside runs of equal cursors). One INSERT, server-side."""
        last = first + n - 1
        if self.is_postgres:
            self.execute(
                "INSERT INTO customers (id, full_name, email, birth_date, updated_at) "
                "SELECT g, 'Customer ' || g || ' v1', 'c' || g || '@example.com', "
                "date '1950-01-01' + (g % 20000)::int, "
                "timestamp '2024-01-01' + (g / :per) * interval '1 second' "
                "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g",
                params={"first": first, "last": last, "per": per_second},
            )
        else:
            # seq_<a>_to_<b> is MariaDB's SEQUENCE engine; a and b are ints (no injection).
            sql = (
                "INSERT INTO customers (id, full_name, email, birth_date, updated_at) "  # noqa: S608
                "SELECT seq, CONCAT('Customer ', seq, ' v1'), CONCAT('c', seq, '@example.com'), "
                "DATE '1950-01-01' + INTERVAL (seq MOD 20000) DAY, "
                "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq DIV :per) SECOND "
                f"FROM seq_{int(first)}_to_{int(last)}"
            )
            self.execute(sql, params={"per": per_second})

    def customers(self) -> dict[str, SourceRow]:
        """local_id -> the fields the topic must carry for it (the version columns)."""
        return {
            str(r[0]): SourceRow({"full_name": r[1], "updated_at": r[2].replace(tzinfo=UTC)})
            for r in self.rows("SELECT id, full_name, updated_at FROM customers")
        }

    def max_cursor(self, column: str, table: str = "customers") -> Any:
        check_name(column)
        check_name(table)
        return self.scalar(f"SELECT max({column}) FROM {table}")  # noqa: S608 - checked names

    # -- the poller's sessions ------------------------------------------------------------------

    def _sessions(self, conn: sa.Connection, reading: bool) -> list[int]:
        """Ids of every other session on this test's database: the poller's (the test's own
        connections are not pooled, so none of them is idle here). `reading`: only those in
        the middle of reading a batch: PostgreSQL's batch cursor (the reader names it
        poller_batch) open or the native path's COPY running, MariaDB sending rows."""
        if self.is_postgres:
            sql = (
                "SELECT pid FROM pg_stat_activity WHERE datname = :db "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND (NOT :reading OR ((query LIKE '%poller_batch%' OR query LIKE 'COPY (SELECT%') "
                "AND state IN ('active', 'idle in transaction')))"
            )
        else:
            sql = (
                "SELECT id FROM information_schema.processlist WHERE db = :db "
                "AND id <> CONNECTION_ID() AND command <> 'Killed' "
                "AND (NOT :reading OR state IN ('Sending data', 'Writing to net'))"
            )
        params = {"db": self.database, "reading": reading}
        return [int(r[0]) for r in conn.execute(sa.text(sql), params)]

    def kill_poller_sessions(self, reading: bool = False) -> int:
        """Terminate (PostgreSQL) / KILL (MariaDB) the poller's sessions (`reading`: those in
        the middle of a read); how many went."""
        killed = 0
        with self.engine.connect() as conn:
            for sid in self._sessions(conn, reading):
                if self.is_postgres:
                    ok = conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": sid})
                    killed += bool(ok.scalar())
                else:
                    try:
                        conn.execute(sa.text(f"KILL {int(sid)}"))
                        killed += 1
                    except sa.exc.DBAPIError:  # it ended by itself meanwhile
                        pass
        return killed

    def close(self) -> None:
        self.engine.dispose()


def bounded_connect_args(url: str) -> dict[str, Any]:
    """Connect and statement time limits, so a test never hangs on a stuck database."""
    if sa.make_url(url).get_backend_name() == "postgresql":
        return {"connect_timeout": 10, "options": "-c statement_timeout=60000"}
    return {"connect_timeout": 10, "read_timeout": 60, "write_timeout": 60}


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def customers_entity(mode: str = "id", batch_size: int = 5000, **overrides: Any) -> dict[str, Any]:
    """The `customers` entity over `SourceDB.create_customers`' table."""
    batching: dict[str, Any] = {
        "id": {"mode": "id", "column": "id"},
        "timestamp": {"mode": "timestamp", "column": "updated_at"},
        "timestamp+id": {"mode": "timestamp+id", "column": "updated_at", "id_column": "id"},
    }[mode]
    entity: dict[str, Any] = {
        "table": "customers",
        "key": "id",
        "fields": {
            "local_id": "id",
            "full_name": "full_name",
            "email": "email",
            "birth_date": "birth_date",
            "updated_at": "updated_at",
        },
        "batching": batching,
        "batch_size": batch_size,
        "poll_interval_s": 1,
    }
    entity.update(overrides)
    return entity


# --------------------------------------------------------------------------------- kafka


class PostgresServer:
    """Stops and starts the real PostgreSQL cluster (pg_ctlcluster)."""

    def __init__(self) -> None:
        versions = (
            sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
            if os.path.isdir("/usr/lib/postgresql")
            else []
        )
        if not versions or shutil.which("pg_ctlcluster") is None:
            pytest.fail(
                "pg_ctlcluster / /usr/lib/postgresql not found; start the stack with "
                "`scripts/services up postgres`",
                pytrace=False,
            )
        self.version = versions[-1]

    def _ctl(self, action: str, *extra: str) -> None:
        proc = subprocess.run(
            ["pg_ctlcluster", self.version, "main", action, *extra],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"pg_ctlcluster {self.version} main {action} exited {proc.returncode}: "
                f"{proc.stdout}{proc.stderr}"
            )

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")
        wait_for(lambda: not port_open("127.0.0.1", 5432), 30, "PostgreSQL to stop listening")

    def start(self) -> None:
        self._ctl("start")
        wait_for(self.ready, 60, "PostgreSQL to accept connections", interval=0.3)

    @staticmethod
    def ready() -> bool:
        return (
            subprocess.run(
                ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], timeout=10, check=False
            ).returncode
            == 0
        )

    def ensure_up(self) -> None:
        if not self.ready():
            self.start()
