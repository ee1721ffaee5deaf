"""Is this database a replica? Its transaction lists show only its own sessions, not the
primary's whose rows arrive through replication with their stamps and ids already taken, so the
transaction horizon cannot see what may still commit there (the settle delay takes over)."""

from __future__ import annotations

import sqlalchemy as sa

# MariaDB lists every replication connection; MySQL 8.0.22+ says REPLICA, older ones SLAVE.
_REPLICA_STATUS = ("SHOW ALL SLAVES STATUS", "SHOW REPLICA STATUS", "SHOW SLAVE STATUS")


def mysql_replica_reason(conn: sa.Connection) -> str | None:
    """Why this MySQL/MariaDB server looks like a replica, or None."""
    if conn.execute(sa.text("SELECT @@read_only")).scalar():
        return "read_only is ON (a replica, or a server nobody but admins can write)"
    for stmt in _REPLICA_STATUS:
        try:
            rows = conn.execute(sa.text(stmt)).mappings().all()
        except sa.exc.DBAPIError as exc:
            conn.rollback()
            if exc.connection_invalidated:
                raise
            continue  # not this server's syntax, or no REPLICA MONITOR / REPLICATION CLIENT
        for row in rows:
            host = row.get("Master_Host") or row.get("Source_Host") or "?"
            return f"it replicates from {host} ({stmt} lists a replication connection)"
        return None
    # No grant to read the replica status: the status counter needs none (MariaDB).
    running = conn.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Slaves_running'")).all()
    if running and str(running[0][1]) not in ("0", "OFF"):
        return "Slaves_running is not 0"
    return None


def _first(conn: sa.Connection, stmt: str) -> object:
    """The first value of a statement, or None when this user may not run it."""
    try:
        return conn.execute(sa.text(stmt)).scalar()
    except sa.exc.DBAPIError as exc:
        conn.rollback()
        if exc.connection_invalidated:
            raise
        return None


# Not tested against a live server (like the rest of their horizon): golden tests only.
MSSQL_UPDATEABILITY = "SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Updateability') AS VARCHAR(20))"
ORACLE_ROLE = "SELECT database_role FROM v$database"


def mssql_replica_reason(conn: sa.Connection) -> str | None:
    """A readable Always On secondary (or a read-only database) is not written here."""
    if _first(conn, MSSQL_UPDATEABILITY) == "READ_ONLY":
        return "the database is READ_ONLY (an Always On readable secondary?)"
    return None


def oracle_replica_reason(conn: sa.Connection) -> str | None:
    """A Data Guard standby (v$database needs SELECT_CATALOG_ROLE; unknown without it)."""
    role = _first(conn, ORACLE_ROLE)
    if role is not None and str(role) != "PRIMARY":
        return f"its database_role is {role}"
    return None


REPLICA_CHECKS = {
    "mysql": mysql_replica_reason,
    "mssql": mssql_replica_reason,
    "oracle": oracle_replica_reason,
}


def replica_reason(conn: sa.Connection, dialect: str) -> str | None:
    check = REPLICA_CHECKS.get(dialect)
    return check(conn) if check else None
