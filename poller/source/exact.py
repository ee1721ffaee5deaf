"""Exact comparisons per dialect: the cursor's own type and precision, composite keysets, and a
tenant compared byte for byte whatever the column's collation.

Drivers lose precision on the way out and back in: pyodbc reads SQL Server `datetime2(7)` as
microseconds and binds a `datetime` at the driver's precision; python-oracledb binds a `datetime`
as `DATE` (no fraction at all). A cursor that does not round-trip exactly re-reads the rows it
stands on forever. On SQL Server and Oracle a date/time cursor therefore travels as text: it is
selected as fixed-format text and bound back through an explicit conversion to the column's own
type, so the stored watermark is the column's value to the last digit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator

# Dialects with a correct row-value comparison `(a, b) > (x, y)`. SQL Server has no row values;
# Oracle has them only for equality, so both get the expanded OR form.
ROW_VALUE_DIALECTS = frozenset({"postgresql", "mysql", "mariadb", "sqlite"})
TEXT_CURSOR_DIALECTS = frozenset({"mssql", "oracle"})

_ORACLE_FMT = "YYYY-MM-DD HH24:MI:SS.FF9"


@dataclass(frozen=True)
class CursorType:
    """What the reader learned about the cursor column at start.

    kind: "datetime", "date", "int" or "other"; aware: a zone-aware timestamp (timestamptz,
    datetimeoffset, TIMESTAMP WITH TIME ZONE); sql_type: the column's type as the database
    spells it (SQL Server / Oracle bind back through it), e.g. "DATETIME2(7)".
    """

    kind: str = "other"
    aware: bool = False
    sql_type: str | None = None

    @property
    def text_cursor(self) -> bool:
        return self.kind == "datetime" and self.sql_type is not None


def cursor_select(dialect: str, col: ColumnElement[Any], ctype: CursorType) -> ColumnElement[Any]:
    """The cursor as it is selected into the batch (and stored in the watermark)."""
    if dialect not in TEXT_CURSOR_DIALECTS or not ctype.text_cursor:
        return col
    if dialect == "mssql":  # style 126/127: ISO 8601 with every fractional digit the type has
        return _Template(f"CONVERT(VARCHAR(40), {{}}, {127 if ctype.aware else 126})", col)
    inner = "SYS_EXTRACT_UTC({})" if ctype.aware else "CAST({} AS TIMESTAMP(9))"
    return _Template(f"TO_CHAR({inner}, '{_ORACLE_FMT}')", col)


def cursor_bind(dialect: str, name: str, ctype: CursorType) -> ColumnElement[Any]:
    """A bound cursor value, converted to the column's own type where the driver cannot be
    trusted with it (SQL Server, Oracle)."""
    if dialect not in TEXT_CURSOR_DIALECTS or not ctype.text_cursor:
        return sa.bindparam(name)
    assert ctype.sql_type is not None
    if dialect == "mssql":
        return sa.cast(sa.bindparam(name, type_=sa.String()), RawType(ctype.sql_type))
    bind = sa.bindparam(name, type_=sa.String())
    if ctype.aware:
        return _Template(f"FROM_TZ(TO_TIMESTAMP({{}}, '{_ORACLE_FMT}'), 'UTC')", bind)
    return _Template(f"TO_TIMESTAMP({{}}, '{_ORACLE_FMT}')", bind)


def cursor_bind_value(dialect: str, value: object, ctype: CursorType) -> object:
    """The Python value bound for a cursor parameter: on SQL Server / Oracle a datetime (a
    start value, an upper bound) becomes the same text format the cursor is selected in."""
    if dialect not in TEXT_CURSOR_DIALECTS or not ctype.text_cursor:
        return value
    if not isinstance(value, dt.datetime):
        return value
    if value.tzinfo is not None and (ctype.aware or dialect == "oracle"):
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if dialect == "mssql":
        text = value.isoformat(timespec="microseconds")
        return text + "Z" if ctype.aware else text
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") + "000"


class RawType(sa.types.UserDefinedType[Any]):
    """A column type rendered verbatim: the column's own type name, read from the database."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **_kw: Any) -> str:
        return self.spec


class _Template(ColumnElement[Any]):
    """SQL around one column, e.g. `TO_CHAR(CAST({} AS TIMESTAMP(9)), ...)`; the template is
    fixed text of this module, the column is compiled (quoted) by SQLAlchemy."""

    inherit_cache = True

    def __init__(self, template: str, column: ColumnElement[Any]) -> None:
        self.template = template
        self.column = column
        self.type = sa.String()


@compiles(_Template)
def _template(element: _Template, compiler: SQLCompiler, **kw: Any) -> str:
    return element.template.format(compiler.process(element.column, **kw))


