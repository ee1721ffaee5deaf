"""SourceReader and check_entity against real PostgreSQL, MariaDB and SQLite (a file).

Each test gets a fresh database (`pg_url` / `mariadb_url` fixtures, which fail when the
service is down) and writes its rows through a separate read-write engine: the reader's own
connections are read-only.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from poller.avro.values import Unrepresentable
from poller.batch import BEGINNING, Batch, Position
from poller.config import EntityConfig, SourceConfig
from poller.errors import ConfigError, SchemaMismatchError, SourceError
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, check_entity, make_engine

pytestmark = pytest.mark.integration

EVIL = "acme' OR '1'='1"
T0 = dt.datetime(2024, 3, 1, 12, 0, 0)
FIELDS = ["order_id", "customer", "amount", "doubled", "missing"]

metadata = sa.MetaData()
DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("updated_at", DATETIME, nullable=False),
    sa.Column("customer_id", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("amount", sa.Numeric(10, 2), nullable=False),
    sa.Column("note", sa.String(64), nullable=False),
    sa.Index("ix_orders_keyset", "tenant_id", "updated_at", "id"),
)
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False),
)


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'source.db'}"
    url: str = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url")
    return url


@pytest.fixture
def writer(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def insert(writer: sa.Engine, rows: list[dict[str, Any]]) -> None:
    defaults = {"tenant_id": "acme", "updated_at": T0, "customer_id": 1, "status": "open",
                "amount": Decimal("1.50"), "note": "n"}  # fmt: skip
    with writer.begin() as conn:
        conn.execute(orders.insert(), [defaults | r for r in rows])


def entity(**overrides: Any) -> EntityConfig:
    spec: dict[str, Any] = {
        "table": "orders",
        "fields": {"order_id": "id", "amount": "amount", "doubled": "amount * 2"},
        "key": "id",
        "batching": {"mode": "timestamp+id", "column": "updated_at", "id_column": "id"},
        "batch_size": 100,
        "settle_delay_s": 0,
    }
    return EntityConfig.model_validate(spec | overrides)


Reader = Callable[..., SourceReader]


@pytest.fixture
def make_reader(db_url: str) -> Iterator[Reader]:
    engines: list[sa.Engine] = []

    def make(ent: EntityConfig, tenant: str = "acme", **source: Any) -> SourceReader:
        src = SourceConfig(url=db_url, tenant_column="tenant_id", **source)
        engine = make_engine(src)
        engines.append(engine)
        query = EntityQuery(ent, src, tenant, FIELDS, engine.dialect, name="orders")
        return SourceReader(engine, query, ent, src)

    yield make
    for engine in engines:
        engine.dispose()


def read_all(reader: SourceReader, position: Position = BEGINNING) -> list[Batch]:
    batches: list[Batch] = []
    while len(batches) < 1000:  # a keyset that does not advance must fail, not hang
        batch = reader.fetch(position)
        if not batch.rows:
            return batches
        assert batch.last is not None and batch.last != position, "the position did not advance"
        batches.append(batch)
        position = batch.last
    pytest.fail("more than 1000 batches: rows are read again and again")


def ids(batches: list[Batch]) -> list[object]:
    return [row[0] for b in batches for row in b.rows]


def test_keyset_over_one_shared_timestamp(writer: sa.Engine, make_reader: Reader) -> None:
    insert(writer, [{"id": i} for i in range(5000, 0, -1)])  # inserted in reverse key order
    batches = read_all(make_reader(entity()))
    assert [len(b.rows) for b in batches] == [100] * 50
    assert ids(batches) == list(range(1, 5001))  # every row once, in keyset order
    last = batches[-1].rows[-1]
    assert last[len(FIELDS)] in (T0, "2024-03-01 12:00:00.000000")  # SQLite: text
    assert last[len(FIELDS) + 1] == 5000
    assert batches[0].rows[0][1:5] == (None, Decimal("1.50"), Decimal("3.00"), None)[:4] or (
        writer.dialect.name == "sqlite"  # SQLite has no DECIMAL: floats come back
    )


def test_id_mode_and_start_position(writer: sa.Engine, make_reader: Reader) -> None:
    insert(writer, [{"id": i} for i in range(1, 251)])
    reader = make_reader(entity(batching={"mode": "id", "column": "id"}))
    batches = read_all(reader, Position(200, None))  # start: 200 -> strictly after 200
    assert ids(batches) == list(range(201, 251))
    assert batches[0].db_now is None  # no upper bound in id mode
    assert reader.max_cursor() == 250


def test_start_timestamp_is_strictly_after(writer: sa.Engine, make_reader: Reader) -> None:
    # SQLite compares the text: a bound "12:00:00" would sort before the stored "12:00:00.000000"
    insert(writer, [{"id": 1}, {"id": 2, "updated_at": T0 + dt.timedelta(seconds=1)}])
    assert ids(read_all(make_reader(entity()), Position(T0, None))) == [2]
    assert ids(read_all(make_reader(entity()), Position(T0, 1))) == [2]
    assert ids(read_all(make_reader(entity()), Position(T0 - dt.timedelta(microseconds=1)))) == [
        1,
        2,
    ]


def test_tenant_isolation_with_a_malicious_tenant_id(
    writer: sa.Engine, make_reader: Reader
) -> None:
    insert(writer, [{"id": i, "tenant_id": "acme"} for i in range(1, 11)])
    insert(writer, [{"id": i, "tenant_id": EVIL} for i in range(11, 14)])
    insert(writer, [{"id": i, "tenant_id": "other"} for i in range(14, 20)])
    assert ids(read_all(make_reader(entity(), tenant=EVIL))) == [11, 12, 13]
    assert ids(read_all(make_reader(entity(), tenant="acme"))) == list(range(1, 11))
    assert ids(read_all(make_reader(entity(), tenant="nobody"))) == []


def test_query_source_with_its_own_where_and_join(writer: sa.Engine, make_reader: Reader) -> None:
    with writer.begin() as conn:
        conn.execute(customers.insert(), [{"id": 1, "name": "Zoë"}, {"id": 2, "name": "Bo"}])
    insert(writer, [
        {"id": 1, "customer_id": 1},
        {"id": 2, "customer_id": 2, "status": "draft"},
        {"id": 3, "customer_id": 2, "note": "a:b"},
        {"id": 4, "customer_id": 1, "tenant_id": "other"},
        {"id": 5, "customer_id": 1, "updated_at": T0 - dt.timedelta(days=1)},
    ])  # fmt: skip
    ent = entity(
        table=None,
        query="SELECT o.id, o.updated_at, o.tenant_id, o.amount, c.name AS cname "
        "FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE o.status <> 'draft' AND o.note <> 'x:y'",
        fields={"order_id": "id", "customer": "cname", "doubled": "amount * 2"},
        batch_size=2,
    )
    batches = read_all(make_reader(ent))
    rows = [tuple(r[:2]) for b in batches for r in b.rows]
    assert rows == [(5, "Zoë"), (1, "Zoë"), (3, "Bo")]  # ordered by (updated_at, id)
    assert [len(b.rows) for b in batches] == [2, 1]


def test_upper_bound_excludes_rows_inside_the_settle_delay(
    writer: sa.Engine, make_reader: Reader
) -> None:
    reader = make_reader(entity(settle_delay_s=60))
    now = reader.db_now()
    assert isinstance(now, dt.datetime) and now.tzinfo is None
    assert abs(now - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(seconds=30)
    insert(writer, [
        {"id": 1, "updated_at": now - dt.timedelta(hours=1)},
        {"id": 2, "updated_at": now - dt.timedelta(seconds=61)},
        {"id": 3, "updated_at": now - dt.timedelta(seconds=10)},  # may still be in flight
        {"id": 4, "updated_at": now + dt.timedelta(hours=1)},
    ])  # fmt: skip
    batch = reader.fetch(Position())
    assert [r[0] for r in batch.rows] == [1, 2]
    assert isinstance(batch.db_now, dt.datetime) and batch.db_now >= now
    # with no settle delay, "now" still excludes the future row
    assert ids(read_all(make_reader(entity(settle_delay_s=0)))) == [1, 2, 3]


def test_db_now_is_in_the_source_time_zone(make_reader: Reader, db_url: str) -> None:
    utc = make_reader(entity()).db_now()
    if db_url.startswith("mysql"):
        # A zone the server's time zone tables lack ("Factory" is in Python's tzdata only)
        # cannot be set: reading TIMESTAMP columns in another zone would shift every cursor,
        # so that is fatal (it was a warning).
        with pytest.raises(ConfigError, match=r"source.timezone: .*'Factory'"):
            make_reader(entity(), timezone="Factory").db_now()
    tokyo = make_reader(entity(), timezone="Asia/Tokyo").db_now()
    assert isinstance(utc, dt.datetime) and isinstance(tokyo, dt.datetime)
    assert abs((tokyo - utc) - dt.timedelta(hours=9)) < dt.timedelta(seconds=30)


def test_schema_errors_are_terminal(writer: sa.Engine, make_reader: Reader) -> None:
    insert(writer, [{"id": 1}])
    reader = make_reader(entity(fields={"order_id": "id", "customer": "no_such_column"}))
    with pytest.raises(SchemaMismatchError, match="no_such_column"):
        reader.fetch(Position())
    with pytest.raises(SchemaMismatchError):
        make_reader(entity(table="no_such_table")).fetch(Position())


def test_check_entity_reports_every_problem(writer: sa.Engine, db_url: str) -> None:
    src = SourceConfig(url=db_url, tenant_column="tenant_id")
    engine = make_engine(src)
    types = {"order_id": "long", "customer": "decimal(10,2)", "amount": "decimal(10,2)",
             "doubled": "long", "missing": "string"}  # fmt: skip

    def check(ent: EntityConfig) -> list[str]:
        query = EntityQuery(ent, src, "acme", FIELDS, engine.dialect, name="orders")
        return check_entity(engine, query, ent, types)

    try:
        assert check(entity(fields={"order_id": "id", "amount": "amount"})) == []
        problems = check(
            entity(
                fields={"order_id": "id", "customer": "note", "amount": "nope",
                        "doubled": "amount * 2", "missing": "no_such_fn(id)"},
                batching={"mode": "id", "column": "status"},
            )
        )  # fmt: skip
        text = "\n".join(problems)
        # MariaDB reports `amount * 2` as DECIMAL(.., 2): too fractional for a long. PostgreSQL
        # gives numeric without a scale and SQLite no type, so they are not judged.
        # A text column may fill a decimal field (amounts kept as text: SQLite, legacy CRMs);
        # the encoder parses every value strictly and a non-number is a bad row.
        mariadb = engine.dialect.name == "mysql"
        assert len(problems) == (4 if mariadb else 3), text
        assert mariadb == ("field 'doubled' (expression 'amount * 2'): a fractional" in text)
        assert "field 'customer' (column 'note')" not in text
        assert "field 'amount' (column 'nope'): not found" in text
        assert "field 'missing' (expression 'no_such_fn(id)'): fails" in text
        assert "batching.column 'status' is string; mode id needs an integer" in text
        # query source: types come from the driver's cursor description (none on SQLite);
        # a text column into the long field order_id is flagged, a missing column too.
        query_ent = entity(
            table=None,
            query="SELECT note AS id, tenant_id, updated_at, note AS label FROM orders",
            fields={"order_id": "id", "customer": "label", "amount": "gone"},
            batching={"mode": "timestamp", "column": "updated_at"},
        )
        problems = check(query_ent)
        assert len(problems) == (1 if engine.dialect.name == "sqlite" else 2), problems
        assert any("field 'amount' (column 'gone'): not found" in p for p in problems)
        missing_table = check(entity(table="no_such_table"))
        assert missing_table == ["entity 'orders': table 'no_such_table' does not exist (or is "
                                 "not visible)"]  # fmt: skip
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ faults


def run_in_thread(fn: Callable[[], Batch]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def wait_for(probe: Callable[[], object], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def pg_setup(pg_url: str) -> Iterator[tuple[str, sa.Engine]]:
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    metadata.create_all(engine)
    insert(engine, [{"id": i} for i in range(1, 301)])
    yield pg_url, engine
    engine.dispose()


def make_pg_reader(url: str) -> SourceReader:
    src = SourceConfig(url=url, tenant_column="tenant_id")
    engine = make_engine(src)
    ent = entity()
    return SourceReader(engine, EntityQuery(ent, src, "acme", FIELDS, engine.dialect), ent, src)


def test_pg_terminated_connection_recovers(pg_setup: tuple[str, sa.Engine]) -> None:
    url, admin = pg_setup
    reader = make_pg_reader(url)
    terminate = sa.text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'poller' AND datname = current_database()"
    )
    first = reader.fetch(Position())
    assert first.last is not None
    with admin.connect() as conn:  # between batches: the pool's pre-ping replaces it
        assert conn.execute(terminate).scalars().all() == [True]
    second = reader.fetch(first.last)
    assert ids([first, second]) == list(range(1, 201))

    # during a batch: the reader waits on a lock, its backend is terminated
    locker = admin.connect().execution_options(isolation_level="READ COMMITTED")
    lock = locker.begin()
    locker.execute(sa.text("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"))
    assert second.last is not None
    thread, errors = run_in_thread(lambda: reader.fetch(second.last or Position()))
    with admin.connect() as conn:
        waiting = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'poller' "
            "AND wait_event_type = 'Lock'"
        )
        pid = wait_for(lambda: conn.execute(waiting).scalar(), "the reader to wait on the lock")
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    thread.join(20)
    lock.rollback()
    locker.close()
    assert len(errors) == 1 and isinstance(errors[0], SourceError), errors
    assert str(errors[0]).startswith("entity 'orders': source database postgresql+psycopg2://")
    assert "poller:***@127.0.0.1" in str(errors[0]) and ":poller@" not in str(errors[0])
    third = reader.fetch(second.last)  # the next fetch works again
    assert ids([third]) == list(range(201, 301))


def test_pg_statement_timeout_is_a_source_error(pg_setup: tuple[str, sa.Engine]) -> None:
    url, _ = pg_setup
    src = SourceConfig(url=url, tenant_column="tenant_id", statement_timeout_s=0.2)
    engine = make_engine(src)
    ent = entity(fields={"order_id": "id", "customer": "pg_sleep(0.01)::text"})
    reader = SourceReader(engine, EntityQuery(ent, src, "acme", FIELDS, engine.dialect), ent, src)
    try:
        with pytest.raises(SourceError, match="statement timeout"):
            reader.fetch(BEGINNING)  # 100 rows x 10 ms > 200 ms
        read_only = pytest.raises(sa.exc.InternalError, match="read-only transaction")
        with engine.connect() as conn, read_only:  # and the session is read-only
            conn.execute(sa.text("DELETE FROM orders"))
    finally:
        engine.dispose()


@pytest.fixture
def mariadb_setup(mariadb_url: str) -> Iterator[tuple[str, sa.Engine]]:
    engine = sa.create_engine(mariadb_url, isolation_level="AUTOCOMMIT")
    metadata.create_all(engine)
    insert(engine, [{"id": i} for i in range(1, 301)])
    yield mariadb_url, engine
    engine.dispose()


def test_mariadb_killed_connection_recovers(mariadb_setup: tuple[str, sa.Engine]) -> None:
    url, admin = mariadb_setup
    reader = make_pg_reader(url)
    database = sa.engine.make_url(url).database
    others = sa.text(
        "SELECT id FROM information_schema.processlist "
        "WHERE db = :db AND id <> CONNECTION_ID() AND user = 'poller'"
    )
    first = reader.fetch(Position())
    assert first.last is not None
    with admin.connect() as conn:  # between batches
        for (conn_id,) in conn.execute(others, {"db": database}).all():
            conn.execute(sa.text("KILL :id"), {"id": conn_id})
    second = reader.fetch(first.last)
    assert ids([first, second]) == list(range(1, 201))

    locker = admin.connect()
    locker.execute(sa.text("LOCK TABLES orders WRITE"))
    thread, errors = run_in_thread(lambda: reader.fetch(second.last or Position()))
    with admin.connect() as conn:
        waiting = sa.text(
            "SELECT id FROM information_schema.processlist WHERE db = :db "
            "AND state LIKE '%lock%' AND id <> CONNECTION_ID()"
        )
        conn_id = wait_for(
            lambda: conn.execute(waiting, {"db": database}).scalar(), "the reader to wait"
        )
        conn.execute(sa.text("KILL :id"), {"id": conn_id})
    thread.join(20)
    locker.execute(sa.text("UNLOCK TABLES"))
    locker.close()
    assert len(errors) == 1 and isinstance(errors[0], SourceError), errors
    assert "poller:***@127.0.0.1" in str(errors[0])
    assert second.last is not None
    third = reader.fetch(second.last)
    assert ids([third]) == list(range(201, 301))


def test_value_the_driver_cannot_convert_is_kept_as_its_text_never_changed(
    pg_url: str,
) -> None:
    # 9999-12-31 23:30 UTC is year 10000 in Berlin: psycopg2 cannot build the datetime. The
    # reader keeps the source text (never another date, never a stopped batch); the encoder
    # refuses it as a bad row (tests/integration/faults/test_unrepresentable.py).
    eng = sa.create_engine(pg_url)
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE far (id int PRIMARY KEY, ts timestamptz)"))
        conn.execute(sa.text("INSERT INTO far VALUES (1, '9999-12-31 23:30:00+00')"))
    eng.dispose()
    src = SourceConfig(url=pg_url, timezone="Europe/Berlin")
    ent = EntityConfig(
        table="far", fields={"order_id": "id", "customer": "ts"}, key="id",
        batching={"mode": "id", "column": "id"},
    )  # fmt: skip
    engine = make_engine(src)
    try:
        query = EntityQuery(ent, src, "acme", FIELDS, engine.dialect, name="far")
        batch = SourceReader(engine, query, ent, src).fetch(Position())
    finally:
        engine.dispose()
    assert len(batch.rows) == 1
    value = batch.rows[0][1]
    assert isinstance(value, Unrepresentable), repr(value)
    assert value.startswith("10000-01-01"), value
    assert "outside the years 1..9999" in value.reason


def test_keyset_orders_by_cursor_then_key_with_interleaved_keys(
    writer: sa.Engine, make_reader: Reader
) -> None:
    """Distinct timestamps whose key order is the reverse of their time order (and pairs that
    share a timestamp): batches of 2 read every row once, in cursor order. An ORDER BY key,
    cursor would end a batch at a position that skips the rows in between."""
    keys = [50, 10, 40, 20, 30, 60, 5, 45]
    rows = [{"id": k, "updated_at": T0 + dt.timedelta(seconds=i // 2 * 2 + (i % 2) * (i > 3))}
            for i, k in enumerate(keys)]  # fmt: skip
    insert(writer, rows)
    order = sorted(rows, key=lambda r: (r["updated_at"], r["id"]))
    batches = read_all(make_reader(entity(batch_size=2)))
    assert ids(batches) == [r["id"] for r in order]
    assert [len(b.rows) for b in batches] == [2, 2, 2, 2]
    # the same through the timestamp mode (the key as tie-breaker) and resumed mid-way
    ts = entity(batch_size=3, batching={"mode": "timestamp", "column": "updated_at"})
    first = make_reader(ts).fetch(BEGINNING)
    assert first.last is not None
    rest = read_all(make_reader(ts), first.last)
    assert [r[0] for r in first.rows] + ids(rest) == [r["id"] for r in order]


def test_sqlite_seven_digit_fractions_are_kept_exactly(tmp_path: Path) -> None:
    """A text cursor with 100 ns digits (as SQL Server datetime2(7) exports write them): more
    rows share one value than a batch holds, and the next value differs only in the 7th digit.
    The stored cursor is the column's own text, so every row is read once and none again."""
    url = f"sqlite:///{tmp_path / 'seven.db'}"
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE orders (id integer PRIMARY KEY, tenant_id text, updated_at text, "
            "amount text)"
        ))  # fmt: skip
        stamps = ["2024-03-01 12:00:00.1234567"] * 5 + ["2024-03-01 12:00:00.1234568"] * 3
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, 'acme', :ts, '1.00')"),
            [{"id": i, "ts": s} for i, s in enumerate(stamps, 1)],
        )
    eng.dispose()
    src = SourceConfig(url=url, tenant_column="tenant_id")
    engine = make_engine(src)
    try:
        ent = entity(batch_size=2, fields={"order_id": "id"})
        query = EntityQuery(ent, src, "acme", FIELDS, engine.dialect, name="orders")
        batches = read_all(SourceReader(engine, query, ent, src))
    finally:
        engine.dispose()
    assert ids(batches) == list(range(1, 9))
    assert batches[-1].last == Position("2024-03-01 12:00:00.1234568", 8)
