"""A real PostgreSQL streaming replica (hot standby) for tests, on ports 5440-5449.

The primary is a private cluster (never the shared one on 5432: a test must not change it),
made with Debian's `pg_createcluster`; the standby is a second cluster whose data directory is
replaced by a `pg_basebackup -R` of the primary, so it starts in recovery and streams from it.
Both are dropped at teardown. Use the `pg_replica` fixture (import it into the test module, or
into a conftest) or `PostgresReplica` directly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.faults.own_postgres import DedicatedPostgres, _run
from tests.integration.faults.waits import wait_for

PORTS = range(5440, 5450)  # this helper's share of the machine's ports


def _free_ports(n: int) -> list[int]:
    found: list[int] = []
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    pytest.fail(f"no {n} free ports in {PORTS.start}-{PORTS.stop - 1} for the replica test")


class PostgresReplica:
    """`primary_url` (read-write, max_prepared_transactions 5) and `standby_url` (hot
    standby), role poller/poller (superuser), database `faults`."""

    def __init__(self) -> None:
        self.primary = DedicatedPostgres()
        primary_port, self.standby_port = _free_ports(2)
        self.primary.port = primary_port
        self.primary.url = f"postgresql+psycopg2://poller:poller@127.0.0.1:{primary_port}/faults"
        self.version = self.primary.version
        self.standby = f"standby_{uuid.uuid4().hex[:8]}"
        self.standby_url = (
            f"postgresql+psycopg2://poller:poller@127.0.0.1:{self.standby_port}/faults"
        )
        self.standby_created = False

    @property
    def primary_url(self) -> str:
        return self.primary.url

    def create(self) -> None:
        self.primary.create()
        # Prepared transactions on (the shared server has them off); the standby inherits it
        # through the base backup, as a hot standby must.
        _run("runuser", "-u", "postgres", "--", "psql", "-p", str(self.primary.port), "-qc",
             "ALTER SYSTEM SET max_prepared_transactions = 5")  # fmt: skip
        self.primary.stop()
        self.primary.start()
        _run("pg_createcluster", self.version, self.standby, "-p", str(self.standby_port), "--",
             "--auth-host=scram-sha-256", "--auth-local=peer")  # fmt: skip
        self.standby_created = True
        data = f"/var/lib/postgresql/{self.version}/{self.standby}"
        shutil.rmtree(data)
        _run("runuser", "-u", "postgres", "--", "env", "PGPASSWORD=poller", "pg_basebackup",
             "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "poller", "-D", data,
             "-R", "-X", "stream", "-c", "fast")  # fmt: skip
        os.chmod(data, 0o700)
        _run("pg_ctlcluster", self.version, self.standby, "start")
        wait_for(self._standby_ready, 60, "the standby to accept connections", interval=0.3)

    def _standby_ready(self) -> bool:
        argv = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.standby_port)]
        return subprocess.run(argv, timeout=10, check=False).returncode == 0

    def wait_replayed(self, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        primary = sa.create_engine(self.primary_url, poolclass=NullPool)
        standby = sa.create_engine(self.standby_url, poolclass=NullPool)
        try:
            with primary.connect() as conn:
                lsn = conn.execute(sa.text("SELECT pg_current_wal_lsn()::text")).scalar_one()

            def replayed() -> bool:
                with standby.connect() as conn:
                    behind = conn.execute(
                        sa.text(
                            "SELECT pg_wal_lsn_diff(CAST(:lsn AS pg_lsn), pg_last_wal_replay_lsn())"
                        ),
                        {"lsn": lsn},
                    ).scalar_one()
                    return behind is not None and float(behind) <= 0

            wait_for(replayed, timeout, "the standby to replay the primary's writes", interval=0.2)
        finally:
            primary.dispose()
            standby.dispose()

    def drop(self) -> None:
        try:
            if self.standby_created:
                _run("pg_dropcluster", "--stop", self.version, self.standby)
                self.standby_created = False
        finally:
            self.primary.drop()


@pytest.fixture
def pg_replica() -> Iterator[PostgresReplica]:
    replica = PostgresReplica()
    try:
        replica.create()
        yield replica
    finally:
        replica.drop()
