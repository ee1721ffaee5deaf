"""A private PostgreSQL cluster for tests that stop the database server.

Stopping the shared cluster on 5432 would break every test running beside it, so a test that
needs a database outage gets a cluster of its own (Debian's `pg_createcluster`, a free port,
the newest installed PostgreSQL), dropped afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.integration.faults.waits import free_port, wait_for


def _run(*argv: str, timeout: float = 180) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` exited {proc.returncode}: {proc.stdout}{proc.stderr}")


class DedicatedPostgres:
    """Role poller/poller (superuser), database `faults`, on 127.0.0.1:`port`."""

    def __init__(self) -> None:
        tools = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "runuser", "pg_isready")
        missing = [t for t in tools if shutil.which(t) is None]
        if missing or not os.path.isdir("/usr/lib/postgresql"):
            pytest.fail(
                f"{', '.join(missing) or '/usr/lib/postgresql'} not found: install PostgreSQL "
                "with `scripts/services up postgres`",
                pytrace=False,
            )
        versions = [v for v in os.listdir("/usr/lib/postgresql") if v.isdigit()]
        self.version = max(versions, key=int)
        self.cluster = f"faults_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://poller:poller@127.0.0.1:{self.port}/faults"
        self.created = False

    def create(self) -> None:
        _run("pg_createcluster", self.version, self.cluster, "-p", str(self.port), "--",
             "--auth-host=scram-sha-256", "--auth-local=peer")  # fmt: skip
        self.created = True
        self.start()
        for sql in (
            "CREATE ROLE poller LOGIN SUPERUSER PASSWORD 'poller'",
            "CREATE DATABASE faults OWNER poller",
        ):
            _run("runuser", "-u", "postgres", "--", "psql", "-p", str(self.port), "-qc", sql)

    def ready(self) -> bool:
        argv = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(argv, timeout=10, check=False).returncode == 0

    def stop(self) -> None:
        _run("pg_ctlcluster", self.version, self.cluster, "stop", "-m", "fast")
        wait_for(lambda: not self.ready(), 30, "the test's PostgreSQL to stop")

    def start(self) -> None:
        _run("pg_ctlcluster", self.version, self.cluster, "start")
        wait_for(self.ready, 60, "the test's PostgreSQL to accept connections", interval=0.3)

    def drop(self) -> None:
        if self.created:
            _run("pg_dropcluster", "--stop", self.version, self.cluster)
            self.created = False
