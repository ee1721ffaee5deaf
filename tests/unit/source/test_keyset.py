"""The keyset range API (source/keyset.py) as SQL Server and Oracle get it (golden SQL and bind
types: these dialects cannot run here), and as verify, repair and backfill use it; the backfill
`--where` rules (source/where.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import oracledb
import pyodbc
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, oracle

from poller.batch import BEGINNING, Position
from poller.config import EntityConfig, SourceConfig
from poller.errors import ConfigError
from poller.kafka.backfill_state import BackfillState
from poller.pipeline.backfill import BackfillQuery
from poller.source.exact import CursorType
from poller.source.keyset import ColumnBind, Keyset
from poller.source.probe import _mssql_char
from poller.source.query import EntityQuery
from poller.source.where import normalize_where
from poller.verify.source_side import VerifySource

MSSQL = mssql.pyodbc.dialect()  # type: ignore[no-untyped-call]
ORACLE = oracle.oracledb.dialect()  # type: ignore[no-untyped-call]
T0 = dt.datetime(2024, 5, 1, 10, 0, 0, 123456)

LINES = EntityConfig(
    table="receipt_lines",
    fields={"order_id": "receipt_id"},
    key=["receipt_id", "line_no"],
    batching={"mode": "timestamp", "column": "updated_at"},
    batch_size=100,
)
SKU = EntityConfig(
    table="skus",
    fields={"order_id": "sku"},
    key="sku",
    batching={"mode": "timestamp+id", "column": "updated_at", "id_column": "sku"},
    batch_size=100,
)


def flat(sql: object) -> str:
    return " ".join(str(sql).split())


def text(stmt: Any, dialect: Any, params: dict[str, object]) -> tuple[str, dict[str, Any]]:
    state = stmt.compile(dialect=dialect).construct_expanded_state(params)
    return flat(state.statement), dict(state.parameters)


# ----------------------------------------------------------------------------- item 9


def lines_source(tmp_path: Path, dialect: Any) -> VerifySource:
    """A VerifySource on a real SQLite table whose statements are built for `dialect`: their
    shape (expanded forms) is the dialect's, and SQLite runs them, so the rows they select are
    checked too."""
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'v.sqlite'}")
    with eng.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE receipt_lines (receipt_id INTEGER, line_no INTEGER, tenant_id TEXT, "
            "updated_at TEXT, PRIMARY KEY (receipt_id, line_no))"
        )
        conn.exec_driver_sql(
            "INSERT INTO receipt_lines WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 "
            "FROM g WHERE n < 2500) SELECT n / 3, n % 3, 'acme', '2024-01-01' FROM g"
        )
    source = SourceConfig(url="sqlite://", tenant_column="tenant_id")
    q = EntityQuery(LINES, source, "acme", ["order_id"], dialect)
    return VerifySource(eng, q, LINES, source, Position("2024-06-01", (1, 1)))


@pytest.mark.parametrize("dialect", [MSSQL, ORACLE], ids=["mssql", "oracle"])
def test_verify_pages_and_lookups_use_no_row_values_on_sql_server_and_oracle(
    tmp_path: Path, dialect: Any
) -> None:
    """SQL Server has no row values, Oracle none for `>`: `(a, b) > (?, ?)` and
    `(a, b) IN ((?, ?), ...)` are refused there. The expanded forms select the same rows."""
    source = lines_source(tmp_path, dialect)
    page = flat(source._next.compile(dialect=dialect))
    assert "(receipt_lines.receipt_id, receipt_lines.line_no) >" not in page
    assert (
        "receipt_lines.receipt_id >= :pk_cursor AND (receipt_lines.receipt_id > :pk_cursor OR "
        "receipt_lines.receipt_id = :pk_cursor AND receipt_lines.line_no > :pk_key)"
    ) in page
    source.rows_by_keys([(1, 1), (2, 0)])  # fills the look-up statements
    lookup = flat(source._by_keys[2].compile(dialect=dialect))
    assert "(receipt_lines.receipt_id, receipt_lines.line_no) IN" not in lookup
    assert (
        "(receipt_lines.receipt_id = :k0_0 AND receipt_lines.line_no = :k0_1 OR "
        "receipt_lines.receipt_id = :k1_0 AND receipt_lines.line_no = :k1_1)"
    ) in lookup


@pytest.mark.parametrize(
    ("dialect", "statements_wanted"), [(MSSQL, 13), (ORACLE, 13), (None, 3)],
    ids=["mssql", "oracle", "sqlite"],
)  # fmt: skip
def test_verify_pages_and_lookups_read_every_row_in_chunks(
    tmp_path: Path, dialect: Any, statements_wanted: int
) -> None:
    """2,500 composite keys: looked up in statements under the dialect's limits, every row
    found; the pages (keyset after the last key) walk the same rows in key order."""
    source = lines_source(tmp_path, dialect or sa.create_engine("sqlite://").dialect)
    keys = [(n // 3, n % 3) for n in range(1, 2501)]
    statements: list[str] = []
    sa.event.listen(source.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = source.rows_by_keys(keys)
    assert sorted(source.key(r) for r in rows) == sorted(keys)
    assert len(statements) == statements_wanted
    paged = [source.key(r) for page in source.pages() for r in page]
    assert paged == sorted(keys)


@pytest.mark.parametrize(
    ("dialect", "columns", "limit"),
    [
        ("oracle", 1, 1000),
        ("oracle", 2, 200),
        ("mssql", 1, 1000),
        ("mssql", 3, 200),
        ("mssql", 12, 174),
        ("postgresql", 2, 1000),
    ],
)
def test_lookups_stay_under_oracle_in_list_and_sql_server_parameter_limits(
    dialect: str, columns: int, limit: int
) -> None:
    cols = tuple(sa.column(f"c{i}") for i in range(columns))
    ks = Keyset(dialect, cols, CursorType(), not_null=False)
    n = ks.max_keys_per_statement(other_params=10)
    assert n == limit
    assert n <= 1000
    assert n * columns + 10 <= 2100 or dialect != "mssql"


# ----------------------------------------------------------------------------- item 14


def sku_query(dialect: Any, binds: dict[str, ColumnBind]) -> EntityQuery:
    q = EntityQuery(SKU, SourceConfig(url="sqlite://"), "acme", ["order_id"], dialect)
    q.set_cursor_type(CursorType("datetime", False, "DATETIME2(7)"))
    q.set_column_binds(binds, "char")
    return q


def test_sql_server_varchar_keys_are_bound_as_varchar_not_nvarchar() -> None:
    """pyodbc sends a str as NVARCHAR; under a SQL_* collation `varchar_col > N'..'` does not
    follow ORDER BY's order (hyphens, apostrophes), so rows are skipped at batch boundaries.
    The key is bound with the column's own type: CAST in the SQL (the live reader runs on the
    driver's cursor) and SQL_VARCHAR for setinputsizes (SQLAlchemy executions)."""
    assert _mssql_char(sa.VARCHAR(40), MSSQL) == "VARCHAR(40)"
    collated = mssql.VARCHAR(40, collation="SQL_Latin1_General_CP1_CI_AS")  # as reflected
    assert _mssql_char(collated, MSSQL) == "VARCHAR(40)"
    assert _mssql_char(mssql.CHAR(12), MSSQL) == "CHAR(12)"
    assert _mssql_char(sa.NVARCHAR(40), MSSQL) is None
    assert _mssql_char(sa.Integer(), MSSQL) is None
    q = sku_query(MSSQL, {"sku": ColumnBind(sa.VARCHAR(40), "VARCHAR(40)")})
    stmt, params = q.batch(Position("2024-05-01T10:00:00.1234567", "AB-1"), T0)
    sql, values = text(stmt, MSSQL, params)
    assert (
        "WHERE skus.updated_at >= CAST(:wm_cursor AS DATETIME2(7)) AND (skus.updated_at > "
        "CAST(:wm_cursor AS DATETIME2(7)) OR skus.updated_at = CAST(:wm_cursor AS DATETIME2(7)) "
        "AND skus.sku > CAST(:wm_key AS VARCHAR(40))) AND skus.updated_at < "
        "CAST(:upper AS DATETIME2(7))"
    ) in sql
    assert values["wm_key"] == "AB-1"
    compiled = stmt.compile(dialect=MSSQL)
    bind_type = compiled.binds["wm_key"].type.dialect_impl(MSSQL)
    assert bind_type.get_dbapi_type(pyodbc) == pyodbc.SQL_VARCHAR