def keyset_after(
    dialect: str,
    cursor: ColumnElement[Any],
    wm_cursor: ColumnElement[Any],
    keys: list[ColumnElement[Any]],
    wm_keys: list[ColumnElement[Any]],
) -> list[ColumnElement[bool]]:
    """Rows strictly after (cursor, *keys) in the order `ORDER BY cursor, *keys`.

    The leading `c >= :c` is implied by the rest but gives the optimizer a plain range on the
    cursor index: MariaDB 10.11 does not use a row-value comparison for index access, and an
    OR alone is often planned as a full scan. PostgreSQL uses both as index conditions.
    """
    if dialect in ROW_VALUE_DIALECTS:
        return [cursor >= wm_cursor, sa.tuple_(cursor, *keys) > sa.tuple_(wm_cursor, *wm_keys)]
    cols, binds = [cursor, *keys], [wm_cursor, *wm_keys]
    expr: ColumnElement[bool] = cols[-1] > binds[-1]
    for col, bind in zip(reversed(cols[:-1]), reversed(binds[:-1]), strict=True):
        expr = sa.or_(col > bind, sa.and_(col == bind, expr))
    return [cursor >= wm_cursor, expr]


class ExactForm(ColumnElement[Any]):
    """A value in a form that compares exactly: case, trailing spaces and accents count,
    whatever the column's collation says (MariaDB's default collations ignore case and
    trailing spaces). `ExactForm(col) == ExactForm(value)` is rendered next to the plain `=`,
    which stays for the index. `fixed`: the column is CHAR(n), padded with spaces by the
    database, so trailing spaces are cut on both sides first (SQL Server and Oracle keep them
    in the value; PostgreSQL's and MySQL's casts already drop them)."""

    inherit_cache = True

    def __init__(self, inner: ColumnElement[Any], fixed: bool = False) -> None:
        self.inner = inner
        self.fixed = fixed
        self.type = sa.String()


_EXACT_FORMS = {
    # "C" is deterministic byte order: no ICU non-deterministic collation, no citext folding.
    "postgresql": 'CAST({} AS TEXT) COLLATE "C"',
    # Binary strings compare byte by byte with trailing spaces significant; converting to
    # utf8mb4 first makes the bytes comparable whatever the column's character set.
    "mysql": "CAST(CONVERT({} USING utf8mb4) AS BINARY)",
    "mariadb": "CAST(CONVERT({} USING utf8mb4) AS BINARY)",
    "sqlite": "CAST({} AS BLOB)",
    # `=` pads trailing spaces on SQL Server whatever the collation; UTF-16 bytes do not.
    "mssql": "CAST(CAST({} AS NVARCHAR(4000)) AS VARBINARY(8000))",
    "oracle": "NLSSORT({}, 'NLS_SORT=BINARY')",
}
_PAD_CUT = {"mssql": "RTRIM({})", "oracle": "RTRIM({})"}


@compiles(ExactForm)
def _exact_form(element: ExactForm, compiler: SQLCompiler, **kw: Any) -> str:
    name = compiler.dialect.name
    inner = compiler.process(element.inner, **kw)
    if element.fixed and name in _PAD_CUT:
        inner = _PAD_CUT[name].format(inner)
    return _EXACT_FORMS.get(name, "{}").format(inner)


class PaddedText(TypeDecorator[str]):
    """The tenant bound against a CHAR(n)/NCHAR(n) column. Oracle compares a CHAR column with
    a VARCHAR2 bind (the driver's default for a str) without blank padding, so
    `tenant_id = :tenant` matched none of 'acme      '; bound as CHAR (NCHAR) the comparison
    pads and keeps its index. Elsewhere a plain string: SQL Server's `=` pads whatever the
    bind, PostgreSQL and MySQL drop CHAR(n)'s padding."""

    impl = sa.String
    cache_ok = True

    def __init__(self, national: bool = False) -> None:
        super().__init__()
        self.national = national

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "oracle":
            return dialect.type_descriptor(sa.NCHAR() if self.national else sa.CHAR())
        return dialect.type_descriptor(sa.String())


def tenant_filter(
    column: ColumnElement[Any], tenant: str, exact: str | None = "char"
) -> list[ColumnElement[bool]]:
    """The indexable `=` and the exact comparison, both on the one bound tenant value.

    `exact`: "char" (a character column, or not known), "fixed" (CHAR(n)), "nfixed"
    (NCHAR(n)), None (not a character column: uuid, integer... whose values have one spelling
    the database parses, so the byte-exact form would compare the text of 'ABC-..' with the
    column's 'abc-..' and match nothing)."""
    if exact is None:
        return [column == sa.bindparam("tenant", tenant)]
    fixed = exact in ("fixed", "nfixed")
    bind: sa.BindParameter[str] = sa.bindparam(
        "tenant", tenant, type_=PaddedText(exact == "nfixed") if fixed else sa.String()
    )
    return [column == bind, ExactForm(column, fixed) == ExactForm(bind, fixed)]
