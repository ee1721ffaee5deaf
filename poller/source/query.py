"""The SELECTs that read an entity's rows changed since a watermark.

SQL text is made only from identifiers of the validated config (quoted by SQLAlchemy where the
dialect needs it) and from the operator's own SQL (`query:` and non-identifier field mappings),
which is trusted configuration, never data. Every value - the tenant id, the watermark, the upper
bound - is a bound parameter.

Rows are read in keyset order `(cursor, tie-breaker)`: a batch holds the rows strictly after the
last row of the previous batch, so a batch boundary inside a run of equal cursor values (thousands
of rows touched by one UPDATE share one timestamp) neither repeats nor skips a row.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ColumnElement, FromClause, Select

from poller.batch import Position
from poller.config import IDENTIFIER, EntityConfig, Mode, SourceConfig
from poller.source.exact import CursorType, cursor_select, tenant_filter
from poller.source.keyset import ColumnBind, KeyRange, Keyset, ensure_progress

__all__ = ["ColumnBind", "KeyRange", "Keyset", "ensure_progress"]

# Statements of any number of columns (SQLAlchemy 2.1 types Select by its column types).
AnySelect: TypeAlias = Select[*tuple[Any, ...]]

CURSOR_LABEL = "_wm_cursor"
KEY_LABEL = "_wm_key"
ROW_KEY_LABEL = "_row_key"
DELETED_LABEL = "_deleted"

# The database's current instant, as UTC (or time-zone aware). Naive local "now" functions are
# avoided on purpose: they follow the server's or session's zone, which need not be the zone the
# cursor column is written in (`source.timezone`); the reader converts this instant to that zone.
_NOW_SQL = {
    "postgresql": "statement_timestamp()",
    "mysql": "UTC_TIMESTAMP(6)",
    "mariadb": "UTC_TIMESTAMP(6)",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    "mssql": "SYSUTCDATETIME()",
    "oracle": "SYS_EXTRACT_UTC(SYSTIMESTAMP)",
}


@dataclass(frozen=True)
class RowLayout:
    """Where things sit in a batch row: the fields, the cursor, the tie-breaker column(s), the
    message key column(s) when they are not the tie-breaker, the soft-delete column."""

    n_fields: int
    n_tiebreak: int
    n_rowkey: int  # 0: the message key is the tie-breaker
    has_deleted: bool = False

    @property
    def cursor_at(self) -> int:
        return self.n_fields

    @property
    def key_at(self) -> int:
        """First column of the message key."""
        return self.n_fields + 1 + (self.n_tiebreak if self.n_rowkey else 0)

    @property
    def n_key(self) -> int:
        return self.n_rowkey or self.n_tiebreak

    @property
    def deleted_at(self) -> int:
        return self.n_fields + 1 + self.n_tiebreak + self.n_rowkey

    def position(self, row: Sequence[object]) -> Position:
        n, m = self.n_fields, self.n_tiebreak
        return Position(row[n], row[n + 1] if m == 1 else tuple(row[n + 1 : n + 1 + m]))

    def message_key(self, row: Sequence[object]) -> object:
        """The row's key: a value, or a tuple for a composite key."""
        at = self.key_at
        return row[at] if self.n_key == 1 else tuple(row[at : at + self.n_key])


def is_identifier(mapping: str) -> bool:
    """A field mapping that is a plain column name (quoted) rather than an SQL expression."""
    return IDENTIFIER.match(mapping) is not None


def split_table(table: str) -> tuple[str | None, str]:
    """`schema.table` -> ("schema", "table"); a three-part SQL Server name keeps `db.schema`."""
    schema, _, name = table.rpartition(".")
    return (schema or None), name


