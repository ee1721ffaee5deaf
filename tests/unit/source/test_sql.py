"""The SQL each dialect gets, written out in full, and the drivers behind them.

Statements are compared as whole strings (whitespace normalised) so any change in the FROM,
the keyset clause, quoting, ordering or LIMIT shows up here first.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, oracle, postgresql, sqlite
from sqlalchemy.engine import Dialect

from poller.batch import BEGINNING, Position
from poller.config import EntityConfig, SourceConfig
from poller.errors import PrivilegeError, SchemaMismatchError, SourceError
from poller.source.query import AnySelect, EntityQuery, column_kind, fits
from poller.source.reader import SourceReader, make_engine, translate_error

DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql.psycopg2.dialect(),  # type: ignore[no-untyped-call]
    "mysql": mysql.pymysql.dialect(),
    "sqlite": sqlite.pysqlite.dialect(),
    "mssql": mssql.pyodbc.dialect(),  # type: ignore[no-untyped-call]
    "oracle": oracle.oracledb.dialect(),  # type: ignore[no-untyped-call]
}

TS_ENTITY = EntityConfig(
    table="sales.orders",
    fields={"order_id": "id", "customer": "CustName", "total": "amount * 100"},
    key="id",
    batching={"mode": "timestamp+id", "column": "updated_at", "id_column": "id"},
    batch_size=500,
)
ID_ENTITY = EntityConfig(
    table="orders",
    fields={"order_id": "id", "status": "status"},
    key="id",
    batching={"mode": "id", "column": "id"},
    batch_size=1000,
)
QUERY = (
    "SELECT o.id, o.updated_at, o.tenant_id, c.name AS cname FROM orders o "
    "JOIN customers c ON c.id = o.customer_id WHERE o.status <> 'draft' AND o.note <> 'a:b'"
)
QUERY_ENTITY = EntityConfig(
    query=QUERY,
    fields={"order_id": "id", "customer": "cname"},
    key="id",
    batching={"mode": "timestamp", "column": "updated_at"},
    batch_size=200,
)
COMPOSITE_ENTITY = EntityConfig(
    table="receipt_lines",
    fields={"order_id": "receipt_id"},
    key=["receipt_id", "line_no"],
    batching={"mode": "timestamp", "column": "updated_at"},
    batch_size=100,
)
TENANT_SOURCE = SourceConfig(url="sqlite://", tenant_column="tenant_id")
PLAIN_SOURCE = SourceConfig(url="sqlite://")
FIELDS = ["order_id", "customer", "total", "missing"]
T0 = dt.datetime(2024, 5, 1)
T1 = dt.datetime(2024, 6, 1)
EVIL = "acme' OR '1'='1"

EXPECTED: dict[str, dict[str, str]] = {
    # timestamp+id, schema-qualified table, tenant column (indexable = and exact form), full
    # keyset, exclusive upper bound
    "ts_keyset_upper": {
        "postgresql": (
            'SELECT sales.orders.id AS order_id, sales.orders."CustName" AS customer, amount * 100 '
            "AS total, NULL AS missing, sales.orders.updated_at AS _wm_cursor, sales.orders.id AS "
            "_wm_key FROM sales.orders WHERE sales.orders.tenant_id = %(tenant)s AND "
            'CAST(sales.orders.tenant_id AS TEXT) COLLATE "C" = CAST(%(tenant)s AS TEXT) COLLATE '
            '"C" AND sales.orders.updated_at >= %(wm_cursor)s AND (sales.orders.updated_at, '
            "sales.orders.id) > (%(wm_cursor)s, %(wm_key)s) AND sales.orders.updated_at < %(upper)s"
            " ORDER BY sales.orders.updated_at, sales.orders.id LIMIT %(param_1)s"
        ),
        "mysql": (
            "SELECT sales.orders.id AS order_id, sales.orders.`CustName` AS customer, amount * 100 "
            "AS total, NULL AS missing, sales.orders.updated_at AS _wm_cursor, sales.orders.id AS "
            "_wm_key FROM sales.orders WHERE sales.orders.tenant_id = %s AND "
            "CAST(CONVERT(sales.orders.tenant_id USING utf8mb4) AS BINARY) = CAST(CONVERT(%s USING "
            "utf8mb4) AS BINARY) AND sales.orders.updated_at >= %s AND (sales.orders.updated_at, "
            "sales.orders.id) > (%s, %s) AND sales.orders.updated_at < %s ORDER BY "
            "sales.orders.updated_at, sales.orders.id LIMIT %s"
        ),
        "sqlite": (
            'SELECT sales.orders.id AS order_id, sales.orders."CustName" AS customer, amount * 100 '
            "AS total, NULL AS missing, sales.orders.updated_at AS _wm_cursor, sales.orders.id AS "
            "_wm_key FROM sales.orders WHERE sales.orders.tenant_id = ? AND "
            "CAST(sales.orders.tenant_id AS BLOB) = CAST(? AS BLOB) AND sales.orders.updated_at >= "
            "? AND (sales.orders.updated_at, sales.orders.id) > (?, ?) AND sales.orders.updated_at "
            "< ? ORDER BY sales.orders.updated_at, sales.orders.id LIMIT ? OFFSET ?"
        ),
        "mssql": (
            "SELECT TOP __[POSTCOMPILE_param_1] sales.orders.id AS order_id, "
            "sales.orders.[CustName] AS customer, amount * 100 AS total, NULL AS missing, "
            "sales.orders.updated_at AS _wm_cursor, sales.orders.id AS _wm_key FROM sales.orders "
            "WHERE sales.orders.tenant_id = :tenant AND CAST(CAST(sales.orders.tenant_id AS "
            "NVARCHAR(4000)) AS VARBINARY(8000)) = CAST(CAST(:tenant AS NVARCHAR(4000)) AS "
            "VARBINARY(8000)) AND sales.orders.updated_at >= :wm_cursor AND "
            "(sales.orders.updated_at > :wm_cursor OR sales.orders.updated_at = :wm_cursor AND "
            "sales.orders.id > :wm_key) AND sales.orders.updated_at < :upper ORDER BY "
            "sales.orders.updated_at, sales.orders.id"
        ),
        "oracle": (
            'SELECT sales.orders.id AS order_id, sales.orders."CustName" AS customer, amount * 100 '
            'AS total, NULL AS missing, sales.orders.updated_at AS "_wm_cursor", sales.orders.id AS'
            ' "_wm_key" FROM sales.orders WHERE sales.orders.tenant_id = :tenant AND '
            "NLSSORT(sales.orders.tenant_id, 'NLS_SORT=BINARY') = NLSSORT(:tenant, "
            "'NLS_SORT=BINARY') AND sales.orders.updated_at >= :wm_cursor AND "
            "(sales.orders.updated_at > :wm_cursor OR sales.orders.updated_at = :wm_cursor AND "
            "sales.orders.id > :wm_key) AND sales.orders.updated_at < :upper ORDER BY "
            "sales.orders.updated_at, sales.orders.id FETCH FIRST __[POSTCOMPILE_param_1] ROWS ONLY"
        ),
    },
    # id mode on the key (the cursor is the tie-breaker), no tenant column
    "id_cursor": {
        "postgresql": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            "orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders WHERE orders.id > "
            "%(wm_cursor)s ORDER BY orders.id LIMIT %(param_1)s"
        ),
        "mysql": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            "orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders WHERE orders.id > %s ORDER "
            "BY orders.id LIMIT %s"
        ),
        "sqlite": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            "orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders WHERE orders.id > ? ORDER BY"
            " orders.id LIMIT ? OFFSET ?"
        ),
        "mssql": (
            "SELECT TOP __[POSTCOMPILE_param_1] orders.id AS order_id, NULL AS customer, NULL AS "
            "total, NULL AS missing, orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders "
            "WHERE orders.id > :wm_cursor ORDER BY orders.id"
        ),
        "oracle": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            'orders.id AS "_wm_cursor", orders.id AS "_wm_key" FROM orders WHERE orders.id > '
            ":wm_cursor ORDER BY orders.id FETCH FIRST __[POSTCOMPILE_param_1] ROWS ONLY"
        ),
    },
    # timestamp mode over a `query:` with its own JOIN and WHERE, tenant column, keyset
    "query_keyset": {
        "postgresql": (
            "SELECT src.id AS order_id, src.cname AS customer, NULL AS total, NULL AS missing, "
            "src.updated_at AS _wm_cursor, src.id AS _wm_key FROM (SELECT o.id, o.updated_at, "
            "o.tenant_id, c.name AS cname FROM orders o JOIN customers c ON c.id = o.customer_id "
            "WHERE o.status <> 'draft' AND o.note <> 'a:b') AS src WHERE src.tenant_id = %(tenant)s"
            ' AND CAST(src.tenant_id AS TEXT) COLLATE "C" = CAST(%(tenant)s AS TEXT) COLLATE "C" '
            "AND src.updated_at >= %(wm_cursor)s AND (src.updated_at, src.id) > (%(wm_cursor)s, "
            "%(wm_key)s) ORDER BY src.updated_at, src.id LIMIT %(param_1)s"
        ),
        "mysql": (
            "SELECT src.id AS order_id, src.cname AS customer, NULL AS total, NULL AS missing, "
            "src.updated_at AS _wm_cursor, src.id AS _wm_key FROM (SELECT o.id, o.updated_at, "
            "o.tenant_id, c.name AS cname FROM orders o JOIN customers c ON c.id = o.customer_id "
            "WHERE o.status <> 'draft' AND o.note <> 'a:b') AS src WHERE src.tenant_id = %s AND "
            "CAST(CONVERT(src.tenant_id USING utf8mb4) AS BINARY) = CAST(CONVERT(%s USING utf8mb4) "
            "AS BINARY) AND src.updated_at >= %s AND (src.updated_at, src.id) > (%s, %s) ORDER BY "
            "src.updated_at, src.id LIMIT %s"
        ),
        "sqlite": (
            "SELECT src.id AS order_id, src.cname AS customer, NULL AS total, NULL AS missing, "
            "src.updated_at AS _wm_cursor, src.id AS _wm_key FROM (SELECT o.id, o.updated_at, "
            "o.tenant_id, c.name AS cname FROM orders o JOIN customers c ON c.id = o.customer_id "
            "WHERE o.status <> 'draft' AND o.note <> 'a:b') AS src WHERE src.tenant_id = ? AND "
            "CAST(src.tenant_id AS BLOB) = CAST(? AS BLOB) AND src.updated_at >= ? AND "
            "(src.updated_at, src.id) > (?, ?) ORDER BY src.updated_at, src.id LIMIT ? OFFSET ?"
        ),
        "mssql": (
            "SELECT TOP __[POSTCOMPILE_param_1] src.id AS order_id, src.cname AS customer, NULL AS "
            "total, NULL AS missing, src.updated_at AS _wm_cursor, src.id AS _wm_key FROM (SELECT "
            "o.id, o.updated_at, o.tenant_id, c.name AS cname FROM orders o JOIN customers c ON "
            "c.id = o.customer_id WHERE o.status <> 'draft' AND o.note <> 'a:b') AS src WHERE "
            "src.tenant_id = :tenant AND CAST(CAST(src.tenant_id AS NVARCHAR(4000)) AS "
            "VARBINARY(8000)) = CAST(CAST(:tenant AS NVARCHAR(4000)) AS VARBINARY(8000)) AND "
            "src.updated_at >= :wm_cursor AND (src.updated_at > :wm_cursor OR src.updated_at = "
            ":wm_cursor AND src.id > :wm_key) ORDER BY src.updated_at, src.id"
        ),
        "oracle": (
            "SELECT src.id AS order_id, src.cname AS customer, NULL AS total, NULL AS missing, "
            'src.updated_at AS "_wm_cursor", src.id AS "_wm_key" FROM (SELECT o.id, o.updated_at, '
            "o.tenant_id, c.name AS cname FROM orders o JOIN customers c ON c.id = o.customer_id "
            "WHERE o.status <> 'draft' AND o.note <> 'a:b') src WHERE src.tenant_id = :tenant AND "
            "NLSSORT(src.tenant_id, 'NLS_SORT=BINARY') = NLSSORT(:tenant, 'NLS_SORT=BINARY') AND "
            "src.updated_at >= :wm_cursor AND (src.updated_at > :wm_cursor OR src.updated_at = "
            ":wm_cursor AND src.id > :wm_key) ORDER BY src.updated_at, src.id FETCH FIRST "
            "__[POSTCOMPILE_param_1] ROWS ONLY"
        ),
    },
    # a composite key (receipt_id, line_no) as the tie-breaker: row values or nested ORs
    "composite_keyset": {
        "postgresql": (
            "SELECT receipt_lines.receipt_id AS order_id, NULL AS customer, NULL AS total, NULL AS "
            "missing, receipt_lines.updated_at AS _wm_cursor, receipt_lines.receipt_id AS _wm_key, "
            "receipt_lines.line_no AS _wm_key1 FROM receipt_lines WHERE receipt_lines.tenant_id = "
            '%(tenant)s AND CAST(receipt_lines.tenant_id AS TEXT) COLLATE "C" = CAST(%(tenant)s AS '
            'TEXT) COLLATE "C" AND receipt_lines.updated_at >= %(wm_cursor)s AND '
            "(receipt_lines.updated_at, receipt_lines.receipt_id, receipt_lines.line_no) > "
            "(%(wm_cursor)s, %(wm_key)s, %(wm_key1)s) AND receipt_lines.updated_at < %(upper)s "
            "ORDER BY receipt_lines.updated_at, receipt_lines.receipt_id, receipt_lines.line_no "
            "LIMIT %(param_1)s"
        ),
        "mysql": (
            "SELECT receipt_lines.receipt_id AS order_id, NULL AS customer, NULL AS total, NULL AS "
            "missing, receipt_lines.updated_at AS _wm_cursor, receipt_lines.receipt_id AS _wm_key, "
            "receipt_lines.line_no AS _wm_key1 FROM receipt_lines WHERE receipt_lines.tenant_id = "
            "%s AND CAST(CONVERT(receipt_lines.tenant_id USING utf8mb4) AS BINARY) = "
            "CAST(CONVERT(%s USING utf8mb4) AS BINARY) AND receipt_lines.updated_at >= %s AND "
            "(receipt_lines.updated_at, receipt_lines.receipt_id, receipt_lines.line_no) > (%s, %s,"
            " %s) AND receipt_lines.updated_at < %s ORDER BY receipt_lines.updated_at, "
            "receipt_lines.receipt_id, receipt_lines.line_no LIMIT %s"
        ),
        "sqlite": (
            "SELECT receipt_lines.receipt_id AS order_id, NULL AS customer, NULL AS total, NULL AS "
            "missing, receipt_lines.updated_at AS _wm_cursor, receipt_lines.receipt_id AS _wm_key, "
            "receipt_lines.line_no AS _wm_key1 FROM receipt_lines WHERE receipt_lines.tenant_id = ?"
            " AND CAST(receipt_lines.tenant_id AS BLOB) = CAST(? AS BLOB) AND "
            "receipt_lines.updated_at >= ? AND (receipt_lines.updated_at, receipt_lines.receipt_id,"
            " receipt_lines.line_no) > (?, ?, ?) AND receipt_lines.updated_at < ? ORDER BY "
            "receipt_lines.updated_at, receipt_lines.receipt_id, receipt_lines.line_no LIMIT ? "
            "OFFSET ?"
        ),
        "mssql": (
            "SELECT TOP __[POSTCOMPILE_param_1] receipt_lines.receipt_id AS order_id, NULL AS "
            "customer, NULL AS total, NULL AS missing, receipt_lines.updated_at AS _wm_cursor, "
            "receipt_lines.receipt_id AS _wm_key, receipt_lines.line_no AS _wm_key1 FROM "
            "receipt_lines WHERE receipt_lines.tenant_id = :tenant AND "
            "CAST(CAST(receipt_lines.tenant_id AS NVARCHAR(4000)) AS VARBINARY(8000)) = "
            "CAST(CAST(:tenant AS NVARCHAR(4000)) AS VARBINARY(8000)) AND receipt_lines.updated_at "
            ">= :wm_cursor AND (receipt_lines.updated_at > :wm_cursor OR receipt_lines.updated_at ="
            " :wm_cursor AND (receipt_lines.receipt_id > :wm_key OR receipt_lines.receipt_id = "
            ":wm_key AND receipt_lines.line_no > :wm_key1)) AND receipt_lines.updated_at < :upper "
            "ORDER BY receipt_lines.updated_at, receipt_lines.receipt_id, receipt_lines.line_no"
        ),
        "oracle": (
            "SELECT receipt_lines.receipt_id AS order_id, NULL AS customer, NULL AS total, NULL AS "
            'missing, receipt_lines.updated_at AS "_wm_cursor", receipt_lines.receipt_id AS '
            '"_wm_key", receipt_lines.line_no AS "_wm_key1" FROM receipt_lines WHERE '
            "receipt_lines.tenant_id = :tenant AND NLSSORT(receipt_lines.tenant_id, "
            "'NLS_SORT=BINARY') = NLSSORT(:tenant, 'NLS_SORT=BINARY') AND receipt_lines.updated_at "
            ">= :wm_cursor AND (receipt_lines.updated_at > :wm_cursor OR receipt_lines.updated_at ="
            " :wm_cursor AND (receipt_lines.receipt_id > :wm_key OR receipt_lines.receipt_id = "
            ":wm_key AND receipt_lines.line_no > :wm_key1)) AND receipt_lines.updated_at < :upper "
            "ORDER BY receipt_lines.updated_at, receipt_lines.receipt_id, receipt_lines.line_no "
            "FETCH FIRST __[POSTCOMPILE_param_1] ROWS ONLY"
        ),
    },
    # the first batch: a NULL cursor is never selected (it would become the position)
    "id_from_beginning": {
        "postgresql": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            "orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders WHERE orders.id IS NOT NULL "
            "ORDER BY orders.id LIMIT %(param_1)s"
        ),
        "mysql": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            "orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders WHERE orders.id IS NOT NULL "
            "ORDER BY orders.id LIMIT %s"
        ),
        "sqlite": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            "orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders WHERE orders.id IS NOT NULL "
            "ORDER BY orders.id LIMIT ? OFFSET ?"
        ),
        "mssql": (
            "SELECT TOP __[POSTCOMPILE_param_1] orders.id AS order_id, NULL AS customer, NULL AS "
            "total, NULL AS missing, orders.id AS _wm_cursor, orders.id AS _wm_key FROM orders "
            "WHERE orders.id IS NOT NULL ORDER BY orders.id"
        ),
        "oracle": (
            "SELECT orders.id AS order_id, NULL AS customer, NULL AS total, NULL AS missing, "
            'orders.id AS "_wm_cursor", orders.id AS "_wm_key" FROM orders WHERE orders.id IS NOT '
            "NULL ORDER BY orders.id FETCH FIRST __[POSTCOMPILE_param_1] ROWS ONLY"
        ),
    },
}


CASES: dict[str, tuple[EntityConfig, SourceConfig, Position, object]] = {
    "ts_keyset_upper": (TS_ENTITY, TENANT_SOURCE, Position(T0, 7), T1),
    "id_cursor": (ID_ENTITY, PLAIN_SOURCE, Position(41, 41), None),
    "query_keyset": (QUERY_ENTITY, TENANT_SOURCE, Position(T0, 7), None),
    "composite_keyset": (COMPOSITE_ENTITY, TENANT_SOURCE, Position(T0, (5, 2)), T1),
    "id_from_beginning": (ID_ENTITY, PLAIN_SOURCE, BEGINNING, None),
}


def sql(stmt: AnySelect, dialect: Dialect) -> str:
    return " ".join(str(stmt.compile(dialect=dialect)).split())


def query(
    entity: EntityConfig, source: SourceConfig, dialect: str, tenant: str = "acme"
) -> EntityQuery:
    return EntityQuery(entity, source, tenant, FIELDS, DIALECTS[dialect])


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", EXPECTED)
def test_batch_statement(case: str, dialect: str) -> None:
    entity, source, position, upper = CASES[case]
    stmt, _ = query(entity, source, dialect).batch(position, upper)
    assert sql(stmt, DIALECTS[dialect]) == EXPECTED[case][dialect]


def test_batch_parameters() -> None:
    q = query(TS_ENTITY, TENANT_SOURCE, "postgresql")
    assert q.batch(Position(T0, 7), T1)[1] == {
        "tenant": "acme",
        "wm_cursor": T0,
        "wm_key": 7,
        "upper": T1,
    }
    assert q.batch(Position(), None)[1] == {"tenant": "acme"}
    # id mode: a key equal to the cursor is unused; the horizon's bound is inclusive
    stmt, params = query(ID_ENTITY, PLAIN_SOURCE, "postgresql").batch(Position(41, 41), 90)
    assert params == {"wm_cursor": 41, "upper": 90}
    assert "orders.id <= %(upper)s" in sql(stmt, DIALECTS["postgresql"])
    stmt, params = query(ID_ENTITY, PLAIN_SOURCE, "postgresql").batch(Position(41, 41), None)
    assert params == {"wm_cursor": 41} and "upper" not in sql(stmt, DIALECTS["postgresql"])


def test_from_the_beginning_has_no_keyset_clause() -> None:
    stmt, _ = query(TS_ENTITY, PLAIN_SOURCE, "postgresql").batch(Position(), None)
    assert sql(stmt, DIALECTS["postgresql"]) == (
        'SELECT sales.orders.id AS order_id, sales.orders."CustName" AS customer, amount '
        "* 100 AS total, NULL AS missing, sales.orders.updated_at AS _wm_cursor, "
        "sales.orders.id AS _wm_key FROM sales.orders WHERE sales.orders.updated_at IS NOT NULL "
        "ORDER BY sales.orders.updated_at, sales.orders.id LIMIT %(param_1)s"
    )


@pytest.mark.parametrize(
    ("dialect", "where"),
    [
        ("postgresql", "sales.orders.updated_at > %(wm_cursor)s"),
        ("mssql", "sales.orders.updated_at > :wm_cursor"),
    ],
)
def test_start_value_is_after_the_cursor_value(dialect: str, where: str) -> None:
    stmt, params = query(TS_ENTITY, PLAIN_SOURCE, dialect).batch(Position(T0, None), None)
    assert f" WHERE {where} ORDER BY " in sql(stmt, DIALECTS[dialect])
    assert params == {"wm_cursor": T0}


@pytest.mark.parametrize(
    ("dialect", "now", "max_cursor"),
    [
        ("postgresql", "SELECT statement_timestamp() AS now", "%(tenant)s"),
        ("mysql", "SELECT UTC_TIMESTAMP(6) AS now", "%s"),
        ("sqlite", "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') AS now", "?"),
        ("mssql", "SELECT SYSUTCDATETIME() AS now", ":tenant"),
        ("oracle", "SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP) AS now FROM DUAL", ":tenant"),
    ],
)
def test_now_and_max_cursor(dialect: str, now: str, max_cursor: str) -> None:
    q = query(TS_ENTITY, TENANT_SOURCE, dialect)
    assert sql(q.now(), DIALECTS[dialect]) == now
    expected = "SELECT max(sales.orders.updated_at) AS max_cursor FROM sales.orders WHERE "
    assert sql(q.max_cursor(), DIALECTS[dialect]).startswith(
        expected + f"sales.orders.tenant_id = {max_cursor} AND "
    )


def driver_statement(dialect: str, entity: EntityConfig, position: Position) -> tuple[str, Any]:
    """What the reader hands to the driver (postcompile rendered, driver paramstyle)."""
    urls = {
        "postgresql": "postgresql+psycopg2://u:p@127.0.0.1/db",
        "mysql": "mysql+pymysql://u:p@127.0.0.1/db",
        "sqlite": "sqlite://",
        "mssql": "mssql+pyodbc://u:p@127.0.0.1:1433/db?driver=FreeTDS",
        "oracle": "oracle+oracledb://u:p@127.0.0.1:1521/?service_name=X",
    }
    source = SourceConfig(url=urls[dialect], tenant_column="tenant_id")
    engine = make_engine(source)  # never connects here
    q = EntityQuery(entity, source, EVIL, FIELDS, engine.dialect)
    reader = SourceReader(engine, q, entity, source)
    stmt, params = q.batch(position, T1)
    return reader._driver_statement(stmt, params)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("entity", [TS_ENTITY, QUERY_ENTITY], ids=["table", "query"])
def test_values_are_only_bound_parameters(dialect: str, entity: EntityConfig) -> None:
    watermark_key = "k'); DROP TABLE orders; --"
    text, values = driver_statement(dialect, entity, Position(T0, watermark_key))
    for value in (EVIL, "'1'='1", watermark_key, "DROP TABLE", "2024-05-01", "2024-06-01"):
        assert value not in text
    bound = list(values.values()) if isinstance(values, dict) else list(values)
    assert EVIL in bound
    assert watermark_key in bound
    if dialect != "sqlite":
        assert T0 in bound and T1 in bound
    # the batch size is the only thing rendered inline (SQL Server TOP / Oracle FETCH FIRST)
    if dialect == "mssql":
        assert text.startswith(f"SELECT TOP {entity.batch_size} ")
    if dialect == "oracle":
        assert text.endswith(f"FETCH FIRST {entity.batch_size} ROWS ONLY")


def test_sqlite_binds_datetimes_in_its_text_format() -> None:
    # SQLite compares timestamps as text; "10:00:00" would sort before "10:00:00.000000"
    _, params = query(TS_ENTITY, PLAIN_SOURCE, "sqlite").batch(
        Position(dt.datetime(2024, 5, 1, 10), 3), dt.datetime(2024, 6, 1, 0, 0, 0, 5)
    )
    assert params == {
        "wm_cursor": "2024-05-01 10:00:00.000000",
        "wm_key": 3,
        "upper": "2024-06-01 00:00:00.000005",
    }
    _, params = query(TS_ENTITY, PLAIN_SOURCE, "sqlite").batch(
        Position("2024-05-01 10:00:00", 3), None
    )
    assert params["wm_cursor"] == "2024-05-01 10:00:00"  # a value read from a row: unchanged


def test_colons_in_a_query_are_text_and_percent_is_escaped() -> None:
    entity = QUERY_ENTITY.model_copy(
        update={
            "query": "SELECT * FROM t WHERE note = ':tenant' AND x::int > 0",
            "fields": {"order_id": "id", "customer": "name LIKE 'a%'"},
        }
    )
    stmt, params = query(entity, PLAIN_SOURCE, "postgresql").batch(Position(), None)
    compiled = stmt.compile(dialect=DIALECTS["postgresql"])
    assert "note = ':tenant' AND x::int > 0" in compiled.string
    assert "name LIKE 'a%%' AS customer" in compiled.string  # psycopg2 turns %% back into %
    assert set(compiled.construct_params(params)) == {"param_1"}


def test_identifiers_are_quoted_where_needed() -> None:
    entity = ID_ENTITY.model_copy(update={"fields": {"order_id": "id", "customer": "order"}})
    expected = {"postgresql": '"order"', "mysql": "`order`", "mssql": "[order]"}
    for dialect, quoted in expected.items():
        stmt, _ = query(entity, PLAIN_SOURCE, dialect).batch(Position(), None)
        assert f"orders.{quoted} AS customer" in sql(stmt, DIALECTS[dialect])


def test_entity_query_name() -> None:
    assert query(TS_ENTITY, PLAIN_SOURCE, "sqlite").name == "sales.orders"
    assert query(QUERY_ENTITY, PLAIN_SOURCE, "sqlite").name == "query"
    q = EntityQuery(ID_ENTITY, PLAIN_SOURCE, "t", FIELDS, DIALECTS["sqlite"], name="orders")
    assert q.name == "orders"


@pytest.mark.parametrize(
    ("avro", "sa_type", "ok"),
    [
        ("long", sa.Integer(), True),
        ("long", sa.Numeric(10, 0), True),
        ("long", sa.Numeric(10, 2), False),
        ("long", sa.String(20), False),
        ("decimal(10,2)", sa.Numeric(12, 4), True),
        ("decimal(10,2)", sa.String(20), True),  # text amounts are parsed per value
        ("decimal(10,2)", sa.Float(), False),  # a binary float is never exact
        ("timestamp", sa.DateTime(), True),
        ("timestamp", sa.Numeric(10, 2), False),
        ("timestamp", sa.Integer(), False),
        ("date", sa.Date(), True),
        ("boolean", sa.Boolean(), True),
        ("boolean", sa.String(1), False),
        ("string", sa.Integer(), True),
        ("string", sa.DateTime(), True),
        ("long", sa.JSON(), True),  # unknown kinds are not judged
    ],
)
def test_type_fit(avro: str, sa_type: sa.types.TypeEngine[Any], ok: bool) -> None:
    assert fits(avro, column_kind(sa_type), "postgresql") is ok


def test_sqlite_text_timestamps_fit() -> None:
    assert fits("timestamp", "string", "sqlite")
    assert not fits("timestamp", "string", "mysql")


# ------------------------------------------------------------------------------ drivers


def test_drivers_import_and_engines_build_without_connecting() -> None:
    import oracledb
    import pyodbc

    assert oracledb.__version__
    assert "FreeTDS" in pyodbc.drivers(), "FreeTDS is not registered in /etc/odbcinst.ini"
    for url, name in [
        ("mssql+pyodbc://u:p@127.0.0.1:1433/db?driver=FreeTDS", "mssql"),
        ("oracle+oracledb://u:p@127.0.0.1:1521/?service_name=X", "oracle"),
    ]:
        assert sa.create_engine(url).dialect.name == name
        assert make_engine(SourceConfig(url=url)).dialect.name == name


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://u:s3cret@127.0.0.1:{port}/db",
        "mysql+pymysql://u:s3cret@127.0.0.1:{port}/db",
        "mssql+pyodbc://u:s3cret@127.0.0.1:{port}/db?driver=FreeTDS",
        "oracle+oracledb://u:s3cret@127.0.0.1:{port}/?service_name=X",
    ],
    ids=["psycopg2", "pymysql", "pyodbc", "oracledb"],
)
def test_closed_port_is_a_prompt_clear_source_error(url: str) -> None:
    source = SourceConfig(url=url.format(port=closed_port()), connect_timeout_s=5)
    engine = make_engine(source)
    reader = SourceReader(
        engine, EntityQuery(ID_ENTITY, source, "t", FIELDS, engine.dialect), ID_ENTITY, source
    )
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        reader.fetch(Position())
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert source.safe_url in message and "u:***@" in message
    assert "s3cret" not in message
    assert message.startswith("entity 'orders': source database ")


def test_error_classification() -> None:
    import pymysql

    source = SourceConfig(url="mysql+pymysql://u:s3cret@h/db")
    missing = pymysql.err.OperationalError(1054, "Unknown column 'x' in 'field list'")
    lost = pymysql.err.OperationalError(2013, "Lost connection to server during query")
    assert isinstance(translate_error(missing, "entity 'e'", source), SchemaMismatchError)
    assert isinstance(translate_error(lost, "entity 'e'", source), SourceError)
    wrapped = sa.exc.OperationalError("SELECT 1", {}, lost)
    err = translate_error(wrapped, "entity 'e'", source)
    assert isinstance(err, SourceError)
    assert "Lost connection" in str(err) and "s3cret" not in str(err)


class _PgError(Exception):
    def __init__(self, pgcode: str, text: str) -> None:
        super().__init__(text)
        self.pgcode = pgcode


@pytest.mark.parametrize(
    ("orig", "url"),
    [
        (_PgError("42501", "permission denied for table categories"), "postgresql+psycopg2://u:s3cret@h/d"),
        (None, "mysql+pymysql://u:s3cret@h/db"),  # 1142, built below: PyMySQL's own class
        (Exception("[42000] The SELECT permission was denied on the object 'c'. (229)"),
         "mssql+pyodbc://u:s3cret@h/db?driver=FreeTDS"),
        (Exception("ORA-01031: insufficient privileges"), "oracle+oracledb://u:s3cret@h/db"),
    ],
)  # fmt: skip
def test_a_missing_grant_is_retried_per_entity_not_a_wrong_mapping(
    orig: Exception | None, url: str
) -> None:
    import pymysql

    if orig is None:
        orig = pymysql.err.OperationalError(1142, "SELECT command denied to user 'u' for table 'c'")
    source = SourceConfig(url=url)
    err = translate_error(sa.exc.ProgrammingError("SELECT", {}, orig), "entity 'e'", source)
    assert isinstance(err, PrivilegeError), err
    assert isinstance(err, SourceError)  # transient: the run loop backs this entity off alone
    assert "grant" in str(err) and "s3cret" not in str(err)
    # a wrong mapping stays terminal
    wrong = _PgError("42703", 'column "x" does not exist')
    assert isinstance(translate_error(wrong, "entity 'e'", source), SchemaMismatchError)


def test_message_key_is_selected_when_it_is_not_the_tiebreak() -> None:
    ent = TS_ENTITY.model_copy(
        update={
            "key": "order_code",
            "batching": TS_ENTITY.batching.model_copy(update={"id_column": "id"}),
        }
    )
    stmt, _ = query(ent, PLAIN_SOURCE, "postgresql").batch(Position(), None)
    text = sql(stmt, DIALECTS["postgresql"])
    assert "sales.orders.id AS _wm_key, sales.orders.order_code AS _row_key FROM" in text
    stmt, _ = query(TS_ENTITY, PLAIN_SOURCE, "postgresql").batch(Position(), None)
    assert "_row_key" not in sql(stmt, DIALECTS["postgresql"])
