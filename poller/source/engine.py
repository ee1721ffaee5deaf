"""Engines for the source database: read-only, time-limited sessions in `source.timezone`."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from poller.config import SourceConfig
from poller.config.drivers import with_driver
from poller.errors import ConfigError
from poller.source import tls
from poller.source.horizon_writers import own_sessions
from poller.source.mysql_values import MYSQL_ERRORS, mysqldb_args

log = logging.getLogger(__name__)

ORACLE_SET_ZONE = (
    "BEGIN EXECUTE IMMEDIATE 'ALTER SESSION SET TIME_ZONE = ' || "
    "DBMS_ASSERT.ENQUOTE_LITERAL(:zone); END;"
)


def make_engine(source: SourceConfig) -> sa.Engine:
    """An engine whose connections are read-only, time-limited and in `source.timezone`.

    Settings are made once per connection (connect arguments or a connect hook), not per batch,
    so a batch costs no extra round trips. The password is never logged: SQLAlchemy renders URLs
    with the password hidden, and `echo` stays off.
    """
    url = with_driver(make_url(source.url), source.require_tls)
    backend = url.get_backend_name()
    timeout_ms = max(1, int(source.statement_timeout_s * 1000))
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        # libpq startup options; the server applies them before the first statement.
        options = (
            f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on "
            f"-c TimeZone={source.timezone}"
        )
        user_options = url.query.get("options")
        if isinstance(user_options, str):
            options = f"{user_options} {options}"
        connect_args = {
            "connect_timeout": max(2, math.ceil(source.connect_timeout_s)),  # libpq minimum 2 s
            "options": options,
            "application_name": url.query.get("application_name", "poller"),
            # Detects a silently dead peer (firewall, failover) in ~1 min instead of hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    elif backend in ("mysql", "mariadb"):
        connect_args = {
            "connect_timeout": source.connect_timeout_s,
            # The server ends a slow statement itself; the socket timeouts only catch a dead peer.
            "read_timeout": source.statement_timeout_s + 30,
            "write_timeout": source.statement_timeout_s + 30,
        }
        if url.get_driver_name() == "mysqldb":
            if source.require_tls:
                raise ConfigError(
                    [
                        "source.url: mysql+mysqldb does not take source.require_tls here; use "
                        "mysql+pymysql (or mysql:// and the poller picks it)"
                    ]
                )
            connect_args = mysqldb_args(connect_args)
    elif backend == "sqlite":
        connect_args = {"timeout": source.connect_timeout_s}
    elif backend == "mssql":
        connect_args = {"timeout": max(1, math.ceil(source.connect_timeout_s))}  # login timeout
    elif backend == "oracle":
        connect_args = {"tcp_connect_timeout": source.connect_timeout_s}
    connect_args |= tls.connect_args(backend, source)
    engine = sa.create_engine(url, pool_pre_ping=True, pool_recycle=1800, connect_args=connect_args)
    check = tls.EncryptionCheck(backend, source, url)
    event.listen(engine, "connect", _session_setup(backend, source, timeout_ms, check))
    own_sessions(engine)  # the horizon leaves these read-only sessions out (MySQL)
    return engine


def _session_setup(
    backend: str, source: SourceConfig, timeout_ms: int, check: tls.EncryptionCheck
) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        check(dbapi_conn)  # before anything else is sent on a connection that may be refused
        if backend == "postgresql" and type(dbapi_conn).__module__.startswith("psycopg2"):
            from poller.source import pg_types  # psycopg2 is only imported for PostgreSQL

            pg_types.register(dbapi_conn)
        elif backend in ("mysql", "mariadb"):
            mariadb = "mariadb" in str(dbapi_conn.get_server_info()).lower()
            with contextlib.closing(dbapi_conn.cursor()) as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
                if mariadb:
                    cur.execute("SET SESSION max_statement_time = %s", (timeout_ms / 1000,))
                else:
                    cur.execute("SET SESSION max_execution_time = %s", (timeout_ms,))
                zone = "+00:00" if source.timezone in ("UTC", "Etc/UTC") else source.timezone
                try:
                    # TIMESTAMP columns and NOW() follow it (DATETIME is zone-less).
                    cur.execute("SET SESSION time_zone = %s", (zone,))
                except MYSQL_ERRORS as exc:  # named zones need the tz tables loaded
                    # Reading TIMESTAMP columns in another zone would shift every cursor.
                    raise ConfigError(
                        [
                            f"source.timezone: the MySQL server cannot set time_zone to "
                            f"{zone!r} ({exc.args[-1]}); load its time zone tables "
                            "(mysql_tzinfo_to_sql /usr/share/zoneinfo | mysql mysql)"
                        ]
                    ) from exc
        elif backend == "sqlite":
            with contextlib.closing(dbapi_conn.cursor()) as cur:
                cur.execute("PRAGMA query_only = ON")
        elif backend == "mssql":
            dbapi_conn.timeout = max(1, timeout_ms // 1000)  # pyodbc query timeout, seconds
        elif backend == "oracle":
            dbapi_conn.call_timeout = timeout_ms
            # TIMESTAMP WITH LOCAL TIME ZONE and CURRENT_TIMESTAMP follow the session's zone.
            # ALTER SESSION takes no bind variables: the zone is bound into a block that quotes
            # it server-side (DBMS_ASSERT rejects anything that is not a plain literal).
            with contextlib.closing(dbapi_conn.cursor()) as cur:
                cur.execute(ORACLE_SET_ZONE, zone=oracle_zone(source))

    return on_connect


def oracle_zone(source: SourceConfig) -> str:
    return "+00:00" if source.timezone in ("UTC", "Etc/UTC") else source.timezone
