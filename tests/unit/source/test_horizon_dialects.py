"""The horizon on SQL Server and Oracle (golden SQL: no live server here) and the writer
tracker's bookkeeping on every statement-time dialect (issue 16, items 3, 5, 6)."""

from __future__ import annotations

import datetime as dt

import pytest

from poller.config import SourceConfig
from poller.source.horizon import HorizonAccess, oldest_sql, open_sql
from poller.source.horizon_writers import WriterTracker, scope_params
from poller.source.replica import MSSQL_UPDATEABILITY, ORACLE_ROLE, replica_reason

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# --- golden SQL -------------------------------------------------------------------------------


def test_sql_server_lists_this_database_and_running_requests() -> None:
    assert oldest_sql("mssql").text == (
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
    )
    assert open_sql("mssql").text == (
        "SELECT CAST(s.transaction_id AS VARCHAR(30)) AS ident "
        "FROM sys.dm_tran_session_transactions s "
        "JOIN sys.dm_tran_database_transactions d ON d.transaction_id = s.transaction_id "
        "WHERE s.session_id <> @@SPID AND d.database_id = DB_ID()"
    )


def test_oracle_lists_every_rac_instance_and_active_sessions() -> None:
    assert oldest_sql("oracle").text == (
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
    )
    assert open_sql("oracle").text == (
        "SELECT t.inst_id || '.' || t.xidusn || '.' || t.xidslot || '.' || t.xidsqn AS ident "
        "FROM gv$transaction t"
    )
    assert "v$transaction" not in oldest_sql("oracle").text.replace("gv$", "")


def test_mysql_lists_running_statements_and_written_transactions_of_this_database() -> None:
    text = oldest_sql("mariadb").text
    assert "information_schema.PROCESSLIST p" in text
    scope = (
        "(:scope_all = 1 OR DATABASE() IS NULL AND :scope_db IS NULL OR p.DB IS NULL "
        "OR p.DB = COALESCE(:scope_db, DATABASE()))"
    )
    assert scope in text
    assert "t.trx_rows_modified > 0" in text
    assert "CONVERT_TZ(TIMESTAMPADD(HOUR, -1, t.trx_started), 'SYSTEM', '+00:00')" in text
    assert scope in open_sql("mysql").text


# --- opt-in on SQL Server and Oracle -----------------------------------------------------------


@pytest.mark.parametrize("dialect", ["mssql", "oracle"])
def test_untested_dialects_default_to_settle_and_warn_when_opted_in(dialect: str) -> None:
    default = HorizonAccess(SourceConfig(url=f"{dialect}://u:p@h/db").horizon, dialect)
    assert default.setting == "settle"
    default.probe(None)  # type: ignore[arg-type]  # nothing is run for settle
    assert not default.active("time") and default.warnings() == []
    opted = HorizonAccess("transactions", dialect)
    assert opted.setting == "transactions"
    assert any("not tested against a live server" in w for w in opted.warnings())


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mariadb"])
def test_live_tested_dialects_default_to_transactions(dialect: str) -> None:
    access = HorizonAccess(None, dialect)
    assert access.setting == "transactions"
    assert access.warnings() == []


# --- the tracker -------------------------------------------------------------------------------


def r(
    session: str, tx: str | None, running: dt.datetime | None, wrote: dt.datetime | None
) -> tuple[object, ...]:
    """A row of the MySQL list (UTC times)."""
    return (session, tx, running, wrote, None, None)


def test_a_session_keeps_the_earliest_start_it_was_seen_running() -> None:
    """A writer seen waiting since 0 s is registered by the list at 5 s: its stamp (0 s) holds
    the bound until it is gone, not its listing time."""
    tr = WriterTracker("mysql")
    assert tr.observe([r("7", None, s(0), None)], s(3)) == s(0)
    assert tr.observe([r("7", "T5", None, s(5))], s(6)) == s(0)
    assert tr.observe([r("7", "T5", None, s(5))], s(9)) == s(0)  # same transaction
    assert tr.observe([], s(10)) == s(0)  # gone from one look: the list is a cache
    assert tr.observe([], s(10.1)) == s(0)  # not yet 0.25 s later
    assert tr.observe([], s(10.3)) is None


def test_a_transaction_that_was_open_while_its_statement_waited_keeps_that_start() -> None:
    """BEGIN; SELECT (listed, not written); INSERT waits behind a lock from 1 s; writes at 5 s
    (MariaDB gives it a new trx_id then: the transaction is told apart by its start)."""
    tr = WriterTracker("mysql")
    assert tr.observe([r("7", "T0", s(1), None)], s(3)) == s(1)
    assert tr.observe([r("7", "T0", None, s(0))], s(6)) == s(0)


