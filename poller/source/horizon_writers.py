"""The timestamp horizon on MySQL/MariaDB, SQL Server and Oracle: the earliest stamp another
session can still commit, from the sessions that are running a statement or have written.

These databases stamp rows at statement time (`NOW(6)`, `SYSDATETIME()`, `SYSDATE`), not at the
transaction's start, and list a transaction only once it has touched the storage engine: a
writer that queues behind a table or metadata lock (`LOCK TABLES`, a backup's FTWRL, the queue
behind an `ALTER TABLE`) has already taken its stamp but is not in the transaction list yet. So
a session counts when

* it is executing a statement: that statement's start is the oldest stamp it can take (the
  process list shows it while it waits for a lock);
* its transaction has written: it may commit rows stamped at the start of its first write. The
  list shows when the transaction was registered, which can be later than that statement's
  start (the lock wait), so the tracker below remembers, per session, the earliest start it has
  seen, and for a session that appears between two looks, the time of the previous look (it
  was not running anything then, so everything it stamped started after).

A transaction that has not written and runs nothing (`BEGIN; SELECT`, `mysqldump
--single-transaction` between tables, an idle BI session) cannot stamp a row older than its next
statement, which starts after this look: it is left out. MySQL/MariaDB: only sessions whose
current database is the polled one (or none) count; see docs/horizon-dialects.md for what that
leaves out. Each statement's text is fixed; no value is ever interpolated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import weakref
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from poller.source.innodb_cache import FRESH, OWN, fresh_rows

# Commands of sessions that are not running a client statement.
_IDLE = "('Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID')"
# A local DATETIME as the earliest UTC instant it may denote: in the hour repeated at the DST
# fall-back, CONVERT_TZ may pick either; converting one hour earlier and adding it back gives the
# first one (outside the transitions both agree).
_MY_LOCAL_TO_UTC = (
    "LEAST(CONVERT_TZ({x}, 'SYSTEM', '+00:00'), "
    "TIMESTAMPADD(HOUR, 1, CONVERT_TZ(TIMESTAMPADD(HOUR, -1, {x}), 'SYSTEM', '+00:00')))"
)

# The sessions that may write the polled table: all of them for a `query:` entity (its tables
# are not known) or when the connection has no database; else those whose current database is
# the table's (its qualifier, else the connection's) or none (qualified names only).
MYSQL_SCOPE = (
    "(:scope_all = 1 OR DATABASE() IS NULL AND :scope_db IS NULL OR p.DB IS NULL "
    "OR p.DB = COALESCE(:scope_db, DATABASE()))"
)


def scope_params(table: str | None) -> dict[str, object]:
    """The binds of MYSQL_SCOPE for an entity's `table` (None: a `query:` entity)."""
    if table is None:
        return {"scope_all": 1, "scope_db": None}
    return {"scope_all": 0, "scope_db": table.split(".")[0] if "." in table else None}


ANY_SCOPE = scope_params(None)
_MY_STARTED = _MY_LOCAL_TO_UTC.format(x="t.trx_started")

