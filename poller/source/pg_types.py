"""psycopg2 type casters that never turn a PostgreSQL date or timestamp into another value.

psycopg2 reads 'infinity' as 9999-12-31 23:59:59.999999 and '-infinity' as 0001-01-01: the row
would be published with a date the source never held. A year outside 1..9999 (10000-01-01,
anything BC) makes it raise ValueError, which would stop every batch. These casters return the
value's text as `Unrepresentable` instead, which the encoder refuses as a bad row (the entity's
`on_bad_row` policy applies) and which binds back as the same literal when it is a cursor.
"""

from __future__ import annotations

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