def test_unicode_and_unprobed_keys_stay_untyped() -> None:
    """NVARCHAR keys (and `query:` columns, which are not reflected) keep the plain
    parameter: the golden SQL of the live path does not change for them."""
    q = sku_query(MSSQL, {"sku": ColumnBind(sa.NVARCHAR(40), None)})
    stmt, params = q.batch(Position("2024-05-01T10:00:00.1234567", "AB-1"), T0)
    assert "skus.sku > :wm_key)" in text(stmt, MSSQL, params)[0]


# ----------------------------------------------------------------------------- item 13


def tenant_sql(dialect: Any, exact: str | None) -> str:
    q = EntityQuery(
        SKU, SourceConfig(url="sqlite://", tenant_column="tenant_id"), "acme", ["order_id"], dialect
    )
    q.set_column_binds({}, exact)
    stmt, params = q.batch(BEGINNING, None)
    return text(stmt, dialect, params)[0]


def test_tenant_exact_form_only_for_character_columns_and_pad_aware_for_char_n() -> None:
    """A uuid (or integer) tenant column has one value per spelling the database parses:
    comparing its text byte for byte matched 0 rows for a tenant written in upper case. A
    CHAR(n) column is padded by SQL Server/Oracle: trailing spaces are cut on both sides."""
    assert "WHERE skus.tenant_id = :tenant AND skus.updated_at IS NOT NULL" in tenant_sql(
        MSSQL, None
    )
    assert (
        "CAST(CAST(RTRIM(skus.tenant_id) AS NVARCHAR(4000)) AS VARBINARY(8000)) = "
        "CAST(CAST(RTRIM(:tenant) AS NVARCHAR(4000)) AS VARBINARY(8000))"
    ) in tenant_sql(MSSQL, "fixed")
    assert (
        "NLSSORT(RTRIM(skus.tenant_id), 'NLS_SORT=BINARY') = NLSSORT(RTRIM(:tenant), "
        "'NLS_SORT=BINARY')"
    ) in tenant_sql(ORACLE, "fixed")


