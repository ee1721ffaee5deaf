"""Driver cursors for reading a batch: streaming where the driver would buffer everything."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import pymysql.cursors


def open_cursor(dbapi_conn: Any, driver: str, chunk: int) -> Any:
    """A server-side cursor where the driver buffers the whole result otherwise, so memory
    stays at one chunk in the driver plus the batch itself."""
    if driver == "psycopg2":
        cur = dbapi_conn.cursor(name="poller_batch")  # DECLARE ... CURSOR, FETCH chunks
        cur.itersize = chunk
    elif driver == "pymysql":
        cur = dbapi_conn.cursor(pymysql.cursors.SSCursor)  # unbuffered, reads the socket
    elif driver == "mysqldb":
        import MySQLdb.cursors  # optional (mysqlclient): imported only when the URL uses it

        cur = dbapi_conn.cursor(MySQLdb.cursors.SSCursor)  # mysql_use_result: streams too
    else:  # sqlite3, pyodbc and oracledb stream by default
        cur = dbapi_conn.cursor()
        cur.arraysize = chunk
    return cur


def read_all(cur: Any, sql: str, values: Any, chunk: int) -> tuple[list[Sequence[object]], Any]:
    """Every row of the statement, and the cursor's description; the cursor is closed."""
    rows: list[Sequence[object]] = []
    try:
        cur.execute(sql, values)
        while part := cur.fetchmany(chunk):
            rows.extend(part)
        description = cur.description
    except BaseException:
        # Closing may fail too (aborted transaction, dead socket, an unbuffered result that
        # cannot be drained); the first error is the one that tells what happened.
        with contextlib.suppress(Exception):
            cur.close()
        raise
    cur.close()
    return rows, description
