"""Exact cursors and keys per dialect (golden SQL and bound values for SQL Server and Oracle,
which cannot run here), the transaction horizon's statements and id bookkeeping, the run loop's
guards, and watermarks that keep every key type."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from sqlalchemy.dialects import mssql, oracle

from poller.avro.schemas import SCHEMAS_DIR
from poller.batch import Batch, Position
from poller.config import EntityConfig, SourceConfig, parse_config
from poller.errors import ConfigError, NoProgressError
from poller.kafka import watermark
from poller.kafka.watermark import Watermark, check_forward
from poller.pipeline.guards import ensure_progress, fit_start, stored_mismatches
from poller.source.engine import ORACLE_SET_ZONE
from poller.source.exact import CursorType
from poller.source.horizon import ACCESS, HorizonAccess, IdHorizon, oldest_sql, open_sql
from poller.source.query import EntityQuery

ENTITY = EntityConfig(
    table="cheques",
    fields={"order_id": "id"},
    key="id",
    batching={"mode": "timestamp", "column": "updated_at"},
    batch_size=500,
)
T0 = dt.datetime(2024, 5, 1, 10, 0, 0, 123456)


def compiled(q: EntityQuery, position: Position, upper: object) -> tuple[str, dict[str, Any]]:
    stmt, params = q.batch(position, upper)
    c = stmt.compile(dialect=q.dialect)
    state = c.construct_expanded_state(params)
    return " ".join(state.statement.split()), dict(state.parameters)


def text_query(dialect: Any, ctype: CursorType) -> EntityQuery:
    q = EntityQuery(ENTITY, SourceConfig(url="sqlite://"), "acme", ["order_id"], dialect)
    q.set_cursor_type(ctype)
    return q


def test_sql_server_datetime2_cursor_is_text_bound_back_through_its_own_type() -> None:
    """pyodbc reads datetime2(7) as microseconds and binds datetimes at the driver's
    precision: the cursor is selected as ISO text (all 7 digits) and bound back through
    CAST(? AS DATETIME2(7)), so a stored watermark equals the column's value exactly."""
    q = text_query(mssql.pyodbc.dialect(), CursorType("datetime", False, "DATETIME2(7)"))  # type: ignore[no-untyped-call]
    sql, params = compiled(q, Position("2024-05-01T10:00:00.1234567", 7), T0)
    assert sql == (
        "SELECT TOP 500 cheques.id AS order_id, CONVERT(VARCHAR(40), cheques.updated_at, 126) "
        "AS _wm_cursor, cheques.id AS _wm_key FROM cheques WHERE cheques.updated_at >= "
        "CAST(:wm_cursor AS DATETIME2(7)) AND (cheques.updated_at > CAST(:wm_cursor AS "
        "DATETIME2(7)) OR cheques.updated_at = CAST(:wm_cursor AS DATETIME2(7)) AND cheques.id "
        "> :wm_key) AND cheques.updated_at < CAST(:upper AS DATETIME2(7)) ORDER BY "
        "cheques.updated_at, cheques.id"
    )
    # the stored text travels unchanged; a datetime (start value, upper bound) becomes text
    assert params == {
        "wm_cursor": "2024-05-01T10:00:00.1234567",
        "wm_key": 7,
        "upper": "2024-05-01T10:00:00.123456",
    }
    assert all(isinstance(v, str) for k, v in params.items() if k != "wm_key")


def test_sql_server_datetime_and_datetimeoffset_cursors() -> None:
    # datetime (1/300 s ticks) is compared as datetime, never as datetime2 (which differs)
    q = text_query(mssql.pyodbc.dialect(), CursorType("datetime", False, "DATETIME"))  # type: ignore[no-untyped-call]
    sql, _ = compiled(q, Position("2024-05-01T10:00:00.997", None), None)
    assert "cheques.updated_at > CAST(:wm_cursor AS DATETIME)" in sql
    q = text_query(mssql.pyodbc.dialect(), CursorType("datetime", True, "DATETIMEOFFSET(7)"))  # type: ignore[no-untyped-call]
    sql, params = compiled(q, Position(None, None), T0.replace(tzinfo=dt.UTC))
    assert "CONVERT(VARCHAR(40), cheques.updated_at, 127) AS _wm_cursor" in sql
    assert "cheques.updated_at < CAST(:upper AS DATETIMEOFFSET(7))" in sql
    assert params["upper"] == "2024-05-01T10:00:00.123456Z"


