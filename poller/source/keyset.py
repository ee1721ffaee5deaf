"""One keyset range API for every reader of an entity's rows: live batches, backfills, verify
pages and repair/reconcile look-ups (see docs/keyset.md).

A `Keyset` is an ordered list of columns for one dialect: the first is the cursor (its
`CursorType` travels exactly, see exact.py), the others break ties. Each column carries how a
value compared with it is bound (`ColumnBind`): the column's own type, so that SQL Server
compares a VARCHAR key with a VARCHAR parameter and not an NVARCHAR one, whose order differs
under `SQL_*` collations. A `KeyRange` is a frozen value: rows strictly after a position,
within low/high bounds on the first column, under an optional extra condition. The keyset
turns a range into WHERE clauses (built once per shape, so the SQL text is stable) and into
typed parameters. Row values `(a, b) > (x, y)` and `IN ((..), (..))` are used only where the
dialect has them (SQL Server and Oracle get the expanded OR/AND forms), and look-ups by key
are cut into chunks under Oracle's 1,000-item IN list and SQL Server's 2,100 parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from poller.batch import BEGINNING, Position
from poller.errors import NoProgressError
from poller.source.exact import (
    ROW_VALUE_DIALECTS,
    CursorType,
    RawType,
    cursor_bind,
    cursor_bind_value,
    keyset_after,
)


@dataclass(frozen=True)
class ColumnBind:
    """How a value compared with one column is bound. `type_` types the parameter for the
    driver (SQLAlchemy's setinputsizes); `mssql_char` is the column's non-Unicode character
    type on SQL Server (e.g. "VARCHAR(40)"): the parameter is cast to it in the SQL text too,
    because the live reader executes on the driver's cursor, where pyodbc sends every str as
    NVARCHAR."""

    type_: sa.types.TypeEngine[Any] | None = None
    mssql_char: str | None = None


UNTYPED = ColumnBind()


@dataclass(frozen=True)
class KeyRange:
    """Rows strictly after `after` (BEGINNING: from the first), with the first keyset column
    at or above `low` and at or below `high` (strictly below when `high_exclusive`), and
    the operator's `condition` (already validated, see where.py) as one AND-ed term."""

    after: Position = BEGINNING
    low: object | None = None
    high: object | None = None
    high_exclusive: bool = False
    condition: str | None = None


@dataclass(frozen=True, eq=False)
class Keyset:
    """The columns of a keyset order for one dialect, and how values are bound to them.

    `columns[0]` is the cursor; with one column the position's key is ignored (the cursor is
    its own tie-breaker). `not_null` makes a range from the beginning skip NULL cursors (a
    NULL never becomes a position). Parameters are named `<prefix>_cursor`, `<prefix>_key`,
    `<prefix>_key1`... for the position (`wm_` by default), `low` and `upper` for the bounds; a
    second keyset in one statement (verify's key pages beside the watermark's "after") takes
    another prefix, so neither's values overwrite the other's.
    """

    dialect: str
    columns: tuple[ColumnElement[Any], ...]
    cursor_type: CursorType = field(default_factory=CursorType)
    binds: tuple[ColumnBind, ...] = ()
    not_null: bool = True
    prefix: str = "wm"
    _cache: dict[tuple[object, ...], list[ColumnElement[bool]]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        # Read on every batch: computed once (the dataclass is frozen).
        object.__setattr__(self, "keys", self.columns[1:])
        object.__setattr__(self, "_key_names", tuple(self.key_names(len(self.columns) - 1)))
        object.__setattr__(self, "_cursor_name", f"{self.prefix}_cursor")
        object.__setattr__(self, "_sqlite", self.dialect == "sqlite")

    keys: tuple[ColumnElement[Any], ...] = field(init=False, repr=False)
    _key_names: tuple[str, ...] = field(init=False, repr=False)
    _cursor_name: str = field(init=False, repr=False)
    _sqlite: bool = field(init=False, repr=False)

    @property
    def cursor(self) -> ColumnElement[Any]:
        return self.columns[0]

    def bind_of(self, i: int) -> ColumnBind:
        return self.binds[i] if i < len(self.binds) else UNTYPED

    # ------------------------------------------------------------------ parameters

    def key_names(self, n: int) -> list[str]:
        p = self.prefix
        return [f"{p}_key" if i == 0 else f"{p}_key{i}" for i in range(n)]

    def position_of(self, values: Sequence[object]) -> Position:
        """The position of a row whose keyset columns hold `values` (in order)."""
        if len(values) == 1:
            return Position(values[0])
        rest = tuple(values[1:])
        return Position(values[0], rest[0] if len(rest) == 1 else rest)

    def kind(self, position: Position) -> str:
        """ "none" (from the beginning), "cursor" (after a cursor value) or "keyset"."""
        if position.cursor is None:
            return "none"
        if position.key is None or not self.keys:
            return "cursor"
        return "keyset"

    def cursor_value(self, value: object) -> object:
        """A cursor value as bound: exact text on SQL Server/Oracle, fixed-width text on
        SQLite (whose default adapter drops a zero microsecond part, and text compares)."""
        if self._sqlite and isinstance(value, dt.datetime):
            value = value.isoformat(sep=" ", timespec="microseconds")
        return cursor_bind_value(self.dialect, value, self.cursor_type)

    def position_params(self, position: Position) -> dict[str, object]:
        if position.cursor is None:
            return {}
        params: dict[str, object] = {self._cursor_name: self.cursor_value(position.cursor)}
        key, names = position.key, self._key_names
        if key is None or not names:
            return params
        keys = key if len(names) > 1 else (key,)
        if not isinstance(keys, tuple) or len(keys) != len(names):
            raise ValueError(f"stored key {key!r} does not fit the {len(names)} key column(s)")
        if self._sqlite:
            keys = tuple(self._plain_value(v) for v in keys)
        params.update(zip(names, keys, strict=True))
        return params

    def _plain_value(self, value: object) -> object:
        if self._sqlite and isinstance(value, dt.datetime):
            return value.isoformat(sep=" ", timespec="microseconds")
        return value

    def params(self, rng: KeyRange) -> dict[str, object]:
        params = self.position_params(rng.after)
        if rng.low is not None:
            params["low"] = self.cursor_value(rng.low)
        if rng.high is not None:
            params["upper"] = self.cursor_value(rng.high)
        return params

    # ------------------------------------------------------------------ SQL

    def bind(self, i: int, name: str) -> ColumnElement[Any]:
        """The parameter compared with column `i`, typed as the column."""
        if i == 0 and self.cursor_type.text_cursor:
            return cursor_bind(self.dialect, name, self.cursor_type)
        cb = self.bind_of(i)
        param: ColumnElement[Any] = sa.bindparam(name, type_=cb.type_)
        if self.dialect == "mssql" and cb.mssql_char is not None:
            return sa.cast(param, RawType(cb.mssql_char))
        return param

    def after_clauses(self, kind: str) -> list[ColumnElement[bool]]:
        c = self.cursor
        if kind == "none":
            return [c.is_not(None)] if self.not_null else []
        wm_c = self.bind(0, self._cursor_name)
        if kind == "cursor":
            return [c > wm_c]
        names = self.key_names(len(self.keys))
        wm_k = [self.bind(i + 1, n) for i, n in enumerate(names)]
        return keyset_after(self.dialect, c, wm_c, list(self.keys), wm_k)

    def where(self, rng: KeyRange) -> list[ColumnElement[bool]]:
        """The range's WHERE terms (AND-ed), the same objects for the same shape."""
        shape = (
            self.kind(rng.after),
            rng.low is not None,
            rng.high is not None,
            rng.high_exclusive,
            rng.condition,
        )
        cached = self._cache.get(shape)
        if cached is not None:
            return cached
        where = self.after_clauses(self.kind(rng.after))
        c = self.cursor
        if rng.low is not None:
            where.append(c >= self.bind(0, "low"))
        if rng.high is not None:
            upper = self.bind(0, "upper")
            where.append(c < upper if rng.high_exclusive else c <= upper)
        if rng.condition is not None:
            # Validated and re-rendered by where.py: one boolean expression, no comment, no
            # subquery. A ':' in it stays text, not a parameter.
            cond = sa.text("(" + rng.condition.replace(":", "\\:") + ")")
            where.append(cond)  # type: ignore[arg-type]
        self._cache[shape] = where
        return where

    def order_by(self) -> list[ColumnElement[Any]]:
        return list(self.columns)

    # ------------------------------------------------------------------ look-ups by key

    def in_keys(self, n: int) -> ColumnElement[bool]:
        """ "The row's key is one of n keys": `IN` for one column, `(a, b) IN (...)` where row
        values exist, else `(a = ? AND b = ?) OR ...` (SQL Server, Oracle). Parameters
        `k<i>_<j>` for key i, column j (see `in_params`)."""
        cols = self.columns
        if len(cols) == 1 or self.dialect in ROW_VALUE_DIALECTS:
            rows = [
                sa.tuple_(*(self.bind(j, f"k{i}_{j}") for j in range(len(cols))))
                if len(cols) > 1
                else self.bind(0, f"k{i}_0")
                for i in range(n)
            ]
            target = sa.tuple_(*cols) if len(cols) > 1 else cols[0]
            return target.in_(rows)
        return sa.or_(
            *(
                sa.and_(*(col == self.bind(j, f"k{i}_{j}") for j, col in enumerate(cols)))
                for i in range(n)
            )
        )

    def in_params(self, keys: Sequence[object]) -> dict[str, object]:
        params: dict[str, object] = {}
        for i, key in enumerate(keys):
            values = tuple(key) if isinstance(key, tuple | list) else (key,)
            for j, v in enumerate(values):
                params[f"k{i}_{j}"] = self._plain_value(v)
        return params

    def max_keys_per_statement(self, other_params: int = 10) -> int:
        """How many keys one look-up may hold: Oracle allows 1,000 items in an IN list, SQL
        Server 2,100 parameters a statement, and the expanded OR form is kept to 200 keys
        (parsers nest ORs as a tree: SQLite stops at depth 1,000, SQL Server runs out of
        stack long before its parameter limit)."""
        per_key = len(self.columns)
        n = 1000
        if per_key > 1 and self.dialect not in ROW_VALUE_DIALECTS:
            n = 200
        if self.dialect == "mssql":
            n = min(n, (2100 - other_params) // per_key)
        return max(1, n)


def chunks(items: Sequence[object], size: int) -> list[Sequence[object]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ensure_progress(what: str, start: Position, last: Position | None, n_rows: int,
                    batch_size: int) -> None:  # fmt: skip
    """The progress guard: a batch must end strictly after where it started. One that ends
    where it began would be read again and again (a cursor that lost precision on the way back,
    a NULL position): stop, naming the entity, instead of looping or publishing duplicates."""
    if not n_rows or last is None:
        return
    if last == start or (start.cursor is not None and last.cursor is None):
        full = "a full batch" if n_rows >= batch_size else "a batch"
        raise NoProgressError(
            f"{what}: {full} of {n_rows} rows after {start} ends at the "
            "same position: the stored cursor does not compare equal to the column's own value "
            "(precision lost between the driver and the database?). Nothing more was "
            "published; cast the cursor column in a `query:` to a type that round-trips "
            "exactly, or report the column type."
        )