def test_oracle_char_n_tenant_is_bound_as_char_so_the_indexed_equality_pads() -> None:
    """Oracle compares a CHAR(n) column with a VARCHAR2 bind (python-oracledb's default for a
    str) without blank padding: `tenant_id = :tenant` matched none of 'acme      '. The tenant
    is bound as CHAR (NCHAR for NCHAR(n)) through setinputsizes; other dialects and other
    columns keep a plain string bind."""
    engine = sa.create_engine("oracle+oracledb://u:p@127.0.0.1:1/x")  # never connects
    sizes = {}
    for exact in ("char", "fixed", "nfixed", None):
        q = EntityQuery(
            SKU, SourceConfig(url="sqlite://", tenant_column="tenant_id"), "acme", ["order_id"],
            engine.dialect,
        )  # fmt: skip
        q.set_column_binds({}, exact)
        stmt, _params = q.batch(BEGINNING, None)
        compiled: Any = stmt.compile(dialect=engine.dialect)
        found = {b.key: t for b, t in compiled._get_set_input_sizes_lookup().items()}
        sizes[exact] = found.get("tenant")
    assert sizes["fixed"] is oracledb.DB_TYPE_CHAR
    assert sizes["nfixed"] is oracledb.DB_TYPE_NCHAR
    assert sizes["char"] is None and sizes[None] is None  # VARCHAR2 binds, as before
    # SQL Server pads with `=` whatever the bind; a CHAR bind there would drop Unicode.
    assert "skus.tenant_id = :tenant" in tenant_sql(MSSQL, "nfixed")