def test_oracle_timestamp9_cursor_is_text_bound_back_with_to_timestamp() -> None:
    """python-oracledb binds a datetime as DATE (no fraction): the cursor is selected with all
    9 digits and bound back with TO_TIMESTAMP of that text."""
    q = text_query(oracle.oracledb.dialect(), CursorType("datetime", False, "TIMESTAMP(9)"))  # type: ignore[no-untyped-call]
    sql, params = compiled(q, Position("2024-05-01 10:00:00.123456789", 7), T0)
    ts = "TO_TIMESTAMP(:{}, 'YYYY-MM-DD HH24:MI:SS.FF9')"
    c, u = ts.format("wm_cursor"), ts.format("upper")
    assert sql == (
        "SELECT cheques.id AS order_id, TO_CHAR(CAST(cheques.updated_at AS TIMESTAMP(9)), "  # noqa: S608
        '\'YYYY-MM-DD HH24:MI:SS.FF9\') AS "_wm_cursor", cheques.id AS "_wm_key" FROM cheques '
        f"WHERE cheques.updated_at >= {c} AND (cheques.updated_at > {c} OR "
        f"cheques.updated_at = {c} AND cheques.id > :wm_key) AND cheques.updated_at < {u} "
        "ORDER BY cheques.updated_at, cheques.id FETCH FIRST 500 ROWS ONLY"
    )
    assert params == {
        "wm_cursor": "2024-05-01 10:00:00.123456789",
        "wm_key": 7,
        "upper": "2024-05-01 10:00:00.123456000",
    }


def test_oracle_zone_aware_cursor_compares_instants() -> None:
    q = text_query(oracle.oracledb.dialect(), CursorType("datetime", True, "TIMESTAMP_TZ"))  # type: ignore[no-untyped-call]
    moscow = T0.replace(tzinfo=zoneinfo.ZoneInfo("Europe/Moscow"))
    sql, params = compiled(q, Position(None, None), moscow)
    assert "TO_CHAR(SYS_EXTRACT_UTC(cheques.updated_at)" in sql
    assert (
        "cheques.updated_at < FROM_TZ(TO_TIMESTAMP(:upper, 'YYYY-MM-DD HH24:MI:SS.FF9'), 'UTC')"
        in sql
    )
    assert params["upper"] == "2024-05-01 07:00:00.123456000"


def test_oracle_session_time_zone_is_bound_not_interpolated() -> None:
    assert ORACLE_SET_ZONE == (
        "BEGIN EXECUTE IMMEDIATE 'ALTER SESSION SET TIME_ZONE = ' || "
        "DBMS_ASSERT.ENQUOTE_LITERAL(:zone); END;"
    )


# --- the horizon's statements ---------------------------------------------------------------


def test_horizon_statements_per_dialect() -> None:
    # SQL Server and Oracle: tests/unit/source/test_horizon_dialects.py
    assert "information_schema.innodb_trx" in oldest_sql("mariadb").text.lower()
    assert "pg_stat_activity" in oldest_sql("postgresql").text
    assert "pg_prepared_xacts" in open_sql("postgresql").text
    assert "VIEW SERVER STATE" in ACCESS["mssql"] and "gv_$transaction" in ACCESS["oracle"]


def test_sqlite_has_no_horizon() -> None:
    access = HorizonAccess("transactions", "sqlite")
    access.probe(None)  # type: ignore[arg-type]  # no statement is run for SQLite
    assert not access.active("time") and not access.active("id")
    assert access.warnings()[0].startswith("horizon: transactions unavailable for id mode")
    assert HorizonAccess("settle", "postgresql").warnings() == []


