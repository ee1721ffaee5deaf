"""The commit-safe horizon: how far a batch may read without passing a row that a transaction
still open could commit later.

A row becomes visible at commit, but its cursor is taken earlier: a timestamp when the writer
stamped it (`now()`, `CURRENT_TIMESTAMP`, a trigger), an id when the sequence handed it out.
Reading up to "now" can therefore pass rows that commit later, behind the watermark. Instead of
guessing how long transactions stay open (the settle delay), the horizon asks the database
which write transactions are open:

* timestamp modes: rows strictly older than the start of the oldest open transaction. A stamp
  taken inside a transaction is never older than that transaction's start (PostgreSQL's `now()`
  is the start itself; MySQL, SQL Server and Oracle stamp at statement time, later still), and a
  transaction that has not written yet counts too, since it can still stamp rows with its start.
  MySQL/MariaDB, SQL Server and Oracle: what is running and what has written, remembered from
  look to look (horizon_writers); SQL Server and Oracle only on request (UNTESTED).
* id mode: the largest id that was visible at some earlier moment P, once every transaction
  open at P has ended. An id below that maximum that was still invisible at P belonged to one
  of those transactions; when they have all ended it is visible or gone for good.

The transaction lists need a privilege on most databases (`ACCESS` below); without it the
poller falls back to the settle delay and says so at start, and `poller check` names the grant.
So it does on a replica, whose lists miss the primary's transactions (replica.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from poller.source.horizon_writers import (
    MYSQL_SCOPE,
    WRITERS,
    WriterTracker,
    own_sessions,
    statement_params,
    writers_sql,
)
from poller.source.replica import replica_reason

log = logging.getLogger(__name__)

# Each statement's text is fixed (no value is ever interpolated). "oldest" returns the oldest
# open transaction's start and the database's clock as (start, local now, UTC now) where the
# start is in the server's local time, else (start as UTC, None, None); "open" returns one
# identity per open write transaction.
_OLDEST = {
    # xact_start of other users' sessions is NULL without pg_read_all_stats. Autovacuum and
    # WAL senders cannot write rows. A session can only write to its own database.
    "postgresql": (
        "SELECT min(xact_start) AS oldest, NULL AS local_now, NULL AS utc_now "
        "FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
        "AND backend_type NOT IN ('autovacuum worker', 'walsender')"
    ),
    # MySQL/MariaDB, SQL Server and Oracle stamp at statement time: see horizon_writers.
}
_OPEN = {
    # backend_xid (the top-level xid of a transaction that has written) is shown to every user.
    "postgresql": (
        "SELECT backend_xid::text AS ident FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_xid IS NOT NULL "
        "AND pid <> pg_backend_pid() "
        "UNION ALL SELECT transaction::text FROM pg_prepared_xacts "
        "WHERE database = current_database()"
    ),
    # trx_id alone may be reused by a read-only transaction; with the thread and start time a
    # reused identity can only make the poller wait one poll longer, never less. Transactions
    # that have not written still count (a MariaDB sequence's NEXTVAL hands out an id without
    # writing); only sessions in the polled database (or none) do (horizon_writers). The LIMIT
    # reads PROCESSLIST once (a derived table), not once per transaction.
    "mysql": (
        "SELECT CONCAT(t.trx_id, '/', t.trx_mysql_thread_id, '/', t.trx_started) AS ident "  # noqa: S608 - constants only
        "FROM information_schema.innodb_trx t "
        "LEFT JOIN (SELECT ID, DB FROM information_schema.PROCESSLIST "
        "LIMIT 18446744073709551615) p ON p.ID = t.trx_mysql_thread_id "
        "WHERE t.trx_mysql_thread_id <> CONNECTION_ID() AND t.trx_is_read_only = 0 "
        f"AND {MYSQL_SCOPE}"
    ),
    # Transactions that have touched this database (not the instance's others).
    "mssql": (
        "SELECT CAST(s.transaction_id AS VARCHAR(30)) AS ident "
        "FROM sys.dm_tran_session_transactions s "
        "JOIN sys.dm_tran_database_transactions d ON d.transaction_id = s.transaction_id "
        "WHERE s.session_id <> @@SPID AND d.database_id = DB_ID()"
    ),
    # gv$: the transactions of every RAC instance.
    "oracle": (
        "SELECT t.inst_id || '.' || t.xidusn || '.' || t.xidslot || '.' || t.xidsqn AS ident "
        "FROM gv$transaction t"
    ),
}
# Dialects whose horizon is not tested against a live server here: opt-in (source.horizon).
UNTESTED = frozenset({"mssql", "oracle"})
# What is needed to see other sessions' transactions, per dialect and cursor mode.
_PRIVILEGE_SQL = {
    "postgresql": "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')",
}
ACCESS = {
    "postgresql": "GRANT pg_read_all_stats TO <user> (or pg_monitor)",
    "mysql": "GRANT PROCESS ON *.* TO <user>",
    "mssql": "GRANT VIEW SERVER STATE TO <login> (SQL Server 2022: VIEW SERVER PERFORMANCE STATE)",
    "oracle": "GRANT SELECT ON gv_$transaction and gv_$session TO <user> (or SELECT_CATALOG_ROLE)",
}
# How far the start times can lag the truth: whole-second DATETIME columns (MySQL, Oracle), 1/300 s
# ticks (SQL Server), and MySQL's innodb_trx cache, refreshed at most every 0.1 s.
_SLACK = {
    "postgresql": dt.timedelta(0),
    "mysql": dt.timedelta(seconds=1),
    "mssql": dt.timedelta(milliseconds=10),
    "oracle": dt.timedelta(seconds=1),
}
# A transaction list read this long after a maximum id was read covers every transaction that
# held a smaller id at that moment (MySQL's cached innodb_trx may be 0.1 s old).
_LIST_DELAY = {"mysql": 0.25, "mariadb": 0.25}


def time_horizon(engine: sa.Engine, scope: dict[str, object] | None = None) -> TimeHorizon:
    """The timestamp-mode horizon of one reader of `engine` (scope: scope_params)."""
    return TimeHorizon(engine.dialect.name, own_sessions(engine), scope)


def dialect_key(dialect: str) -> str:
    return "mysql" if dialect == "mariadb" else dialect


def oldest_sql(dialect: str) -> sa.TextClause:
    d = dialect_key(dialect)
    return writers_sql(d) if d in WRITERS else sa.text(_OLDEST[d])


def open_sql(dialect: str) -> sa.TextClause:
    return sa.text(_OPEN[dialect_key(dialect)])


@dataclass
class HorizonAccess:
    """Whether the horizon can be used, per cursor family ("time", "id"), and why not."""

    setting: str | None  # config source.horizon; None: the dialect's default
    dialect: str
    missing: dict[str, str] = field(default_factory=dict)  # family -> what is missing
    probed: bool = False

    def __post_init__(self) -> None:
        if self.setting is None:  # SQL Server/Oracle: not tested live here, so only on request
            self.setting = "settle" if dialect_key(self.dialect) in UNTESTED else "transactions"

    def active(self, family: str) -> bool:
        return self.setting == "transactions" and self.probed and family not in self.missing

    def probe(self, conn: sa.Connection) -> None:
        """Find out, once, whether this database user can see other sessions' transactions."""
        d = dialect_key(self.dialect)
        self.missing.clear()
        if self.setting != "transactions":
            self.probed = True
            return
        if d not in _OLDEST and d not in WRITERS:
            why = f"{self.dialect} does not show other sessions' open transactions"
            self.missing = {"time": why, "id": why}
            self.probed = True
            return
        try:
            replica = replica_reason(conn, d)
        except sa.exc.DBAPIError as exc:
            conn.rollback()
            if exc.connection_invalidated:
                raise
            replica = None
        if replica:
            why = (
                f"this server is a replica: {replica}. Its transaction lists show only its own "
                "sessions, not the primary's; poll the primary for the horizon"
            )
            self.missing = {"time": why, "id": why}
            conn.rollback()
            self.probed = True
            return
        # PostgreSQL: start times need the role; xids do not.
        if d in _PRIVILEGE_SQL and not conn.execute(sa.text(_PRIVILEGE_SQL[d])).scalar():
            self.missing["time"] = f"the start times of transactions need: {ACCESS[d]}"
        for family, stmt in (("time", oldest_sql(d)), ("id", open_sql(d))):
            if family in self.missing:
                continue
            try:
                conn.execute(stmt, statement_params(d, None)).all()
            except sa.exc.DBAPIError as exc:
                conn.rollback()
                if exc.connection_invalidated:
                    raise
                first = str(exc.orig).strip().splitlines()[0][:200] if exc.orig else "denied"
                self.missing[family] = f"{ACCESS.get(d, 'access')} ({first})"
        conn.rollback()
        self.probed = True

    def warnings(self) -> list[str]:
        if self.setting != "transactions":
            return []
        what = {"time": "timestamp modes", "id": "id mode"}
        untested = (
            [
                f"horizon: transactions on {self.dialect} is not tested against a live server "
                "(see docs/horizon-dialects.md); `horizon: settle` is the default there"
            ]
            if dialect_key(self.dialect) in UNTESTED
            else []
        )
        return untested + [
            f"horizon: transactions unavailable for {what[f]}: {why}; falling back to "
            "settle_delay_s"
            for f, why in sorted(self.missing.items())
        ]


