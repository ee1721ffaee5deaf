"""psycopg2 type casters that never turn a PostgreSQL date or timestamp into another value.

psycopg2 reads 'infinity' as 9999-12-31 23:59:59.999999 and '-infinity' as 0001-01-01: the row
would be published with a date the source never held. A year outside 1..9999 (10000-01-01,
anything BC) makes it raise ValueError, which would stop every batch. These casters return the
value's text as `Unrepresentable` instead, which the encoder refuses as a bad row (the entity's
`on_bad_row` policy applies) and which binds back as the same literal when it is a cursor.

They cost one Python call per value (~30% of the reader), so a batch is read with psycopg2's C
casters first (`use_c_casters`) and read again with these only when it may hold one of the
driver's sentinels or a year it could not read (`may_hold_sentinels`, or a ValueError).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import psycopg2.extensions as ext

from poller.avro.values import Unrepresentable

_INFINITE = frozenset({"infinity", "-infinity"})


def _caster(base: Any, name: str, what: str) -> Any:
    # On the hot path for every date/timestamp value: one Python call around the C caster.
    def cast(value: str | None, cur: Any, _base: Any = base) -> object:
        if value is None:
            return None
        first = value[0]
        if (first == "i" or first == "-") and value in _INFINITE:
            return Unrepresentable(
                value,
                f"PostgreSQL {value!r} has no {what} value in Avro; map it in a `query:` "
                f"(e.g. NULLIF(col, '{value}')) or fix the row",
            )
        try:
            return _base(value, cur)
        except ValueError as exc:  # year 10000+, or BC
            return Unrepresentable(value, f"{value!r} is outside the years 1..9999 ({exc})")

    return ext.new_type(base.values, name, cast)


_CASTERS = (
    _caster(ext.PYDATETIME, "POLLER_TIMESTAMP", "timestamp"),
    _caster(ext.PYDATETIMETZ, "POLLER_TIMESTAMPTZ", "timestamp"),
    _caster(ext.PYDATE, "POLLER_DATE", "date"),
)


def register(dbapi_conn: Any) -> None:
    """Install the casters on one psycopg2 connection (not process-wide)."""
    for caster in _CASTERS:
        ext.register_type(caster, dbapi_conn)


# --- the fast read: psycopg2's C casters, and a re-read only where they could have lied -------

# type oids of date, timestamp and timestamptz: the columns the C casters can turn into another
# value ('infinity' -> datetime.max) or fail on (year 10000, BC)
_CHECKED_OIDS = frozenset({*ext.PYDATE.values, *ext.PYDATETIME.values, *ext.PYDATETIMETZ.values})
_C_CASTERS = (ext.PYDATETIME, ext.PYDATETIMETZ, ext.PYDATE)
# A sentinel is the largest or smallest value Python has; any wall time this close to either end
# (in any UTC offset) makes the batch go through the exact casters. A genuine value there only
# costs that batch a second read.
_HIGH = dt.datetime(9999, 12, 30)
_LOW = dt.datetime(1, 1, 3)


def use_c_casters(cursor: Any) -> None:
    """psycopg2's own date/timestamp casters on this cursor only (one C call per value instead
    of a Python one); the connection keeps the exact ones for the re-read."""
    for caster in _C_CASTERS:
        ext.register_type(caster, cursor)


def may_hold_sentinels(rows: Sequence[Sequence[object]], description: Any) -> bool:
    """Whether a batch read with the C casters may hold a value they changed: a date/timestamp
    column whose extreme values sit at the ends of Python's range. Runs at C speed (map, filter,
    min, max); one pass per date/timestamp column."""
    if not rows or not description:
        return False
    for i, col in enumerate(description):
        if col.type_code not in _CHECKED_OIDS:
            continue
        values = list(filter(None, map(itemgetter(i), rows)))  # drops NULLs (dates are truthy)
        if not values:
            continue
        try:
            hi, lo = max(values), min(values)
        except (OverflowError, TypeError):  # mixed or extreme offsets: let the exact casters look
            return True
        if _wall(hi) >= _HIGH or _wall(lo) <= _LOW:
            return True
    return False


def _wall(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    assert isinstance(value, dt.date)
    return dt.datetime(value.year, value.month, value.day)
