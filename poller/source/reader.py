"""Reads batches from the source database: engine set-up, streaming reads, error translation and
the start-up check of an entity's columns.

Every batch is one short transaction on a pooled connection: a long-lived transaction would pin
old row versions (PostgreSQL vacuum, InnoDB purge) on the retailer's production database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.compiler import SQLCompiler

from poller.batch import BEGINNING, Batch, Position
from poller.config import EntityConfig, Mode, SourceConfig
from poller.errors import (
    ConfigError,
    PollerError,
    PrivilegeError,
    SchemaMismatchError,
    SourceError,
)
from poller.source import engine as _engine
from poller.source.bounds import ReadBounds
from poller.source.cursors import open_cursor, read_all
from poller.source.exact import CursorType
from poller.source.horizon import HorizonAccess
from poller.source.horizon_writers import own_sessions
from poller.source.innodb_cache import StaleList
from poller.source.native_pg import NativeReader
from poller.source.probe import prepare
from poller.source.query import (
    AnySelect,
    EntityQuery,
    column_kind,
    description_kind,
    fits,
    is_identifier,
    kind_text,
    split_table,
)
from poller.source.suggest import did_you_mean, query_columns

log = logging.getLogger(__name__)

make_engine = _engine.make_engine  # it lived here first; callers import it from this module


# Rows per fetchmany(): large enough that the per-call overhead vanishes, small enough that a
# server-side cursor round trip stays short.
_CHUNK = 5_000
_BOUND_REUSE_S = 1.0

# ------------------------------------------------------------------------------ errors

# MySQL/MariaDB error numbers that mean the SQL does not fit the schema. PyMySQL raises several
# of them (e.g. 1054 unknown column) as OperationalError, so the class alone cannot tell.
_MYSQL_SCHEMA_ERRORS = frozenset(
    {1049, 1052, 1054, 1060, 1064, 1109, 1146, 1241, 1247, 1248, 1267, 1305, 1630}
)
_ORACLE_SCHEMA_ERRORS = tuple(
    f"ORA-{n:05d}" for n in (904, 907, 918, 932, 933, 936, 942, 1722)
)  # invalid identifier, missing parenthesis, ambiguous column, type, syntax, no table, number


# Access denied: database, table, column, or a command needing a privilege (1227).
_MYSQL_PRIVILEGE_ERRORS = frozenset({1044, 1142, 1143, 1227})


def _is_privilege_error(orig: BaseException) -> bool:
    """A missing grant: not a mapping that is wrong, and a DBA may grant it back any time."""
    pgcode = getattr(orig, "pgcode", None)
    if isinstance(pgcode, str):
        return pgcode == "42501"  # insufficient_privilege
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_PRIVILEGE_ERRORS
    text = str(orig)
    # SQL Server 229/230 share SQLSTATE 42000 with syntax errors; Oracle: insufficient privileges
    return "permission was denied" in text or "ORA-01031" in text


def _cause(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    text = lines[0] if lines else type(orig).__name__
    return f"{type(orig).__name__}: {text[:500]}"


def _is_schema_error(orig: BaseException, wrapper: BaseException) -> bool:
    pgcode = getattr(orig, "pgcode", None)
    if isinstance(pgcode, str):  # 42: syntax/undefined object/privilege, 22: data, 0A: unsupported
        return pgcode[:2] in ("42", "22", "0A")
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):  # SQLITE_ERROR: SQL error or missing table/column
        return sqlite_code & 0xFF == 1  # (BUSY, LOCKED, IOERR, CANTOPEN... are transient)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (errno, message)
        return args[0] in _MYSQL_SCHEMA_ERRORS
    if args and isinstance(args[0], str) and len(args[0]) == 5:  # pyodbc: (SQLSTATE, message)
        return args[0][:2] in ("42", "22")
    if any(code in str(orig) for code in _ORACLE_SCHEMA_ERRORS):
        return True
    names = {type(e).__name__ for e in (orig, wrapper)}
    return bool(names & {"ProgrammingError", "DataError"})


def translate_error(exc: BaseException, what: str, source: SourceConfig) -> PollerError:
    """SQLAlchemy or raw driver error -> SourceError (retry after a backoff) or a terminal one.

    Anything not recognised as a schema/SQL problem counts as transient: retrying a query that
    is wrong costs log lines, stopping on a network blip loses availability.
    """
    if isinstance(exc, sa_exc.DBAPIError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        orig = getattr(exc, "orig", None) or exc
        invalidated = getattr(exc, "connection_invalidated", False)
    elif isinstance(exc, sa_exc.SQLAlchemyError):  # no driver involved: URL, driver module, ...
        return ConfigError([f"source.url ({source.safe_url}): {_cause(exc)}"])
    else:
        orig, invalidated = exc, False
    if not invalidated and _is_privilege_error(orig):
        return PrivilegeError(
            f"{what}: the database user lacks a privilege on {source.safe_url} ({_cause(exc)}); "
            "grant it (e.g. GRANT SELECT ON the table TO the poller's user)"
        )
    if not invalidated and _is_schema_error(orig, exc):
        return SchemaMismatchError(
            f"{what}: the query does not fit the source database {source.safe_url} "
            f"({_cause(exc)}); check the table, columns and field mapping in the config"
        )
    return SourceError(f"{what}: source database {source.safe_url} failed: {_cause(exc)}")


@contextlib.contextmanager
def _connection(engine: sa.Engine, what: str, source: SourceConfig) -> Iterator[sa.Connection]:
    """A pooled connection whose errors (SQLAlchemy's and the raw driver's) come out translated.

    A connection that failed with a transient error is invalidated before it goes back to the
    pool, so the next attempt opens a fresh one even when the driver's message was not
    recognised as a disconnect.
    """
    driver_error: type[Exception] = getattr(engine.dialect.loaded_dbapi, "Error", Exception)
    conn: sa.Connection | None = None
    try:
        conn = engine.connect()
        yield conn
    except (sa_exc.SQLAlchemyError, driver_error) as exc:
        err = translate_error(exc, what, source)
        if isinstance(err, SourceError) and conn is not None and not conn.invalidated:
            with contextlib.suppress(Exception):
                conn.invalidate()
        raise err from exc
    finally:
        if conn is not None:
            conn.close()


# For the other readers of the source (verify): same translation, same invalidation.
source_connection = _connection


def to_zone(value: object, zone: ZoneInfo) -> dt.datetime:
    """A database "now" (UTC naive, aware, or SQLite text in UTC) as a naive time in `zone`."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise SourceError(f"the database returned {type(value).__name__} for its current time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(zone).replace(tzinfo=None)