def oldest_open_start(conn: sa.Connection, dialect: str) -> dt.datetime | None:
    """The start (aware, UTC, lowered by the list's precision) of the oldest open transaction
    of another session, or None when there is none."""
    d = dialect_key(dialect)
    row = conn.execute(oldest_sql(d)).one()
    oldest, local_now, utc_now = row[0], row[1], row[2]
    if oldest is None:
        return None
    if isinstance(oldest, str):  # MySQL may hand CONVERT_TZ back as text
        oldest = dt.datetime.fromisoformat(oldest)
    if local_now is not None and utc_now is not None:  # server-local start: shift by the age
        oldest = _naive(utc_now) - (_naive(local_now) - _naive(oldest))
    start: dt.datetime = _aware(oldest) - _SLACK.get(d, dt.timedelta(seconds=1))
    return start


def open_transactions(
    conn: sa.Connection, dialect: str, scope: dict[str, object] | None = None
) -> frozenset[str]:
    d = dialect_key(dialect)
    return frozenset(str(r[0]) for r in conn.execute(open_sql(d), statement_params(d, scope)))


def _naive(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"the transaction list returned {type(value).__name__} for a time")
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _aware(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"the transaction list returned {type(value).__name__} for a time")
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass
class _Snapshot:
    max_id: int
    read_at: float  # monotonic seconds
    open_then: frozenset[str] | None = None  # None until a list late enough was read