# Rows: (session, tx, running_since, wrote_since, local_now, utc_now): tx identifies the
# session's transaction if one is listed. The two times are UTC when local_now is NULL, else
# the server's local time (converted by the tracker).
WRITERS = {
    # PROCESSLIST.TIME is whole seconds since the statement's start (floor): one more second.
    # trx_started is DATETIME in the server's system time zone, whole seconds; innodb_trx is a
    # cache refreshed at most every 0.1 s (the tracker keeps a vanished session 0.25 s). The
    # LIMIT keeps INNODB_TRX a derived table read once (joined directly, MariaDB 10.11 took
    # 9-17 ms instead of 2 ms with 500 sessions). A transaction is told apart by its start
    # (with the session): MariaDB gives a transaction that starts writing a new trx_id.
    # Recovered XA transactions (thread 0) count whatever their database.
    # The reader's own session comes back as OWN, with its transaction's start once the cached
    # INNODB_TRX shows it: the proof that the list is fresh (innodb_cache).
    "mysql": (
        f"SELECT CASE WHEN p.ID = CONNECTION_ID() THEN '{OWN}' ELSE CAST(p.ID AS CHAR) END "  # noqa: S608 - constants only
        "AS session, CASE WHEN p.ID <> CONNECTION_ID() OR "
        f"{FRESH} THEN CAST(t.trx_started AS CHAR) END AS tx, "
        f"CASE WHEN p.COMMAND NOT IN {_IDLE} "
        "THEN TIMESTAMPADD(SECOND, -(p.TIME + 1), UTC_TIMESTAMP(6)) END AS running_since, "
        f"CASE WHEN t.trx_rows_modified > 0 THEN {_MY_STARTED} END AS wrote_since, "
        "NULL AS local_now, NULL AS utc_now "
        "FROM information_schema.PROCESSLIST p "
        "LEFT JOIN (SELECT trx_mysql_thread_id, trx_started, trx_rows_modified, trx_query, "
        "trx_is_read_only FROM information_schema.INNODB_TRX LIMIT 18446744073709551615) t "
        "ON t.trx_mysql_thread_id = p.ID "
        f"WHERE p.ID = CONNECTION_ID() OR p.ID <> CONNECTION_ID() AND {MYSQL_SCOPE} "
        "AND COALESCE(t.trx_is_read_only, 0) = 0 "
        f"AND (t.trx_rows_modified > 0 OR p.COMMAND NOT IN {_IDLE}) "
        "UNION ALL SELECT CONCAT('xa:', t.trx_id), CAST(t.trx_id AS CHAR), NULL, "
        f"{_MY_STARTED}, NULL, NULL "
        "FROM information_schema.INNODB_TRX t WHERE t.trx_mysql_thread_id = 0"
    ),
    # Times are DATETIME in the server's local time. Transactions count once they have written
    # to this database (database_transaction_begin_time is the first log record there); running
    # requests count in any database (a three-part name can write this one).
    "mssql": (
        "SELECT CAST(x.session_id AS VARCHAR(12)) AS session, "
        "CAST(MAX(x.tx) AS VARCHAR(30)) AS tx, "
        "MIN(x.running_since) AS running_since, MIN(x.wrote_since) AS wrote_since, "
        "SYSDATETIME() AS local_now, SYSUTCDATETIME() AS utc_now FROM ("
        "SELECT r.session_id, r.transaction_id AS tx, r.start_time AS running_since, "
        "NULL AS wrote_since "
        "FROM sys.dm_exec_requests r JOIN sys.dm_exec_sessions e ON e.session_id = r.session_id "
        "WHERE e.is_user_process = 1 AND r.session_id <> @@SPID "
        "UNION ALL SELECT s.session_id, s.transaction_id, NULL, t.transaction_begin_time "
        "FROM sys.dm_tran_session_transactions s "
        "JOIN sys.dm_tran_active_transactions t ON t.transaction_id = s.transaction_id "
        "JOIN sys.dm_tran_database_transactions d ON d.transaction_id = s.transaction_id "
        "WHERE d.database_id = DB_ID() AND d.database_transaction_begin_time IS NOT NULL "
        "AND s.session_id <> @@SPID) x GROUP BY x.session_id"
    ),
    # gv$: every RAC instance. A transaction is listed from its first change; a statement that
    # waits before it (a TM lock) shows as an ACTIVE session since SQL_EXEC_START. DATE columns
    # on the database server's clock (SYSDATE), whole seconds.
    "oracle": (
        "SELECT s.inst_id || ':' || s.sid || ':' || s.serial# AS session, "
        "CASE WHEN t.addr IS NOT NULL "
        "THEN t.xidusn || '.' || t.xidslot || '.' || t.xidsqn END AS tx, "
        "CASE WHEN s.status = 'ACTIVE' THEN s.sql_exec_start END AS running_since, "
        "t.start_date AS wrote_since, SYSDATE AS local_now, "
        "SYS_EXTRACT_UTC(SYSTIMESTAMP) AS utc_now "
        "FROM gv$session s LEFT JOIN gv$transaction t "
        "ON t.inst_id = s.inst_id AND t.addr = s.taddr "
        "WHERE s.type = 'USER' AND (t.addr IS NOT NULL OR s.status = 'ACTIVE') "
        "AND NOT (s.inst_id = TO_NUMBER(SYS_CONTEXT('USERENV', 'INSTANCE')) "
        "AND s.sid = TO_NUMBER(SYS_CONTEXT('USERENV', 'SID')))"
    ),
}
# innodb_trx may be this old; a session seen gone is kept this long before it is forgotten.
_CACHE = dt.timedelta(seconds=0.1)
_FORGET_AFTER = dt.timedelta(seconds=0.25)
# Two looks at one running statement may put its start this far apart (whole-second TIME).
_SAME_STATEMENT = dt.timedelta(seconds=2)
# The largest DST shift of any zone (Antarctica/Troll: 2 h); a local time read before the
# tracker has seen the server's offset stay put for that long may be off by as much.
_MAX_SHIFT = dt.timedelta(hours=2)


def writers_sql(dialect: str) -> sa.TextClause:
    return sa.text(WRITERS[dialect])


def statement_params(dialect: str, scope: dict[str, object] | None) -> dict[str, object]:
    """The binds of a list statement: MySQL's scope (everything when not given)."""
    if dialect not in ("mysql", "mariadb"):
        return {}
    return {**(scope or ANY_SCOPE), "marker": "-"}  # innodb_cache.fresh_rows sets its own


# The poller's own MySQL sessions, per engine: they run `SET SESSION TRANSACTION READ ONLY`
# (source/engine.py), so they cannot write, and their batch reads must not hold back the other
# entities' horizons for as long as they run.
_OWN: weakref.WeakKeyDictionary[sa.Engine, set[str]] = weakref.WeakKeyDictionary()