def test_id_horizon_waits_for_the_transactions_open_after_the_max_was_read() -> None:
    h = IdHorizon("postgresql")
    assert h.update(10, [], 0.0) == 10  # nothing open: the max is safe at once
    assert h.update(12, ["t1"], 1.0) == 10  # t1 may hold an id below 12
    assert h.waiting_s(3.0) == 2.0
    assert h.update(15, ["t1", "t2"], 2.0) == 10
    assert h.update(15, ["t2"], 3.0) == 12  # t1 ended: 12 is safe, 15 waits for t2 too
    assert h.update(16, ["t3"], 4.0) == 15  # t1, t2 ended; t3 began after 15 was read
    assert h.update(16, [], 5.0) == 16
    assert h.waiting_s(6.0) == 0.0


def test_id_horizon_mysql_settles_on_a_list_read_after_the_max() -> None:
    """MySQL's list is read only once shown fresh (innodb_cache), so it settles a max at once
    when it was read after it; a transaction it shows keeps the max pending."""
    h = IdHorizon("mysql")
    assert h.list_delay_s == 0
    assert h.update(10, ["t9"], 0.1, read_at=0.0) is None  # t9 may hold an id below 10
    assert h.update(12, ["t9"], 0.3, read_at=0.2) is None
    assert h.update(12, [], 0.4) == 12


# --- guards -----------------------------------------------------------------------------------


def test_a_full_batch_that_does_not_advance_is_terminal() -> None:
    start = Position(T0, 2)
    rows: list[Any] = [("a", T0, 1), ("b", T0, 2)]
    with pytest.raises(NoProgressError, match=r"entity 'receipts': a full batch of 2 rows"):
        ensure_progress("receipts", start, Batch(rows, Position(T0, 2), None), 2)
    with pytest.raises(NoProgressError, match="a batch of 2 rows"):
        ensure_progress("receipts", start, Batch(rows, Position(T0, 2), None), 10)
    with pytest.raises(NoProgressError):  # a NULL cursor never becomes a position
        ensure_progress("receipts", start, Batch(rows, Position(None, 3), None), 2)
    ensure_progress("receipts", start, Batch(rows, Position(T0, 3), None), 2)
    ensure_progress("receipts", start, Batch([], None, None), 2)
    assert NoProgressError("x").exit_code == 8


def _cfg(mode: str, column: str) -> Any:
    return parse_config(
        {
            "tenant": "acme",
            "source": {"url": "sqlite://"},
            "kafka": {"format": "single_object"},
            "entities": {
                "customers": {
                    "table": "people",
                    "key": "id",
                    "fields": {"local_id": "id"},
                    "batching": {"mode": mode, "column": column},
                }
            },
        }
    )


def _wm(mode: str, cursor: object, columns: list[str] | None) -> dict[str, Watermark]:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    wm = Watermark("acme", "customers", mode, Position(cursor, 1), 5, now, columns=columns)
    return {"customers": wm}


def test_a_stored_watermark_must_fit_the_config() -> None:
    stored_mismatches(_cfg("id", "id"), _wm("id", 42, ["id", "id"]), "p.yaml")
    stored_mismatches(_cfg("id", "id"), _wm("id", 42, None), "p.yaml")  # older records
    for cfg, wm in [
        (_cfg("timestamp", "updated_at"), _wm("id", 42, ["id", "id"])),
        (_cfg("id", "seq"), _wm("id", 42, ["id", "id"])),
        (_cfg("timestamp", "updated_at"), _wm("timestamp", 42, None)),  # an id as cursor
    ]:
        with pytest.raises(ConfigError, match=r"poller watermarks reset --config p\.yaml"):
            stored_mismatches(cfg, wm, "p.yaml")


