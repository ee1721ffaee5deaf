"""mysqlclient (`mysql+mysqldb`) made to hand the reader exactly PyMySQL's values.

The two drivers agree on integers (bigint unsigned too), Decimal, float, text (utf8mb4), bytes
for binary columns and NULL. They differ on dates: mysqlclient turns a value Python cannot hold
(MySQL's zero date '0000-00-00', '2024-00-15') into None, a silent NULL, where PyMySQL hands the
text on, which the encoder then rejects as a bad row naming the field. So DATE, DATETIME,
TIMESTAMP and TIME are decoded by PyMySQL's own converters on both drivers; the differential
test (tests/integration/source/test_mysql_drivers.py) holds them to identical messages.
"""

from __future__ import annotations

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

_PYMYSQL_DATES = {
    FIELD_TYPE.DATE: pc.convert_date,
    FIELD_TYPE.NEWDATE: pc.convert_date,
    FIELD_TYPE.DATETIME: pc.convert_datetime,
    FIELD_TYPE.TIMESTAMP: pc.convert_datetime,
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