@dataclass
class IdHorizon:
    """id mode: the largest id that is safe to read, from snapshots (max id, open transactions
    just after) that settle once all their transactions have ended."""

    dialect: str
    bound: int | None = None
    _pending: list[_Snapshot] = field(default_factory=list)

    @property
    def list_delay_s(self) -> float:
        """How long after reading the max id the transaction list must be read."""
        return _LIST_DELAY.get(self.dialect, 0.0)

    def update(
        self, max_id: object, open_now: Iterable[str], now: float, read_at: float | None = None
    ) -> int | None:
        """Record the max id (read at `read_at`, default now) and the transactions open at
        `now`; return the largest id known to be safe."""
        open_set = frozenset(open_now)
        delay = self.list_delay_s
        if isinstance(max_id, int) and not isinstance(max_id, bool):
            newest = self._pending[-1].max_id if self._pending else self.bound
            if newest is None or max_id > newest:
                self._pending.append(_Snapshot(max_id, now if read_at is None else read_at))
        for snap in self._pending:
            if snap.open_then is None and now - snap.read_at >= delay:
                snap.open_then = open_set
        still: list[_Snapshot] = []
        for snap in self._pending:
            if snap.open_then is not None and not (snap.open_then & open_set):
                if self.bound is None or snap.max_id > self.bound:
                    self.bound = snap.max_id
            else:
                still.append(snap)
        self._pending = [s for s in still if self.bound is None or s.max_id > self.bound]
        return self.bound

    def waiting_s(self, now: float) -> float:
        """How long the oldest id not yet safe has been waiting."""
        return max(0.0, now - self._pending[0].read_at) if self._pending else 0.0


@dataclass
class TimeHorizon:
    """Timestamp modes, one per reader: the start (aware UTC, lowered by the list's precision)
    of the oldest stamp an open transaction may still commit, or None."""

    dialect: str
    own: set[str] = field(default_factory=set)  # the poller's own read-only sessions
    scope: dict[str, object] | None = None  # MySQL: which sessions may write the table
    _writers: WriterTracker | None = None

    def __post_init__(self) -> None:
        d = dialect_key(self.dialect)
        if d in WRITERS:
            self._writers = WriterTracker(d)

    def oldest(self, conn: sa.Connection, now_utc: dt.datetime) -> dt.datetime | None:
        if self._writers is None:
            return oldest_open_start(conn, self.dialect)
        oldest = self._writers.oldest(conn, _naive(now_utc), self.own, self.scope)
        if oldest is None:
            return None
        return _aware(oldest) - _SLACK.get(dialect_key(self.dialect), dt.timedelta(seconds=1))
