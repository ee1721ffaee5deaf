"""mysqlclient (`mysql+mysqldb`) made to hand the reader exactly PyMySQL's values.

The two drivers agree on integers (bigint unsigned too), Decimal, float, text (utf8mb4), bytes
for binary columns and NULL. They differ on dates: mysqlclient turns a value Python cannot hold
(MySQL's zero date '0000-00-00', '2024-00-15') into None, a silent NULL, where PyMySQL hands the
text on, which the encoder then rejects as a bad row naming the field. So DATE, DATETIME,
TIMESTAMP and TIME are decoded on mysqlclient by PyMySQL's rules (its converters, with a C fast
path for the server's usual form); the differential test (tests/integration/source/
test_mysql_drivers.py) holds both drivers to identical values and messages.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pymysql
from pymysql import converters as pc
from pymysql.constants import FIELD_TYPE

try:  # optional: the accelerator for mysql:// URLs
    import MySQLdb
    from MySQLdb import converters as mc
except ImportError:  # pragma: no cover - exercised by the run without optional packages
    MySQLdb = None
    mc = None

# Every error either MySQL driver raises (the time zone check catches them by class).
MYSQL_ERRORS: tuple[type[Exception], ...] = (pymysql.err.MySQLError,) + (
    (MySQLdb.MySQLError,) if MySQLdb is not None else ()
)

_from_iso_datetime = dt.datetime.fromisoformat
_from_iso_date = dt.date.fromisoformat


def datetime_value(s: str) -> object:
    """PyMySQL's convert_datetime, at C speed for the server's own form
    `YYYY-MM-DD HH:MM:SS[.f{1,6}]` (about a twentieth of the cost); anything else, and any text
    Python rejects (zero dates), goes through PyMySQL's converter itself."""
    n = len(s)
    if (n == 19 or 21 <= n <= 26) and s[10] == " " and s[19:20] in ("", "."):
        try:
            v = _from_iso_datetime(s)
        except ValueError:
            return pc.convert_datetime(s)
        if v.tzinfo is None:  # a zone suffix is not the server's form: PyMySQL decides
            return v
    return pc.convert_datetime(s)


def date_value(s: str) -> object:
    """PyMySQL's convert_date, at C speed for `YYYY-MM-DD`."""
    if len(s) == 10 and s[4] == "-" and s[7] == "-":
        try:
            return _from_iso_date(s)
        except ValueError:
            pass
    return pc.convert_date(s)


_PYMYSQL_DATES = {
    FIELD_TYPE.DATE: date_value,
    FIELD_TYPE.NEWDATE: date_value,
    FIELD_TYPE.DATETIME: datetime_value,
    FIELD_TYPE.TIMESTAMP: datetime_value,
    FIELD_TYPE.TIME: pc.convert_timedelta,
}


def mysqldb_conversions() -> dict[Any, Any]:
    """mysqlclient's conversion table with PyMySQL's date and time decoders."""
    assert mc is not None, "mysqlclient is not installed"
    conv = dict(mc.conversions)
    conv.update(_PYMYSQL_DATES)
    return conv


def mysqldb_args(pymysql_args: dict[str, Any]) -> dict[str, Any]:
    """PyMySQL's connect arguments as mysqlclient takes them: whole seconds (it refuses a
    float), and the conversion table above."""
    out = {k: max(1, math.ceil(v)) for k, v in pymysql_args.items()}
    out["conv"] = mysqldb_conversions()
    return out