class EntityQuery:
    """Builds and caches the statements of one entity for one dialect.

    The statements are built once per shape (with/without a watermark key, with/without an upper
    bound); values are supplied as parameters on each call, so SQLAlchemy's compiled cache and
    the database's plan cache see the same SQL text every batch.
    """

    def __init__(
        self,
        entity: EntityConfig,
        source: SourceConfig,
        tenant: str,
        field_names: Sequence[str],
        dialect: Dialect,
        *,
        name: str | None = None,
    ) -> None:
        self.entity = entity
        self.source = source
        self.tenant = tenant
        self.field_names = tuple(field_names)
        self.dialect = dialect
        self.name = name or entity.table or "query"
        self.n_fields = len(self.field_names)
        self.src = self._from_clause()
        self.cursor_col = self.column(entity.batching.column)
        self.key_cols = [self.column(c) for c in entity.tiebreak_columns]
        self.key_col = self.key_cols[0]
        self._same_column = [entity.batching.column] == entity.tiebreak_columns
        self._tenant_col = (
            self.column(source.tenant_column) if source.tenant_column is not None else None
        )
        self.cursor_type = CursorType()
        self.column_binds: dict[str, ColumnBind] = {}
        self.tenant_exact: str | None = "char"  # until probed: the exact form, to be safe
        self.layout = RowLayout(
            self.n_fields,
            len(self.key_cols),
            0 if entity.key_is_tiebreak else len(entity.key_columns),
            entity.deletes is not None,
        )
        self._cache: dict[tuple[object, ...], AnySelect] = {}
        self.keyset = self._make_keyset()

    def set_cursor_type(self, ctype: CursorType) -> None:
        """What the reader found out about the cursor column; the statements follow it."""
        if ctype != self.cursor_type:
            self.cursor_type = ctype
            self._reset()

    def set_column_binds(self, binds: dict[str, ColumnBind], tenant_exact: str | None) -> None:
        """How values are bound to the key columns (their own types), and the tenant column's
        exact-comparison form ("char", "fixed"/"nfixed" for CHAR(n)/NCHAR(n), None: not a
        character column)."""
        if binds != self.column_binds or tenant_exact != self.tenant_exact:
            self.column_binds = dict(binds)
            self.tenant_exact = tenant_exact
            self._reset()

    def _reset(self) -> None:
        self._cache.clear()
        self.keyset = self._make_keyset()

    def _make_keyset(self) -> Keyset:
        """The batches' order: the cursor, then the tie-breaker unless it is the cursor."""
        names = [] if self._same_column else self.entity.tiebreak_columns
        cursor_bind = self.column_binds.get(self.entity.batching.column, ColumnBind())
        return Keyset(
            self.dialect.name,
            (self.cursor_col, *(self.column(n) for n in names)),
            self.cursor_type,
            (cursor_bind, *(self.column_binds.get(n, ColumnBind()) for n in names)),
        )

    def key_keyset(self, names: Sequence[str]) -> Keyset:
        """An order by the given key columns (verify pages, backfill by key): typed binds,
        no cursor conversion, NULLs not skipped."""
        return Keyset(
            self.dialect.name,
            tuple(self.column(n) for n in names),
            CursorType(),
            tuple(self.column_binds.get(n, ColumnBind()) for n in names),
            not_null=False,
            prefix="pk",  # beside the live keyset's wm_ binds in verify's pages
        )

    # ------------------------------------------------------------------ building blocks

    def _referenced_columns(self) -> list[str]:
        names = [v for v in self.entity.fields.values() if is_identifier(v)]
        names += [self.entity.batching.column, *self.entity.tiebreak_columns]
        names += self.entity.key_columns
        if self.entity.deletes is not None:
            names.append(self.entity.deletes.column)
        if self.source.tenant_column is not None:
            names.append(self.source.tenant_column)
        return list(dict.fromkeys(names))  # de-duplicated, order kept for stable SQL

    def _from_clause(self) -> FromClause:
        cols: list[sa.ColumnClause[Any]] = [sa.column(c) for c in self._referenced_columns()]
        if self.entity.table is not None:
            schema, table = split_table(self.entity.table)
            return sa.table(table, *cols, schema=schema)
        assert self.entity.query is not None  # config guarantees exactly one of table/query
        # A ':' in the operator's query ('12:30', ':=') must stay text, not become a bind
        # parameter: escaped, SQLAlchemy emits it unchanged.
        text = sa.text(self.entity.query.replace(":", "\\:"))
        return text.columns(*cols).subquery("src")

    def column(self, name: str) -> ColumnElement[Any]:
        """A quoted column of the FROM (table or `(query) AS src`)."""
        return self.src.c[name]

    def field_expression(self, field: str) -> ColumnElement[Any]:
        """The SELECT expression of one canonical field, labelled with the field's name.

        A mapping that is not a plain identifier is the operator's SQL expression. It is
        configuration text (validated: no ';' or '--'), never a value taken from data, so it is
        emitted verbatim on purpose.
        """
        mapping = self.entity.fields.get(field)
        if mapping is None:
            return sa.null().label(field)
        if is_identifier(mapping):
            return self.column(mapping).label(field)
        return sa.literal_column(mapping).label(field)

    def _tenant_filter(self) -> list[ColumnElement[bool]]:
        if self._tenant_col is None:
            return []
        return tenant_filter(self._tenant_col, self.tenant, self.tenant_exact)

    def batch_columns(self) -> list[ColumnElement[Any]]:
        """The fields in schema order, the cursor, the tie-breaker, the message key when it is
        not the tie-breaker, and the soft-delete column when the entity has one."""
        columns = [self.field_expression(f) for f in self.field_names]
        cursor = cursor_select(self.dialect.name, self.cursor_col, self.cursor_type)
        columns.append(cursor.label(CURSOR_LABEL))
        columns += [k.label(f"{KEY_LABEL}{i or ''}") for i, k in enumerate(self.key_cols)]
        if not self.entity.key_is_tiebreak:  # the message key is a column of its own
            for i, name in enumerate(self.entity.key_columns):
                columns.append(self.column(name).label(f"{ROW_KEY_LABEL}{i or ''}"))
        if self.entity.deletes is not None:
            columns.append(self.column(self.entity.deletes.column).label(DELETED_LABEL))
        return columns

    def tenant_filter(self) -> list[ColumnElement[bool]]:
        return self._tenant_filter()

    def after(self, position: Position) -> tuple[ColumnElement[bool] | None, dict[str, object]]:
        """ "This row comes after `position`" in the batches' keyset order, and its parameters
        (None: every row, for a position at the beginning)."""
        if position.cursor is None:
            return None, {}
        ks = self.keyset
        return sa.and_(*ks.after_clauses(ks.kind(position))), ks.position_params(position)

    def select_range(
        self,
        rng: KeyRange,
        keyset: Keyset | None = None,
        limit: int | None = None,
    ) -> tuple[AnySelect, dict[str, object]]:
        """The batch columns of this tenant's rows in `rng`, in the keyset's order, at most
        `limit` rows (default: the entity's batch_size), and the typed parameters. One
        statement per shape: the same SQL text every batch (compiled and plan caches)."""
        ks = keyset or self.keyset
        n = self.entity.batch_size if limit is None else limit
        shape = (ks, ks.kind(rng.after), rng.low is not None, rng.high is not None,
                 rng.high_exclusive, rng.condition, n)  # fmt: skip
        stmt = self._cache.get(shape)
        if stmt is None:
            where = self._tenant_filter() + ks.where(rng)
            stmt = sa.select(*self.batch_columns()).select_from(self.src)
            if where:
                stmt = stmt.where(*where)
            stmt = self._cache[shape] = stmt.order_by(*ks.order_by()).limit(n)
        params = ks.params(rng)
        if self._tenant_col is not None:
            params["tenant"] = self.tenant
        return stmt, params

    def batch(
        self, position: Position, upper_bound: object | None
    ) -> tuple[AnySelect, dict[str, object]]:
        """The next batch after `position`, and its parameters.

        `upper_bound` excludes rows whose cursor is newer: time modes read strictly before the
        horizon (a transaction still open may write rows stamped exactly at its start); id
        mode every id up to a settled maximum.
        """
        time_mode = self.entity.batching.mode is not Mode.ID
        return self.select_range(KeyRange(position, high=upper_bound, high_exclusive=time_mode))

    def bind_cursor(self, value: object) -> object:
        """A cursor value as it is bound (exact text on SQL Server/Oracle, see exact.py)."""
        return self.keyset.cursor_value(value)

    def now(self) -> AnySelect:
        """SELECT of the database's current instant: UTC (naive) or time-zone aware.

        Use `SourceReader.db_now()` for a value comparable with the cursor column: it converts
        this instant to `source.timezone` (the zone naive timestamps are written in).
        """
        return sa.select(sa.literal_column(_NOW_SQL[self.dialect.name]).label("now"))

    def max_cursor(self) -> AnySelect:
        """SELECT max(cursor) of this tenant's rows (for `start: now` / lag metrics)."""
        stmt = sa.select(sa.func.max(self.cursor_col).label("max_cursor")).select_from(self.src)
        where = self._tenant_filter()
        return stmt.where(*where) if where else stmt

    def probe(self, *expressions: ColumnElement[Any]) -> AnySelect:
        """A zero-row SELECT of the given expressions from the entity's FROM: checks that they
        compile and execute and reports their types, without reading data."""
        return sa.select(*expressions).select_from(self.src).where(sa.false()).limit(0)


