"""Which driver a MySQL/MariaDB URL without one means.

`mysql://` and `mariadb://` (no `+driver`) take mysqlclient (`mysqldb`, libmariadb's C protocol
parser) when it is installed: it reads the same rows for about a third less CPU than PyMySQL
(docs/mysql-driver.md). Without it, and when TLS is required (the TLS settings and their tests
are PyMySQL's), they take PyMySQL. A URL that names its driver keeps it.
"""

from __future__ import annotations

import importlib.util

from sqlalchemy.engine import URL

_BARE = ("mysql", "mariadb")


def mysqlclient_installed() -> bool:
    return importlib.util.find_spec("MySQLdb") is not None


def with_driver(url: URL, require_tls: bool = False) -> URL:
    """The URL with its MySQL driver chosen; any other URL unchanged."""
    if url.drivername not in _BARE:
        return url
    fast = mysqlclient_installed() and not require_tls
    return url.set(drivername=f"{url.drivername}+{'mysqldb' if fast else 'pymysql'}")
