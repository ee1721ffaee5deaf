"""A private PostgreSQL cluster with wal_level=logical (Debian's pg_createcluster, as
tests/integration/faults/own_postgres.py does), holding the bench's `customers` table: the
shared server on 5432 is not logical and must not be restarted."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

from bench import dataset

TABLE = "customers"


def free_port(ports: range) -> int:
    """The first port of `ports` that nothing listens on."""
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _run(*argv: str, timeout: float = 300) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {proc.returncode}: "
                           f"{proc.stdout}{proc.stderr}")  # fmt: skip


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, its reaped children and its live descendants
    (the postmaster's backends and walsenders: their time reaches the postmaster's
    children_* only when they exit)."""
    root = psutil.Process(pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.Error:  # exited between listing and reading: counted as reaped next time
            continue
        total += c.user + c.system
    return float(total)


class LogicalPostgres:
    """Role poller/poller (superuser, so also REPLICATION), database poller_bench."""

    def __init__(self, ports: range) -> None:
        missing = [t for t in ("pg_createcluster", "pg_dropcluster", "runuser", "pg_isready")
                   if shutil.which(t) is None]  # fmt: skip
        if missing or not os.path.isdir("/usr/lib/postgresql"):
            what = ", ".join(missing) or "/usr/lib/postgresql"
            raise RuntimeError(f"{what} not found: install PostgreSQL (scripts/services up)")
        self.version = max((v for v in os.listdir("/usr/lib/postgresql") if v.isdigit()), key=int)
        self.cluster = f"bench_peer_{uuid.uuid4().hex[:8]}"
        self.port = free_port(ports)
        self.url = f"postgresql+psycopg2://poller:poller@127.0.0.1:{self.port}/{dataset.BENCH_DB}"
        self.created = False

    def create(self) -> None:
        _run("pg_createcluster", self.version, self.cluster, "-p", str(self.port),
             "-o", "wal_level=logical", "--start", "--",
             "--auth-host=scram-sha-256", "--auth-local=peer")  # fmt: skip
        self.created = True
        deadline = time.monotonic() + 60
        while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                             timeout=10, check=False).returncode != 0:  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError(f"the peer PostgreSQL on {self.port} did not start")
            time.sleep(0.3)
        for sql in ("CREATE ROLE poller LOGIN SUPERUSER REPLICATION PASSWORD 'poller'",
                    f"CREATE DATABASE {dataset.BENCH_DB} OWNER poller"):  # fmt: skip
            _run("runuser", "-u", "postgres", "--", "psql", "-p", str(self.port), "-qc", sql)

    def postmaster_pid(self) -> int:
        pidfile = Path("/var/lib/postgresql") / self.version / self.cluster / "postmaster.pid"
        return int(pidfile.read_text().split()[0])

    def cpu_s(self) -> float:
        return tree_cpu_s(self.postmaster_pid())

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    def load(self, rows: int) -> float:
        """The bench's generated table (bench/dataset.py) with `rows` rows; seconds spent."""
        eng = self.engine()
        try:
            return dataset.ensure_table(eng, "postgresql", TABLE, rows)
        finally:
            eng.dispose()

    def insert(self, first: int, count: int) -> None:
        """Rows first..first+count-1 of the same generator, in one transaction."""
        # Generated from the dataset's constants and integers only, as dataset.ensure_table does.
        values = dataset.select_rows(dataset.Dialect("postgresql"), "g")
        last = int(first + count - 1)
        sql = f"INSERT INTO {TABLE} SELECT {values} FROM generate_series({int(first)}::bigint, {last}) AS g"  # noqa: S608, E501
        eng = self.engine()
        try:
            with eng.connect() as c:
                c.exec_driver_sql(sql.replace("%", "%%"))
        finally:
            eng.dispose()

    def restore(self, rows: int) -> None:
        """Back to rows 1..rows (a catch-up added more), no dead tuples, no slot left behind."""
        eng = self.engine()
        try:
            with eng.connect() as c:
                c.exec_driver_sql(f"DELETE FROM {TABLE} WHERE customer_id > {int(rows)}")  # noqa: S608
                c.exec_driver_sql(f"VACUUM (ANALYZE, FREEZE) {TABLE}")
                c.exec_driver_sql("SELECT pg_drop_replication_slot(slot_name) "
                                  "FROM pg_replication_slots WHERE NOT active")  # fmt: skip
        finally:
            eng.dispose()

    def drop(self) -> None:
        if self.created:
            _run("pg_dropcluster", "--stop", self.version, self.cluster)
            self.created = False
