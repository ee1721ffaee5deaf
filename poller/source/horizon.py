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
Where the database can say whether a list is complete (PostgreSQL: the role, and not a hot
standby), that is asked again after every list read, so a grant revoked while running turns the
horizon off at the next batch instead of silently reading past transactions it cannot see.
docs/horizon.md describes all of it for operators.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
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
from poller.source.innodb_cache import FRESH, OWN, fresh_rows
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
    # Every open transaction of this database, written or not: `nextval()` assigns no xid, so
    # a transaction that took an id and inserts it later has no backend_xid until then. The
    # identity is the session and its transaction's start (xact_start needs pg_read_all_stats
    # for other users' sessions); prepared transactions outlive their session.
    "postgresql": (
        "SELECT pid::text || '/' || xact_start::text AS ident FROM pg_stat_activity "
        "WHERE datname = current_database() AND xact_start IS NOT NULL "
        "AND pid <> pg_backend_pid() "
        "AND backend_type NOT IN ('autovacuum worker', 'walsender') "
        "UNION ALL SELECT 'prepared/' || transaction::text || '/' || prepared::text "
        "FROM pg_prepared_xacts WHERE database = current_database()"
    ),
    # A transaction is its session and start time, not its trx_id: InnoDB gives a transaction
    # that starts writing a new trx_id, and a max read while it had only read must still wait
    # for it. Two transactions of one session begun in the same second look like one, which
    # can only make the poller wait longer, never less. Transactions
    # that have not written still count (a MariaDB sequence's NEXTVAL hands out an id without
    # writing); only sessions in the polled database (or none) do (horizon_writers). The LIMIT
    # reads PROCESSLIST once (a derived table), not once per transaction.
    # The reader's own transaction comes back as OWN: the proof that the cached list is fresh
    # (innodb_cache).
    "mysql": (
        f"SELECT CASE WHEN t.trx_mysql_thread_id = CONNECTION_ID() THEN '{OWN}' "  # noqa: S608 - constants only
        "ELSE CONCAT(t.trx_mysql_thread_id, '/', t.trx_started) END AS ident, "
        f"CASE WHEN {FRESH} THEN t.trx_started END AS seen "
        "FROM information_schema.innodb_trx t "
        "LEFT JOIN (SELECT ID, DB FROM information_schema.PROCESSLIST "
        "LIMIT 18446744073709551615) p ON p.ID = t.trx_mysql_thread_id "
        "WHERE t.trx_mysql_thread_id = CONNECTION_ID() OR t.trx_is_read_only = 0 "
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
# Whether the lists above are complete, asked at start and after every list read (a list read
# before a positive answer was read with the privilege): a revoked role hides other users'
# sessions silently, and a hot standby lists only its own sessions, not the primary's writers.
_BLIND_SQL = {
    "postgresql": (
        "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS stats, "
        "pg_is_in_recovery() AS standby"
    ),
}
# Dialects whose horizon is not tested against a live server here: opt-in (source.horizon).
UNTESTED = frozenset({"mssql", "oracle"})
# Who the oldest open transaction is, for the messages that say what holds the bound back
# (never its query text: that can carry customers' values).
_WHO = {
    "postgresql": (
        "SELECT 'pid ' || pid || ', user ' || coalesce(usename, '?') || ', application '"
        " || quote_literal(coalesce(application_name, '')) || ', ' || coalesce(state, '?') "
        "FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
        "AND backend_type NOT IN ('autovacuum worker', 'walsender') "
        "ORDER BY xact_start LIMIT 1"
    ),
}
STANDBY = (
    "this server is a hot standby (pg_is_in_recovery()): its transaction list shows only its "
    "own sessions, not the primary's writers; poll the primary to use the horizon"
)
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
# held a smaller id at that moment. None now: MySQL's cached innodb_trx is read only when it
# shows a transaction begun after the maximum (innodb_cache).
_LIST_DELAY: dict[str, float] = {}


def time_horizon(engine: sa.Engine, scope: dict[str, object] | None = None) -> TimeHorizon:
    """The timestamp-mode horizon of one reader of `engine` (scope: scope_params)."""
    return TimeHorizon(engine.dialect.name, own_sessions(engine), scope)


def dialect_key(dialect: str) -> str:
    return "mysql" if dialect == "mariadb" else dialect


def has_lists(dialect: str) -> bool:
    """Whether the horizon knows this dialect's transaction lists."""
    d = dialect_key(dialect)
    return d in _OLDEST or d in WRITERS


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

    # Why the lists went blind while running (privilege revoked, server became a standby);
    # cleared when a later check finds them complete again.
    lost: str | None = None

    def __post_init__(self) -> None:
        if self.setting is None:  # SQL Server/Oracle: not tested live here, so only on request
            self.setting = "settle" if dialect_key(self.dialect) in UNTESTED else "transactions"

    def active(self, family: str) -> bool:
        return (
            self.setting == "transactions"
            and self.probed
            and family not in self.missing
            and self.lost is None
        )

    def went_blind(self, why: str) -> None:
        """A list just read is incomplete: fall back to the settle delay until it is not."""
        if self.lost is None:
            log.warning(
                "horizon: the transaction list went blind: %s; falling back to settle_delay_s "
                "(poller_horizon_active = 0) until it is complete again",
                why,
            )
        self.lost = why

    def recheck(self, conn: sa.Connection) -> None:
        """While blind: back to the horizon once the lists are complete again."""
        if self.lost is not None and blind_reason(conn, self.dialect) is None:
            log.warning("horizon: the transaction list is complete again (was: %s)", self.lost)
            self.lost = None

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
        # PostgreSQL: both lists need the role (start times, and transactions without an xid).
        blind = blind_reason(conn, d)
        if blind is not None:
            self.missing = {"time": blind, "id": blind}
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

    def warnings(self, families: Iterable[str] | None = None) -> list[str]:
        """What is missing, for the cursor families in use (default: both)."""
        if self.setting != "transactions":
            return []
        used = {"time", "id"} if families is None else set(families)
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
            if f in used
        ]


