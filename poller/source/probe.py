"""What the reader must know about the cursor column before the first batch: its kind (a date
is complete only once its whole day is behind the horizon), whether it is zone-aware (the upper
bound is then bound as an instant, not as wall-clock time), and its exact type on SQL Server and
Oracle (the cursor is bound back through it). And whether it can be NULL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from poller.config import EntityConfig
from poller.source.exact import TEXT_CURSOR_DIALECTS, CursorType
from poller.source.keyset import ColumnBind
from poller.source.query import EntityQuery, column_kind, description_kind, split_table

_PG_TIMESTAMPTZ = 1184


def _reflected(conn: sa.Connection, entity: EntityConfig, column: str) -> dict[str, Any] | None:
    if entity.table is None:
        return None
    schema, table = split_table(entity.table)
    try:
        columns = sa.inspect(conn).get_columns(table, schema=schema)
    except sa_exc.NoSuchTableError:
        return None
    dialect = conn.dialect.name
    for c in columns:
        name = str(c["name"])
        if name == column or (dialect != "postgresql" and name.lower() == column.lower()):
            return dict(c)
    return None


def _mssql_type(desc: Any) -> str:
    """pyodbc reports datetime, datetime2(n) and smalldatetime alike; precision/scale tell."""
    precision, scale = (desc[4], desc[5]) if len(desc) > 5 else (None, None)
    if precision == 23 and scale == 3:
        return "DATETIME"
    if precision == 16 and scale == 0:
        return "SMALLDATETIME"
    return f"DATETIME2({scale if isinstance(scale, int) and 0 <= scale <= 7 else 7})"


def cursor_type(conn: sa.Connection, query: EntityQuery, entity: EntityConfig) -> CursorType:
    column = entity.batching.column
    dialect = conn.dialect.name
    reflected = _reflected(conn, entity, column)
    if reflected is not None:
        t: sa.types.TypeEngine[Any] = reflected["type"]
        kind = column_kind(t)
        aware = bool(getattr(t, "timezone", False))
        sql_type = None
        if dialect in TEXT_CURSOR_DIALECTS and kind == "datetime":
            sql_type = t.compile(dialect=conn.dialect)
            aware = aware or "OFFSET" in sql_type.upper() or "TIME ZONE" in sql_type.upper()
    else:
        result = conn.execute(query.probe(query.cursor_col))
        desc = result.cursor.description[0] if result.cursor is not None else None
        result.close()
        kind = description_kind(dialect, desc) if desc else "unknown"
        aware = dialect == "postgresql" and desc is not None and desc[1] == _PG_TIMESTAMPTZ
        sql_type = None
        if desc is not None and dialect == "oracle":
            name = str(getattr(desc[1], "name", ""))
            aware = name.endswith(("TZ", "LTZ"))
            sql_type = name.removeprefix("DB_TYPE_") if kind == "datetime" else None
        elif desc is not None and dialect == "mssql" and kind == "datetime":
            sql_type = _mssql_type(desc)
    if kind.startswith("decimal") and kind != "decimal":
        kind = "int"
    if kind not in ("datetime", "date", "int"):
        kind = "other"
    return CursorType(kind=kind, aware=aware, sql_type=sql_type)


def nullable_cursor(conn: sa.Connection, entity: EntityConfig) -> bool | None:
    """True/False from the table's definition; None for a `query:` or a view (a view's
    columns are reported nullable whatever its base table says)."""
    reflected = _reflected(conn, entity, entity.batching.column)
    if reflected is None or entity.table is None:
        return None
    schema, table = split_table(entity.table)
    views = {v.lower() for v in sa.inspect(conn).get_view_names(schema=schema)}
    return None if table.lower() in views else bool(reflected.get("nullable", True))


def count_null_cursors(conn: sa.Connection, query: EntityQuery) -> int:
    """This tenant's rows whose cursor is NULL: rows no batch ever selects."""
    stmt = (
        sa.select(sa.func.count())
        .select_from(query.src)
        .where(*query.tenant_filter(), query.cursor_col.is_(None))
    )
    return int(conn.execute(stmt).scalar_one())


_PG_UUID = 2950
# Drivers that send typed parameters (pyodbc, python-oracledb). psycopg2, PyMySQL and sqlite3
# interpolate literals on the client, which the server types from the column it meets.
TYPED_BIND_DIALECTS = frozenset({"mssql", "oracle"})


def _mssql_char(t: sa.types.TypeEngine[Any], dialect: sa.engine.Dialect) -> str | None:
    """A non-Unicode character type on SQL Server (VARCHAR(n), CHAR(n)), spelled as the
    database does; None for NVARCHAR/NCHAR and everything else."""
    if not isinstance(t, sa.String) or isinstance(t, sa.Unicode | sa.UnicodeText):
        return None
    # Reflection carries the column's collation; the cast takes the type only, and the
    # comparison then follows the column's collation (a column outranks a cast).
    spec = t.compile(dialect=dialect).upper().split(" COLLATE ")[0]
    if spec.startswith(("NVARCHAR", "NCHAR", "NTEXT")) or not spec.startswith(("VARCHAR", "CHAR")):
        return None
    return spec.replace("VARCHAR(MAX)", "VARCHAR(8000)") if "MAX" in spec else spec


def column_bind(conn: sa.Connection, entity: EntityConfig, column: str) -> ColumnBind:
    """How values compared with `column` are bound: with the column's reflected type (a
    `query:` column is not reflected: untyped, as before)."""
    if conn.dialect.name not in TYPED_BIND_DIALECTS:
        return ColumnBind()
    reflected = _reflected(conn, entity, column)
    if reflected is None:
        return ColumnBind()
    t: sa.types.TypeEngine[Any] = reflected["type"]
    char = _mssql_char(t, conn.dialect) if conn.dialect.name == "mssql" else None
    return ColumnBind(type_=t, mssql_char=char)


def tenant_exact(conn: sa.Connection, query: EntityQuery, entity: EntityConfig) -> str | None:
    """The tenant column's exact-comparison form (see exact.tenant_filter): "char", "fixed"
    (CHAR(n), padded), "nfixed" (NCHAR(n)) or None (not a character column)."""
    column = query.source.tenant_column
    if column is None:
        return None
    reflected = _reflected(conn, entity, column)
    if reflected is not None:
        t: sa.types.TypeEngine[Any] = reflected["type"]
        if not isinstance(t, sa.String):
            return None if column_kind(t) != "unknown" or isinstance(t, sa.Uuid) else "char"
        spec = t.compile(dialect=conn.dialect).upper()
        if spec.startswith("NCHAR"):
            return "nfixed"
        return "fixed" if spec.startswith(("CHAR", "CHARACTER(")) else "char"
    result = conn.execute(query.probe(query.column(column)))
    desc: Any = result.cursor.description[0] if result.cursor is not None else None
    result.close()
    if desc is None:
        return "char"
    if conn.dialect.name == "postgresql" and desc[1] == _PG_UUID:
        return None
    kind = description_kind(conn.dialect.name, desc)
    return "char" if kind in ("string", "unknown") else None


def prepare(conn: sa.Connection, query: EntityQuery, entity: EntityConfig) -> None:
    """Everything the statements need to know about the columns, read once before the first
    batch: the cursor's type, the key columns' bind types, the tenant column's kind."""
    query.set_cursor_type(cursor_type(conn, query, entity))
    names = dict.fromkeys([entity.batching.column, *entity.tiebreak_columns, *entity.key_columns])
    binds = {name: column_bind(conn, entity, name) for name in names}
    query.set_column_binds(binds, tenant_exact(conn, query, entity))