def test_naive_start_on_a_zone_aware_column_is_read_in_the_source_zone() -> None:
    aware = CursorType("datetime", True)
    naive = dt.datetime(2024, 10, 27, 2, 30)
    fitted = fit_start(naive, aware, "Europe/Berlin")
    assert fitted == naive.replace(tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
    check_forward(Position(fitted, None), Position(fitted + dt.timedelta(seconds=1), 1), "t")
    # naive against aware is never compared (it would raise TypeError)
    check_forward(Position(naive, None), Position(fitted, 1), "t")
    assert fit_start(naive, CursorType("datetime", False), "UTC") is naive


# --- watermarks and message keys -------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        uuid.UUID("0b6c5f8e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"),
        b"\x00\xff" + bytes(14),
        Decimal("12.500"),
        "k 1 ",
        (uuid.UUID(int=5), 3),
        (b"\x01", Decimal("1.0"), "x"),
    ],
)
def test_watermark_keeps_every_key_type(key: object) -> None:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cols = ["updated_at", "k"]
    wm = Watermark("acme", "receipt_lines", "timestamp", Position(T0, key), 9, now, columns=cols)
    back = watermark.decode(watermark.encode(wm))
    assert back.position == wm.position and type(back.position.key) is type(key)
    assert back.columns == cols


def test_watermark_written_before_the_exact_position_still_reads() -> None:
    raw = json.loads((SCHEMAS_DIR / "watermark.avsc").read_text())
    first = {**raw, "fields": raw["fields"][:7]}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(first), {
        "tenant": "acme", "entity": "customers", "mode": "id",
        "cursor": {"kind": "int", "text": "42"}, "key": {"kind": "int", "text": "42"},
        "rows_total": 3, "updated_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    })  # fmt: skip
    wm = watermark.decode(buf.getvalue())
    assert wm.position == Position(42, 42) and wm.columns is None


def test_composite_and_binary_message_keys() -> None:
    from poller.avro.schemas import load_schema
    from poller.pipeline.stream import EntityStream

    ent = EntityConfig(
        table="lines",
        fields={"local_id": "id", "receipt_id": "receipt_id", "quantity": "q", "amount": "a"},
        key=["receipt_id", "line_no"],
        batching={"mode": "timestamp", "column": "updated_at"},
    )
    s = EntityStream("receipt_lines", ent, load_schema("receipt_lines"), "t", "acme", dt.UTC,
                     Position())  # fmt: skip
    assert s.json_key((1042, 3)) == b'["acme",1042,3]'
    assert s.json_key((memoryview(b"\x00\xff"), "a")) == b'["acme","00ff","a"]'
    assert s.json_key(uuid.UUID(int=1)) == b'["acme","00000000-0000-0000-0000-000000000001"]'
    assert ent.key_columns == ["receipt_id", "line_no"] and ent.key_is_tiebreak


def test_key_lists_and_settle_defaults_in_the_config() -> None:
    with pytest.raises(ValueError, match="distinct"):
        EntityConfig(table="t", fields={}, key=["a", "a"],
                     batching={"mode": "id", "column": "a"})  # fmt: skip
    with pytest.raises(ValueError, match="plain identifier"):
        EntityConfig(table="t", fields={}, key=["a", "b; drop"],
                     batching={"mode": "id", "column": "a"})  # fmt: skip
    assert ENTITY.settle_s(True) == 1.0 and ENTITY.settle_s(False) == 30.0
    assert ENTITY.model_copy(update={"settle_delay_s": 0}).settle_s(False) == 0
    assert SourceConfig(url="sqlite://").horizon is None  # the dialect's default


def test_id_horizon_needs_no_list_while_nothing_new_was_committed() -> None:
    """A list is read only for a max newer than any seen or one still waiting: an idle poller
    spares the server (MySQL: each INNODB_TRX read keeps its cache stale for others)."""
    h = IdHorizon("postgresql")
    assert h.needs_list(None) is False  # an empty table
    assert h.needs_list(10) is True
    assert h.update(10, ["t1"], 1.0) is None
    assert h.needs_list(10) is True  # 10 still waits for t1
    assert h.update(10, [], 2.0) == 10
    assert h.needs_list(10) is False and h.needs_list(9) is False
    assert h.needs_list(11) is True