# ----------------------------------------------------------------------------- item 11


def backfill_state(by: str, low: object, high: object, where: str | None = None) -> BackfillState:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return BackfillState("acme", "orders", by, low, high, where, BEGINNING, 0, False, now, now)  # type: ignore[arg-type]


def test_backfill_binds_its_range_exactly_on_sql_server_like_the_live_batch() -> None:
    """The backfill's bounds and position go through the same keyset as the live batch: the
    datetime2(7) cursor travels as text converted to the column's type, not truncated."""
    q = sku_query(MSSQL, {"sku": ColumnBind(sa.VARCHAR(40), "VARCHAR(40)")})
    bq = BackfillQuery(q, SKU, backfill_state("cursor", T0, T0 + dt.timedelta(days=1)))
    stmt, params = bq.statement(Position("2024-05-01T10:00:00.1234567", "AB-1"))
    sql, values = text(stmt, MSSQL, params)
    assert "skus.updated_at >= CAST(:low AS DATETIME2(7))" in sql
    assert "skus.updated_at <= CAST(:upper AS DATETIME2(7))" in sql
    assert "skus.sku > CAST(:wm_key AS VARCHAR(40))" in sql
    assert values["low"] == "2024-05-01T10:00:00.123456"
    by_key = BackfillQuery(q, SKU, backfill_state("key", "A", "B"))
    stmt, params = by_key.statement(Position(None, "AB-1"))
    sql, values = text(stmt, MSSQL, params)
    assert (
        "skus.sku > CAST(:pk_cursor AS VARCHAR(40)) AND skus.sku >= CAST(:low AS VARCHAR(40)) "
        "AND skus.sku <= CAST(:upper AS VARCHAR(40)) ORDER BY skus.sku"
    ) in sql
    assert (values["pk_cursor"], values["low"], values["upper"]) == ("AB-1", "A", "B")


# ----------------------------------------------------------------------------- item 12

HOSTILE = [
    "1=1) OR (1=1",
    "(1=1)) OR ((1=1",
    "f_name = 'x' -- ",
    "f_name = 'x' /* ) OR (1=1 */",
    "1=1 /*",
    "1=1; DELETE FROM people",
    "1=1 UNION SELECT 1",
    "id IN (SELECT id FROM people)",
    "EXISTS (SELECT 1 FROM people WHERE user_id = 'globex')",
    "",
]


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mssql", "oracle", "sqlite"])
@pytest.mark.parametrize("condition", HOSTILE)
def test_hostile_conditions_are_refused(dialect: str, condition: str) -> None:
    with pytest.raises(ConfigError, match="--where"):
        normalize_where(condition, dialect)


def test_a_condition_is_rendered_by_the_parser_and_wrapped_as_one_term() -> None:
    """What the database gets is the parser's rendering: a MySQL backslash escape that could
    close the string on the server is re-quoted as the parser read it."""
    assert normalize_where("status IN ('a','b') and amount > 10", "postgresql") == (
        "status IN ('a', 'b') AND amount > 10"
    )
    assert normalize_where("f_name = 'a\\' ) OR (1=1 '", "mysql") == ("f_name = 'a'' ) OR (1=1 '")
    with pytest.raises(ConfigError):  # standard strings: the backslash is a character
        normalize_where("f_name = 'a\\' ) OR (1=1 '", "postgresql")
    q = EntityQuery(SKU, SourceConfig(url="sqlite://"), "acme", ["order_id"], MSSQL)
    bq = BackfillQuery(q, SKU, backfill_state("cursor", T0, T0, "a = 1 OR b = 2"))
    stmt, params = bq.statement(BEGINNING)
    sql = text(stmt, MSSQL, params)[0]
    assert "skus.updated_at <= :upper AND (a = 1 OR b = 2) ORDER BY" in sql
