"""Writer sessions: one database connection each, on a thread of its own, so a statement that
waits behind a lock blocks only that session while the schedule goes on."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import pymysql
from sqlalchemy.engine import make_url

from tests.model.dialects import Dialect

T = TypeVar("T")

STATEMENT_TIMEOUT_S = 120  # a lock wait the schedule did not plan fails the run, never hangs it


def connect(dialect: Dialect, url: str) -> Any:
    """A raw DBAPI connection in autocommit mode: transactions are begun explicitly."""
    u = make_url(url)
    if dialect.is_postgres:
        conn = psycopg2.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            dbname=u.database,
            connect_timeout=10,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_S * 1000} -c TimeZone=UTC",
        )
        conn.autocommit = True
        return conn
    conn = pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password,
        database=u.database,
        autocommit=True,
        connect_timeout=10,
        read_timeout=STATEMENT_TIMEOUT_S,
        init_command=(
            "SET SESSION time_zone = '+00:00', auto_increment_increment = 2, "
            "auto_increment_offset = 1"
        ),
    )
    return conn


class Session:
    """One writer: statements run on its own thread, in the order submitted."""

    def __init__(self, dialect: Dialect, url: str, label: str) -> None:
        self.dialect = dialect
        self.label = label
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=label)
        self.conn: Any = self._pool.submit(connect, dialect, url).result(timeout=30)
        self.session_id = int(self.call(lambda c: self.scalar(c, dialect.session_id_sql)))
        self.pending: cf.Future[Any] | None = None  # a statement waiting behind the lock
        self.on_done: Callable[[Any], None] = lambda _result: None  # what to do when it ends
        self.began_at: dt.datetime | None = None  # client clock when BEGIN returned

    @staticmethod
    def scalar(conn: Any, sql: str, params: Any = None) -> Any:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return None if row is None else row[0]

    @staticmethod
    def column(conn: Any, sql: str, params: Any = None) -> list[Any]:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return [r[0] for r in cur.fetchall()]

    def submit(self, fn: Callable[[Any], T]) -> cf.Future[T]:
        return self._pool.submit(fn, self.conn)

    def call(self, fn: Callable[[Any], T], timeout: float = STATEMENT_TIMEOUT_S + 10) -> T:
        return self.submit(fn).result(timeout=timeout)

    def execute(self, sql: str, params: Any = None) -> None:
        def run(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.execute(sql, params)

        self.call(run)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the database may have dropped it already
            self._pool.submit(self.conn.close).result(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.005)