def test_a_session_new_since_the_last_look_counts_from_that_look() -> None:
    """A write queued and done between two looks: it ran nothing at the previous look, so all
    it stamped started after it."""
    tr = WriterTracker("mysql")
    assert tr.observe([], s(0)) is None
    oldest = tr.observe([r("9", "T8", None, s(8))], s(10))
    assert oldest == s(0) - dt.timedelta(seconds=0.1)


def test_a_busy_session_does_not_freeze_the_bound() -> None:
    """A connection that is always running a new statement or transaction: each look carries
    the old start at most once."""
    tr = WriterTracker("mysql")
    tr.observe([r("3", "T0", s(0), None)], s(0.5))
    oldest = None
    for i in range(1, 20):
        oldest = tr.observe([r("3", f"T{i}", s(i), None)], s(i + 0.5))
    assert oldest is not None and oldest >= s(17), oldest
    tr2 = WriterTracker("mysql")
    for i in range(20):  # autocommit statements seen running outside any listed transaction
        oldest = tr2.observe([r("4", None, s(i), None)], s(i + 0.5))
    assert oldest is not None and oldest >= s(16), oldest


def test_at_the_first_look_the_lists_own_times_count() -> None:
    tr = WriterTracker("mysql")
    rows = [r("1", "A", s(4), s(2)), r("2", "B", None, s(3))]
    assert tr.observe(rows, s(5)) == s(2)


def test_local_times_are_converted_with_the_offset_only_once_it_has_held() -> None:
    """SQL Server/Oracle list local times. Across the DST fall-back a start read with today's
    offset is an hour late; until the tracker has seen the offset hold for the largest DST shift
    before the start, it takes the earliest instant the local time may denote."""
    tr = WriterTracker("mssql")
    plus2 = dt.timedelta(hours=2)
    local_start = s(0) + plus2  # server at UTC+2
    row = ("51", "x1", None, local_start, s(10) + plus2, s(10))
    assert tr.observe([row], s(10)) == s(0) - dt.timedelta(hours=2)  # offset just seen
    later = s(3 * 3600)
    row2 = ("52", "x2", None, later - dt.timedelta(seconds=5) + plus2, later + plus2, later)
    oldest = tr.observe([row, row2], later)
    assert oldest == s(0) - dt.timedelta(hours=2)  # 51 keeps its conservative start
    tr2 = WriterTracker("oracle")
    tr2.observe([("x", None, None, None, s(0) + plus2, s(0))], s(0))  # the offset only
    tr2.observe([("x", None, None, None, later - dt.timedelta(seconds=1) + plus2, later)], later)
    fresh = ("y", "t", None, later - dt.timedelta(seconds=5) + plus2, later + plus2, later)
    assert tr2.observe([fresh], later) == later - dt.timedelta(seconds=5)


def test_fall_back_never_makes_a_start_later() -> None:
    """Berlin, 2026-10-25: 02:50 CEST (00:50 UTC) starts, read at 02:10 CET (01:10 UTC)."""
    tr = WriterTracker("mssql")
    local_start = dt.datetime(2026, 10, 25, 2, 50)
    local_now, utc_now = dt.datetime(2026, 10, 25, 2, 10), dt.datetime(2026, 10, 25, 1, 10)
    oldest = tr.observe([("5", "t", None, local_start, local_now, utc_now)], utc_now)
    assert oldest is not None and oldest <= dt.datetime(2026, 10, 25, 0, 50)


# --- replicas -------------------------------------------------------------------------------


class _Conn:
    """Answers the replica checks' statements from a table (no live server here)."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.seen: list[str] = []
        self.value: object = None

    def execute(self, stmt: object) -> _Conn:
        self.seen.append(str(stmt))
        self.value = self.answers[str(stmt)]
        return self

    def scalar(self) -> object:
        return self.value


@pytest.mark.parametrize(
    ("dialect", "stmt", "value", "replica"),
    [
        ("mssql", MSSQL_UPDATEABILITY, "READ_ONLY", True),
        ("mssql", MSSQL_UPDATEABILITY, "READ_WRITE", False),
        ("oracle", ORACLE_ROLE, "PHYSICAL STANDBY", True),
        ("oracle", ORACLE_ROLE, "PRIMARY", False),
    ],
)
def test_sql_server_and_oracle_replicas_are_recognised(
    dialect: str, stmt: str, value: str, replica: bool
) -> None:
    conn = _Conn({stmt: value})
    reason = replica_reason(conn, dialect)  # type: ignore[arg-type]
    assert (reason is not None) is replica, reason
    assert conn.seen == [stmt]
    assert (
        stmt
        == {
            "mssql": "SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Updateability') AS VARCHAR(20))",
            "oracle": "SELECT database_role FROM v$database",
        }[dialect]
    )


def test_mysql_scope_of_an_entity() -> None:
    assert scope_params("orders") == {"scope_all": 0, "scope_db": None}  # the connection's
    assert scope_params("shop.orders") == {"scope_all": 0, "scope_db": "shop"}
    assert scope_params(None) == {"scope_all": 1, "scope_db": None}  # `query:`: every session