def own_sessions(engine: sa.Engine) -> set[str]:
    """The ids of the engine's MySQL sessions opened from now on (registered once)."""
    if engine in _OWN:
        return _OWN[engine]
    sessions: set[str] = set()
    _OWN[engine] = sessions
    if engine.dialect.name not in ("mysql", "mariadb"):
        return sessions

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        with contextlib.closing(dbapi_conn.cursor()) as cur:
            cur.execute("SELECT CONNECTION_ID()")
            session = str(cur.fetchone()[0])
        record.info["poller_session"] = session
        sessions.add(session)

    def on_close(_dbapi_conn: Any, record: Any) -> None:
        sessions.discard(record.info.pop("poller_session", None))

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "close", on_close)
    return sessions


@dataclass
class _Seen:
    since: dt.datetime  # the earliest stamp the session may still commit (naive UTC)
    tx: str | None  # its transaction then, if listed
    running: dt.datetime | None  # the start of the statement it was first seen running
    gone_at: dt.datetime | None = None  # first look it was missing from


@dataclass
class WriterTracker:
    """The oldest stamp other sessions may still commit, from successive looks at the lists
    (one tracker per reader: its looks are the ones it remembers)."""

    dialect: str  # "mysql", "mssql" or "oracle"
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _last: dt.datetime | None = None  # naive UTC of the previous look
    _offset: tuple[dt.timedelta, dt.datetime] | None = None  # server offset, seen since

    def oldest(
        self,
        conn: sa.Connection,
        now_utc: dt.datetime,
        own: set[str] | None = None,
        scope: dict[str, object] | None = None,
    ) -> dt.datetime | None:
        """The oldest stamp (naive UTC, before any slack) that another session may still
        commit; `now_utc` is the database's time read just before (naive UTC); `own`: the
        poller's read-only sessions, left out; `scope`: MySQL's scope_params."""
        params = statement_params(self.dialect, scope)
        if self.dialect == "mysql":  # INNODB_TRX is a cache: read it shown fresh, or not at all
            rows: list[Any] = fresh_rows(conn, writers_sql(self.dialect), params)
        else:
            rows = list(conn.execute(writers_sql(self.dialect), params).all())
        skip = own or set()
        return self.observe([tuple(r) for r in rows if str(r[0]) not in skip], now_utc)

    def observe(self, rows: list[tuple[Any, ...]], now_utc: dt.datetime) -> dt.datetime | None:
        """Rows: (session, transaction, running_since, wrote_since, local_now, utc_now)."""
        present: dict[str, _Seen] = {}
        for session, tx, running_at, wrote_at, local_now, utc_now in rows:
            running, wrote = (None if v is None else _utc(v) for v in (running_at, wrote_at))
            if local_now is not None and utc_now is not None:
                self._see_offset(_utc(local_now), _utc(utc_now))
                running, wrote = (
                    None if v is None else self._local_to_utc(v) for v in (running, wrote)
                )
            times = [v for v in (running, wrote) if v is not None]
            if not times:
                continue
            key, tx = str(session), None if tx is None else str(tx)
            seen = _Seen(min(times), tx, running)
            known = self._seen.get(key)
            if known is not None and self._continues(known, seen):
                seen = _Seen(min(seen.since, known.since), tx, known.running or running)
            elif self._last is not None:  # it ran nothing of this transaction at the last look
                seen.since = min(seen.since, self._last - _CACHE)
            if key in present:  # SQL Server: one row per session already; keep the earliest
                seen.since = min(seen.since, present[key].since)
            present[key] = seen
        for key in [k for k in self._seen if k not in present]:
            gone = self._seen[key]
            if gone.gone_at is None:  # innodb_trx is a cache: missing once is not gone yet
                gone.gone_at = now_utc
            elif now_utc - gone.gone_at >= _FORGET_AFTER:
                del self._seen[key]
        self._seen.update(present)
        self._last = now_utc
        return min((s.since for s in self._seen.values()), default=None)

    @staticmethod
    def _continues(known: _Seen, now: _Seen) -> bool:
        """Whether what the session may commit now can include what it did at the last look:
        the same transaction; or a statement seen running outside any listed transaction that
        still runs (its start within the list's 2 s precision) or has become a transaction
        (the first write after a lock wait). A new statement or transaction does not carry
        the old start on, so a busy session does not freeze the bound."""
        if known.tx is not None:
            return known.tx == now.tx
        if known.running is None:
            return False
        if now.tx is not None:
            return True
        return now.running is not None and now.running <= known.running + _SAME_STATEMENT

    def _see_offset(self, local_now: dt.datetime, utc_now: dt.datetime) -> None:
        offset = dt.timedelta(minutes=round((local_now - utc_now).total_seconds() / 60))
        if self._offset is None or self._offset[0] != offset:
            self._offset = (offset, utc_now)

    def _local_to_utc(self, local: dt.datetime) -> dt.datetime:
        """A server-local time as UTC with the offset in force now, unless the offset may have
        changed since (a DST transition): then the earliest instant it may denote."""
        assert self._offset is not None  # seen with the same row
        offset, since = self._offset
        utc = local - offset
        if utc - _MAX_SHIFT < since:
            utc -= _MAX_SHIFT
        return utc


def _utc(value: Any) -> dt.datetime:
    """A time from a list as naive UTC (MySQL may hand a computed DATETIME back as text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"the transaction list returned {type(value).__name__} for a time")
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