def oldest_who(conn: sa.Connection, dialect: str) -> str:
    """Who holds the oldest open transaction ("" where the dialect does not say)."""
    sql = _WHO.get(dialect_key(dialect))
    if sql is None:
        return ""
    return str(conn.execute(sa.text(sql)).scalar() or "")


def blind_reason(conn: sa.Connection, dialect: str) -> str | None:
    """Why this connection's transaction lists are incomplete now, or None when they are not
    (or the dialect has no such check)."""
    d = dialect_key(dialect)
    sql = _BLIND_SQL.get(d)
    if sql is None:
        return None
    stats, standby = conn.execute(sa.text(sql)).one()
    if standby:
        return STANDBY
    if not stats:
        return f"other sessions' transactions are hidden without: {ACCESS[d]}"
    return None


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
    """The identities of the open transactions that may hold ids. MySQL: from a list shown
    fresh after this call began (StaleList if it cannot be)."""
    d = dialect_key(dialect)
    params = statement_params(d, scope)
    if d == "mysql":
        return frozenset(str(r[0]) for r in fresh_rows(conn, open_sql(d), params))
    return frozenset(str(r[0]) for r in conn.execute(open_sql(d), params))


def _naive(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"the transaction list returned {type(value).__name__} for a time")
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _aware(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"the transaction list returned {type(value).__name__} for a time")
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


Id = int | Decimal


def as_id(value: object) -> Id | None:
    """An id the horizon can order: int, or Decimal (NUMERIC/DECIMAL columns, e.g. SQL Server's
    NUMERIC(18,0) IDENTITY); None for NULL (an empty table)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal) and (not isinstance(value, Decimal) or value.is_finite()):
        return value
    raise TypeError(
        f"an id column returned {type(value).__name__} {value!r}; id mode needs integers"
    )


@dataclass
class _Snapshot:
    max_id: Id
    read_at: float  # monotonic seconds
    open_then: frozenset[str] | None = None  # None until a list late enough was read


@dataclass
class IdHorizon:
    """id mode: the largest id that is safe to read, from snapshots (max id, open transactions
    just after) that settle once all their transactions have ended."""

    dialect: str
    bound: Id | None = None
    # Monotonic time up to which every committed id is at or below the bound: the read time of
    # the snapshot that set it, or of a later read that found no newer id.
    safe_at: float | None = None
    _pending: list[_Snapshot] = field(default_factory=list)

    @property
    def list_delay_s(self) -> float:
        """How long after reading the max id the transaction list must be read."""
        return _LIST_DELAY.get(self.dialect, 0.0)

    def _record(self, max_id: object, read_at: float) -> None:
        value = as_id(max_id)
        if value is None:
            self.safe_at = read_at if self.bound is None and not self._pending else self.safe_at
            return
        newest = self._pending[-1].max_id if self._pending else self.bound
        if newest is None or value > newest:
            self._pending.append(_Snapshot(value, read_at))
        elif not self._pending:  # nothing newer than the bound: still safe now
            self.safe_at = read_at

    def _settle(self, snap: _Snapshot) -> None:
        if self.bound is None or snap.max_id >= self.bound:
            self.bound = snap.max_id
            self.safe_at = max(self.safe_at or snap.read_at, snap.read_at)

    def update(
        self, max_id: object, open_now: Iterable[str], now: float, read_at: float | None = None
    ) -> Id | None:
        """Record the max id (read at `read_at`, default now) and the transactions open at
        `now`; return the largest id known to be safe."""
        open_set = frozenset(open_now)
        delay = self.list_delay_s
        self._record(max_id, now if read_at is None else read_at)
        for snap in self._pending:
            if snap.open_then is None and now - snap.read_at >= delay:
                snap.open_then = open_set
        still: list[_Snapshot] = []
        for snap in self._pending:
            if snap.open_then is not None and not (snap.open_then & open_set):
                self._settle(snap)
            else:
                still.append(snap)
        self._pending = [s for s in still if self.bound is None or s.max_id > self.bound]
        return self.bound

    def update_settled(self, max_id: object, now: float, settle_s: float) -> Id | None:
        """Without the transaction lists: an id is safe once it has been the maximum for
        `settle_s` seconds (the settle delay, as in timestamp modes)."""
        self._record(max_id, now)
        still: list[_Snapshot] = []
        for snap in self._pending:
            if now - snap.read_at >= settle_s:
                self._settle(snap)
            else:
                still.append(snap)
        self._pending = [s for s in still if self.bound is None or s.max_id > self.bound]
        return self.bound

    def needs_list(self, max_id: object) -> bool:
        """Whether a list must be read with this max: an id newer than any seen, or a max
        still waiting for its transactions. Otherwise the bound stands without one (every
        id at or below it was handed out before it settled), which spares the server a read
        (MySQL: every INNODB_TRX read keeps its cache stale for other readers 0.1 s longer)."""
        value = as_id(max_id)
        newest = self._pending[-1].max_id if self._pending else self.bound
        return bool(self._pending) or (value is not None and (newest is None or value > newest))

    def waiting_s(self, now: float) -> float:
        """How long the oldest id not yet safe has been waiting."""
        return max(0.0, now - self._pending[0].read_at) if self._pending else 0.0

    def held_by(self) -> frozenset[str]:
        """The open transactions the oldest pending id waits for (empty: none known)."""
        return (self._pending[0].open_then or frozenset()) if self._pending else frozenset()


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