# ------------------------------------------------------------------------------ reading


class SourceReader:
    """Reads one entity's batches; holds no connection between batches (thread-safe as long as
    one thread fetches at a time, which the run loop's prefetcher guarantees)."""

    def __init__(
        self,
        engine: sa.Engine,
        query: EntityQuery,
        entity: EntityConfig,
        source: SourceConfig,
        access: HorizonAccess | None = None,
    ) -> None:
        self._engine = engine
        self._query = query
        self._entity = entity
        self._source = source
        self._zone = ZoneInfo(source.timezone)
        self._access = access
        self._bounds = ReadBounds(
            engine.dialect.name, query, entity, self._zone, access, own_sessions(engine)
        )
        self._bound: tuple[float, dt.datetime | None, object, float, str] = (
            -1e9, None, None, 0.0, "")  # fmt: skip
        self._full = False  # the last batch was full: more rows wait below the bound
        self._prepared = False
        self._what = f"entity {query.name!r}"
        self._n = query.n_fields
        self._chunk = min(_CHUNK, entity.batch_size)
        self._driver = engine.dialect.driver
        self._compiled: dict[AnySelect, SQLCompiler] = {}
        self.exact_rereads = 0  # PostgreSQL batches read again with the exact casters
        self.native: NativeReader | None = None  # set by the pipeline where the path applies

    def fetch(self, position: Position) -> Batch:
        """The next batch (at most batch_size rows) after `position`, in keyset order."""
        db_now: dt.datetime | None = None
        holdback, held = 0.0, ""
        safe_at: float | None = time.monotonic()
        with _connection(self._engine, self._what, self._source) as conn:
            self._prepare(conn)
            if self._access is not None and self._access.lost is not None:
                self._access.recheck(conn)
                conn.rollback()
            upper: object | None = None
            try:
                if self._entity.is_time_mode and self._bound_reusable():
                    db_now, upper, holdback, held = self._bound[1:]
                    safe_at = self._bound[0] - holdback
                elif self._entity.is_time_mode:
                    now_utc = self._now_utc(conn)
                    db_now = now_utc.astimezone(self._zone).replace(tzinfo=None)
                    upper, holdback, held = self._bounds.time_bound(conn, now_utc)
                    self._bound = (time.monotonic(), db_now, upper, holdback, held)
                    safe_at = self._bound[0] - holdback
                elif self._bounds.id_bounded():
                    upper, holdback, held = self._bounds.id_bound(conn, position)
                    safe_at = self._bounds.ids.safe_at
                    if upper is None:  # no id is known to be safe yet
                        return Batch([], None, None, holdback, safe_at, held)
            except StaleList as exc:  # nothing is known safe this turn: read nothing, say why
                conn.rollback()
                return Batch([], None, None, 0.0, None, str(exc))
            stmt, params = self._query.batch(position, upper)
            sql, values = self._driver_statement(stmt, params)
            dbapi_conn = conn.connection.dbapi_connection
            assert dbapi_conn is not None  # an open Connection always has one
            native = self.native.read(dbapi_conn, sql, values) if self.native else None
            if native is not None:
                self._full = native.rows >= self._entity.batch_size
                rows: list[Sequence[object]] = [()] * native.rows
                return Batch(
                    rows, native.last, db_now, holdback, safe_at, held, encoded=native.encoded
                )
            try:
                rows = self._read(dbapi_conn, sql, values)
            except (ValueError, OverflowError) as exc:
                # The driver could not build a Python value (e.g. a timestamptz that falls in
                # year 10000 once shown in source.timezone). Retrying cannot help.
                raise SchemaMismatchError(
                    f"{self._what}: the driver cannot convert a value of the batch after "
                    f"{position}: {exc}. Fix the row, or cast the column in a `query:`."
                ) from exc
        last = self._query.layout.position(rows[-1]) if rows else None
        self._full = len(rows) >= self._entity.batch_size
        return Batch(rows, last, db_now, holdback, safe_at, held)

    def _bound_reusable(self) -> bool:
        """While full batches stream in, the bound of the last second is reused: it is never
        ahead of a fresh one (the oldest open start and now only move forward), and it saves
        two statements per batch during a bulk copy."""
        return self._full and time.monotonic() - self._bound[0] < _BOUND_REUSE_S

    @property
    def horizon_active(self) -> bool:
        """Whether open transactions bound the batches (probed once at start)."""
        return self._bounds.horizon_active

    def _prepare(self, conn: sa.Connection) -> None:
        if not self._prepared:
            prepare(conn, self._query, self._entity)
            conn.rollback()
            self._prepared = True

    def cursor_type(self) -> CursorType:
        """The cursor column's kind, zone-awareness and exact type (read once)."""
        with _connection(self._engine, self._what, self._source) as conn:
            self._prepare(conn)
        return self._query.cursor_type

    def _now_utc(self, conn: sa.Connection) -> dt.datetime:
        value = conn.execute(self._query.now()).scalar_one()
        return to_zone(value, ZoneInfo("UTC")).replace(tzinfo=dt.UTC)

    def _driver_statement(self, stmt: AnySelect, params: dict[str, object]) -> tuple[str, Any]:
        """SQL text and parameters in the driver's own paramstyle.

        Rows are read from the driver's cursor, not through SQLAlchemy's Result: building a Row
        per row (and its buffering deque) cost ~20% of the raw fetch rate. SQLAlchemy still
        renders the SQL (compiled once per statement shape); the expanded state inlines what it
        renders at execution time (SQL Server TOP n, Oracle FETCH FIRST n: the configured batch
        size, never data). The bind parameters are untyped, so there are no bind processors.
        """
        compiled = self._compiled.get(stmt)
        if compiled is None:
            compiled = self._compiled[stmt] = stmt.compile(dialect=self._engine.dialect)
        state = compiled.construct_expanded_state(params)
        if self._engine.dialect.positional:
            return state.statement, state.positional_parameters
        return state.statement, state.parameters

    def _read(self, dbapi_conn: Any, sql: str, values: Any) -> list[Sequence[object]]:
        if self._driver != "psycopg2":
            return self._read_all(dbapi_conn, sql, values)[0]
        from poller.source import pg_types  # psycopg2 is only imported for PostgreSQL

        # psycopg2's C casters first; the exact (slow) ones only for a batch where the C ones
        # may have changed a value ('infinity') or could not read one (year 10000, BC).
        cur = open_cursor(dbapi_conn, self._driver, self._chunk)
        pg_types.use_c_casters(cur)
        try:
            rows, description = read_all(cur, sql, values, self._chunk)
            if not pg_types.may_hold_sentinels(rows, description):
                return rows
        except ValueError:
            pass
        self.exact_rereads += 1
        return self._read_all(dbapi_conn, sql, values)[0]

    def _read_all(self, dbapi_conn: Any, sql: str, values: Any) -> tuple[list[Any], Any]:
        cur = open_cursor(dbapi_conn, self._driver, self._chunk)
        return read_all(cur, sql, values, self._chunk)

    def db_now(self) -> object:
        """The database's current time as a naive datetime in `source.timezone`."""
        with _connection(self._engine, self._what, self._source) as conn:
            return self._now(conn)

    def max_cursor(self) -> object:
        """The newest cursor value of this tenant's rows (None for an empty table)."""
        with _connection(self._engine, self._what, self._source) as conn:
            return conn.execute(self._query.max_cursor()).scalar_one()

    def _now(self, conn: sa.Connection) -> dt.datetime:
        return to_zone(conn.execute(self._query.now()).scalar_one(), self._zone)

    def close(self) -> None:
        """Nothing to release: connections go back to the pool after every batch. The engine is
        shared by the entities of a source; its owner disposes of it."""