# ------------------------------------------------------------------------------ column types
# Coarse "kinds" of source columns, for `reader.check_entity` to catch clear mismatches between
# a column and its Avro field before any row is read.


def _codes(spec: str) -> dict[int, str]:
    """ "int: 1 2 3; string: 15" -> {1: "int", 2: "int", 3: "int", 15: "string"}."""
    kinds = (part.split(":") for part in spec.split(";"))
    return {int(code): kind.strip() for kind, codes in kinds for code in codes.split()}


# Driver type codes of cursor.description, for expressions and `query:` columns (reflection
# gives tables' types). A code not listed is "unknown" and not judged.
_PG_OIDS = _codes(
    "bool: 16; int: 20 21 23 26; float: 700 701; decimal: 1700; string: 18 19 25 1042 1043;"
    "date: 1082; datetime: 1114 1184; time: 1083 1266; binary: 17"
)
_MYSQL_TYPES = _codes(  # TEXT arrives as BLOB (252): taken as string, being lenient
    "decimal: 0 246; int: 1 2 3 8 9 13; float: 4 5; datetime: 7 12; date: 10 14; time: 11;"
    "string: 15 245 247 248 252 253 254"
)
_PY_TYPES = {  # pyodbc reports Python types
    bool: "bool", int: "int", float: "float", decimal.Decimal: "decimal", str: "string",
    dt.datetime: "datetime", dt.date: "date", dt.time: "time", bytes: "binary",
}  # fmt: skip
_ORACLE_TYPES = {
    **dict.fromkeys(("NUMBER",), "decimal"),
    **dict.fromkeys(("BINARY_INTEGER",), "int"),
    **dict.fromkeys(("BINARY_FLOAT", "BINARY_DOUBLE"), "float"),
    **dict.fromkeys(("BOOLEAN",), "bool"),
    **dict.fromkeys(("DATE", "TIMESTAMP", "TIMESTAMP_TZ", "TIMESTAMP_LTZ"), "datetime"),
    **dict.fromkeys(("VARCHAR", "CHAR", "NVARCHAR", "NCHAR", "CLOB", "NCLOB", "LONG"), "string"),
    **dict.fromkeys(("RAW", "BLOB"), "binary"),
}


