"""Private MariaDB servers for tests that need a server of their own: a primary with a binary
log and a real replica of it (the shared server on 3306 has no binary log, and must never be
reconfigured). Each server is a `mariadbd` with its own datadir under a temporary directory, on
a port of 3310-3319 (horizon-my's range), stopped and removed at teardown.

    with replica_pair(tmp_path) as (primary, replica):
        ...  # both accept poller/poller on 127.0.0.1; database `horizon` replicates
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

PORTS = range(3310, 3320)
DATABASE = "horizon"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(taken: set[int]) -> int:
    for port in PORTS:
        if port not in taken and _port_free(port):
            taken.add(port)
            return port
    pytest.fail(f"no free port in {PORTS.start}-{PORTS.stop - 1} for a private MariaDB")


class OwnMariaDB:
    """One `mariadbd` on 127.0.0.1:`port` with user poller/poller (all privileges)."""

    def __init__(
        self, root: Path, port: int, server_id: int, log_bin: bool, tz: str | None = None
    ) -> None:
        self.root, self.port, self.server_id, self.log_bin = root, port, server_id, log_bin
        self.tz = tz  # the server's system time zone (TZ), else the machine's
        self.datadir = root / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"mysql+pymysql://poller:poller@127.0.0.1:{port}/{DATABASE}"
        self.admin_url = f"mysql+pymysql://poller:poller@127.0.0.1:{port}/mysql"

    def start(self) -> None:
        for tool in ("mariadbd", "mariadb-install-db"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                pytest.fail(f"{tool} not found: install MariaDB (`scripts/services up mariadb`)")
        self.datadir.mkdir(parents=True)
        done = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"mariadb-install-db failed: {done.stdout}{done.stderr}")
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        argv = [
            mariadbd, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
            f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--socket={self.root / 'sock'}", f"--pid-file={self.root / 'pid'}",
            f"--server-id={self.server_id}", "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
            "--performance-schema=OFF", f"--log-error={self.root / 'error.log'}",
            f"--tmpdir={self.root}",  # its own: nothing else cleans it
        ]  # fmt: skip
        if self.log_bin:
            argv += [f"--log-bin={self.root / 'binlog'}", "--binlog-format=ROW"]
        env = {**os.environ, "TZ": self.tz} if self.tz else None
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "error.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"the private mariadbd on {self.port} did not start: {log}")
            time.sleep(0.2)
        socket_root = sa.create_engine(
            "mysql+pymysql://root@localhost/mysql",
            connect_args={"unix_socket": str(self.root / "sock")},
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
        with socket_root.connect() as conn:
            conn.execute(sa.text("SET SESSION sql_log_bin = 0"))  # not replayed by a replica
            for host in ("%", "localhost", "127.0.0.1"):
                conn.execute(sa.text(f"CREATE USER 'poller'@'{host}' IDENTIFIED BY 'poller'"))
                conn.execute(sa.text(f"GRANT ALL ON *.* TO 'poller'@'{host}' WITH GRANT OPTION"))
        socket_root.dispose()

    def _answers(self) -> bool:
        return (self.root / "sock").exists() and not _port_free(self.port)

    def execute(self, *statements: str) -> None:
        engine = sa.create_engine(self.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for stmt in statements:
                    conn.execute(sa.text(stmt))
        finally:
            engine.dispose()

    def scalar(self, stmt: str) -> object:
        engine = sa.create_engine(self.admin_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(stmt)).scalar()
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None


@contextlib.contextmanager
def own_server(tmp: Path, tz: str | None = None) -> Iterator[OwnMariaDB]:
    """One private server (database `horizon`), its system time zone `tz` if given."""
    server = OwnMariaDB(tmp / "server", _free_port(set()), 1, log_bin=False, tz=tz)
    try:
        server.start()
        server.execute(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def replica_pair(tmp: Path) -> Iterator[tuple[OwnMariaDB, OwnMariaDB]]:
    """A primary (binary log on) and a replica replicating database `horizon` from it."""
    taken: set[int] = set()
    primary = OwnMariaDB(tmp / "primary", _free_port(taken), 1, log_bin=True)
    replica = OwnMariaDB(tmp / "replica", _free_port(taken), 2, log_bin=False)
    try:
        primary.start()
        replica.start()
        primary.execute(
            "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl'",
            "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'",
        )
        replica.execute(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, "
            "MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos",
            "START SLAVE",
        )
        primary.execute(f"CREATE DATABASE {DATABASE}")
        deadline = time.monotonic() + 60
        while not replica.scalar(
            f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{DATABASE}'"  # noqa: S608
        ):
            if time.monotonic() > deadline:
                status = replica.scalar("SELECT @@gtid_slave_pos")
                log = (replica.root / "error.log").read_text(errors="replace")[-1500:]
                pytest.fail(f"the private replica did not replicate (at {status}): {log}")
            time.sleep(0.2)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture
def mariadb_pair(tmp_path: Path) -> Iterator[tuple[OwnMariaDB, OwnMariaDB]]:
    """A private primary and a real replica of it (import this fixture into a test module)."""
    with replica_pair(tmp_path) as pair:
        yield pair