# ------------------------------------------------------------------------------ check


def check_entity(
    engine: sa.Engine, query: EntityQuery, entity: EntityConfig, field_types: Mapping[str, str]
) -> list[str]:
    """Every problem of the entity's mapping against the live database (empty: all fine).

    Each column and expression is probed on its own with a zero-row SELECT, so one run lists
    every problem. Connection failures raise SourceError instead of being listed.
    """
    what = f"entity {query.name!r}"
    dialect = engine.dialect.name
    problems: list[str] = []
    with _connection(engine, what, query.source) as conn:

        def probe(expr: sa.ColumnElement[object]) -> tuple[str | None, str]:
            try:
                result = conn.execute(query.probe(expr))
                desc = result.cursor.description[0] if result.cursor is not None else None
                result.close()
                return None, description_kind(dialect, desc) if desc else "unknown"
            except sa_exc.DBAPIError as exc:
                err = translate_error(exc, what, query.source)
                if isinstance(err, SourceError):
                    raise
                conn.rollback()  # PostgreSQL refuses more statements in a failed transaction
                return _cause(exc), "unknown"

        reflected: dict[str, str] = {}
        existing: list[str] = []  # column names, for "did you mean" on a typo
        if entity.table is not None:
            schema, table = split_table(entity.table)
            try:
                columns = sa.inspect(conn).get_columns(table, schema=schema)
            except sa_exc.NoSuchTableError:
                return [f"{what}: table {entity.table!r} does not exist (or is not visible)"]
            reflected = {c["name"]: column_kind(c["type"]) for c in columns}
            existing = list(reflected)
        else:
            error, _ = probe(sa.literal_column("*"))
            if error is not None:
                return [f"{what}: the query fails: {error}"]
            existing = query_columns(conn, query)

        def kind_of(column: str, probed: str) -> str:
            for name, kind in reflected.items():
                if name == column or (dialect != "postgresql" and name.lower() == column.lower()):
                    return kind
            return probed

        for field, mapping in entity.fields.items():
            plain = is_identifier(mapping)
            error, kind = probe(query.field_expression(field))
            label = f"{what}: field {field!r} ({'column' if plain else 'expression'} {mapping!r})"
            if error is not None:
                hint = did_you_mean(mapping, existing) if plain else ""
                problems.append(f"{label}: {'not found' if plain else 'fails'}{hint}: {error}")
                continue
            kind = kind_of(mapping, kind) if plain else kind
            avro = field_types.get(field)
            if avro is not None and not fits(avro, kind, dialect):
                problems.append(f"{label}: a {kind_text(kind)} column cannot fill Avro {avro}")

        mode = entity.batching.mode
        roles = [("batching.column", entity.batching.column)]
        roles += [("key", k) for k in entity.key_columns]
        if entity.batching.id_column is not None:
            roles.append(("batching.id_column", entity.batching.id_column))
        if query.source.tenant_column is not None:
            roles.append(("source.tenant_column", query.source.tenant_column))
        if entity.deletes is not None:
            roles.append(("deletes.column", entity.deletes.column))
        for role, column in roles:
            error, kind = probe(query.column(column))
            if error is not None:
                hint = did_you_mean(column, existing)
                problems.append(f"{what}: {role} column {column!r} not found{hint}: {error}")
                continue
            if role != "batching.column":
                continue
            kind = kind_of(column, kind)
            wanted = "long" if mode is Mode.ID else "timestamp"
            if not fits(wanted, kind, dialect) or (mode is Mode.ID and kind == "bool"):
                need = "an integer" if mode is Mode.ID else "a date/timestamp"
                problems.append(
                    f"{what}: batching.column {column!r} is {kind_text(kind)}; "
                    f"mode {mode.value} needs {need} column"
                )

        if not problems:  # the whole statement, as the reader will run it
            stmt, params = query.batch(BEGINNING, None)
            try:
                conn.execute(stmt.where(sa.false()), params).close()
            except sa_exc.DBAPIError as exc:
                err = translate_error(exc, what, query.source)
                if isinstance(err, SourceError):
                    raise
                problems.append(f"{what}: the batch query fails: {_cause(exc)}")
    return problems