def _decimal_kind(scale: object) -> str:
    """decimal0 (whole numbers), decimal (fraction) or decimal? (scale unknown: PG numeric,
    Oracle NUMBER): the last is accepted wherever a number fits, being unsure."""
    if not isinstance(scale, int) or scale < 0 or scale > 1000:
        return "decimal?"
    return "decimal0" if scale == 0 else "decimal"


def column_kind(t: sa.types.TypeEngine[Any]) -> str:
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.Numeric):  # before Integer: Oracle NUMBER is both
        return _decimal_kind(t.scale)
    if isinstance(t, sa.Integer):
        return "int"
    if isinstance(t, sa.DateTime):
        return "datetime"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.Time):
        return "time"
    if isinstance(t, sa.String):
        return "string"
    if isinstance(t, sa.LargeBinary):
        return "binary"
    return "unknown"


def description_kind(dialect: str, desc: Sequence[Any]) -> str:
    code, scale = desc[1], desc[5] if len(desc) > 5 else None
    kind: str | None = None
    if dialect == "postgresql" and isinstance(code, int):
        kind = _PG_OIDS.get(code)
    elif dialect in ("mysql", "mariadb") and isinstance(code, int):
        kind = _MYSQL_TYPES.get(code)
    elif isinstance(code, type):  # pyodbc reports the Python type
        kind = _PY_TYPES.get(code)
    elif code is not None:  # oracledb DbType
        kind = _ORACLE_TYPES.get(str(getattr(code, "name", "")).removeprefix("DB_TYPE_"))
    if kind == "decimal":
        return _decimal_kind(scale)
    return kind or "unknown"


_KIND_TEXT = {"decimal?": "numeric", "decimal0": "numeric(p,0)", "decimal": "fractional decimal"}


def kind_text(kind: str) -> str:
    return _KIND_TEXT.get(kind, kind)


_NUMBERS = {"int", "decimal0", "decimal?"}
_FITS = {
    "long": _NUMBERS | {"bool"},
    "int": _NUMBERS | {"bool"},
    "boolean": _NUMBERS | {"bool"},
    # float is left out on purpose: a binary float cannot be stored exactly (the encoder
    # rejects every such value), so the mapping is wrong, not just one row.
    "decimal": _NUMBERS | {"decimal"},
    "date": {"date", "datetime"},
    "timestamp": {"date", "datetime"},
}


def fits(avro: str, kind: str, dialect: str) -> bool:
    base = avro.strip().lower().split("(")[0]
    allowed = _FITS.get(base)
    if allowed is None or kind == "unknown":
        return True  # string fields take anything; unknown types are not judged
    if kind == "string" and base == "decimal":
        # Amounts kept as text (SQLite has no exact decimal; legacy CRMs do it too) are parsed
        # strictly per value: one that is not a number is a bad row under on_bad_row.
        return True
    if dialect == "sqlite" and kind == "string" and base in ("date", "timestamp"):
        return True  # SQLite keeps dates as text whatever the declared type
    return kind in allowed
