"""mysqlclient (`mysql+mysqldb`, the default for `mysql://` when installed) against PyMySQL on the
same rows: identical driver values, Avro values and keys (single-object and Confluent), message
times, bad-row decisions and positions, over the value-edge corpus and MySQL's own edges (zero
dates, fractional seconds, bigint unsigned, binary, JSON, 4-byte UTF-8, NULLs)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import make_url

from poller.avro.keys import KeyField, build_key_encoder
from poller.avro.registry import Registered
from poller.avro.schemas import EntitySchema, load_schema
from poller.batch import BEGINNING, Position
from poller.config import EntityConfig, SourceConfig
from poller.config.drivers import mysqlclient_installed, with_driver
from poller.pipeline.wire import EntityWire
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine
from tests.integration.pipeline.test_values import BERLIN, VALUE_ROWS, value_entities
from tests.integration.source.native_harness import TwoPaths, run_sql, schema_of

pytestmark = pytest.mark.integration

NULL = "null"
TS = {"type": "long", "logicalType": "timestamp-micros"}
DATE = {"type": "int", "logicalType": "date"}
DEC = {"type": "bytes", "logicalType": "decimal"}


@pytest.fixture(autouse=True)
def _mysqlclient() -> None:
    # `make venv` installs it; reaching here without it is a failure, never a skip (the run
    # without optional packages leaves this file out).
    if not mysqlclient_installed():
        pytest.fail("mysqlclient is not installed (make venv installs it)")


def _driver_url(url: str, driver: str) -> str:
    u = make_url(url)
    return u.set(drivername=f"{u.get_backend_name()}+{driver}").render_as_string(False)


class TwoDrivers:
    """One entity read by PyMySQL and by mysqlclient; rows go through the same stream (encoder,
    keys, times) as the pipeline's, borrowed from the native harness."""

    def __init__(
        self, url: str, schema: EntitySchema, entity: dict[str, Any], zone: str, confluent: bool
    ) -> None:
        self.ent = EntityConfig.model_validate(entity)
        wire = None
        if confluent:
            kfields = (KeyField(self.ent.key_columns[0], "local_id", "long"),)
            key = build_key_encoder(Registered("k", 8).prefix, "acme", kfields, ("id",))
            wire = EntityWire(Registered("v", 7), Registered("k", 8), {}, key, kfields)
        self.paths = _Encoder(schema, self.ent, zone, wire)
        self.engines = []
        self.readers = []
        for driver in ("pymysql", "mysqldb"):
            src = SourceConfig(url=_driver_url(url, driver), timezone=zone)
            eng = make_engine(src)
            assert eng.dialect.driver == driver
            self.engines.append(eng)
            q = EntityQuery(self.ent, src, "acme", schema.field_names, eng.dialect)
            self.readers.append(SourceReader(eng, q, self.ent, src))

    def compare_all(self) -> list[list[Any]]:
        """Every batch from the beginning; asserts both drivers agree; the Python rows."""
        out = []
        position: Position = BEGINNING
        while True:
            py, my = (r.fetch(position) for r in self.readers)
            assert [_typed(r) for r in my.rows] == [_typed(r) for r in py.rows]
            assert repr(my.last) == repr(py.last)  # same value, type and UTC offset
            rows = self.paths.python_rows(py)
            assert self.paths.python_rows(my) == rows
            out.append(rows)
            if len(py.rows) < self.ent.batch_size or py.last is None:
                return out
            position = py.last

    def close(self) -> None:
        for eng in self.engines:
            eng.dispose()


class _Encoder(TwoPaths):
    """TwoPaths' python_rows only: the stream's encoder, keys and times, no reader."""

    def __init__(
        self, schema: EntitySchema, ent: EntityConfig, zone: str, wire: EntityWire | None
    ) -> None:
        from poller.pipeline.stream import EntityStream

        self.stream = EntityStream(
            schema.name, ent, schema, "topic", "acme", ZoneInfo(zone), BEGINNING, wire=wire
        )


def _typed(row: Any) -> list[tuple[str, str]]:
    return [(type(v).__name__, repr(v)) for v in row]


@contextmanager
def two_drivers(*args: Any) -> Iterator[TwoDrivers]:
    d = TwoDrivers(*args)
    try:
        yield d
    finally:
        d.close()


def test_bare_mysql_urls_take_mysqlclient_and_named_drivers_stay() -> None:
    assert with_driver(make_url("mysql://u@h/d")).drivername == "mysql+mysqldb"
    assert with_driver(make_url("mariadb://u@h/d")).drivername == "mariadb+mysqldb"
    assert with_driver(make_url("mysql+pymysql://u@h/d")).drivername == "mysql+pymysql"
    assert with_driver(make_url("mysql://u@h/d"), require_tls=True).drivername == "mysql+pymysql"
    assert with_driver(make_url("postgresql://u@h/d")).drivername == "postgresql"


# ------------------------------------------------------------------ the value-edge corpus

VALS = (
    "CREATE TABLE vals (id integer PRIMARY KEY, amount DECIMAL(18,2) NOT NULL, "
    "discount DECIMAL(18,2), sold DATETIME(6) NOT NULL, changed DATETIME(6), born DATE, "
    "txt TEXT, txt2 TEXT) CHARACTER SET utf8mb4"
)
VALS_INSERT = (
    "INSERT INTO vals VALUES (:id, :amount, :discount, :sold, :changed, :born, :txt, :txt2)"
)


def _local(v: dt.datetime | None) -> dt.datetime | None:
    return None if v is None else v.astimezone(BERLIN).replace(tzinfo=None)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("confluent", [False, True])
def test_value_edge_corpus_is_identical(mariadb_url: str, zone: str, confluent: bool) -> None:
    rows = [{**r, "changed": _local(r["changed"])} for r in VALUE_ROWS]
    run_sql(mariadb_url, VALS, rows=rows, insert=VALS_INSERT)
    for entity, spec in value_entities().items():
        for batch in (1, 1000):
            spec = {**spec, "batch_size": batch}
            with two_drivers(mariadb_url, load_schema(entity), spec, zone, confluent) as d:
                decided = [r for b in d.compare_all() for r in b]
            assert len(decided) == len(VALUE_ROWS)
            assert all(r.bad is None for r in decided), decided


# ------------------------------------------------------------------ MySQL's own edges

EDGES = (
    "SET SESSION sql_mode = ''",  # lets the zero dates in
    "CREATE TABLE edges (id BIGINT UNSIGNED PRIMARY KEY, amount DECIMAL(38,10), born DATE, "
    "seen DATETIME(6), seen3 DATETIME(3), stamp TIMESTAMP(6) NULL, name VARCHAR(200), "
    "doc JSON, raw VARBINARY(32), fixed BINARY(4), blob_ BLOB, big BIGINT UNSIGNED, "
    "ratio DOUBLE, flag TINYINT(1), yr YEAR, span TIME(6), kind ENUM('a','b')) "
    "CHARACTER SET utf8mb4",
    "INSERT INTO edges VALUES "
    "(1, 10.5, '1980-05-01', '2020-01-01 10:00:00.000001', '2020-01-01 10:00:00.5', "
    "'2024-03-31 01:30:00.25', 'ok', '{\"a\": [1, \"ü\"]}', x'00ff', x'01020304', x'deadbeef', "
    "18446744073709551615, 1.5, 1, 2024, '-838:59:59.000000', 'b'), "
    "(2, NULL, '0000-00-00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL), "
    "(3, NULL, NULL, '0000-00-00 00:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, NULL), "
    "(4, NULL, '2024-00-15', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL), "
    "(5, -0.0000000001, '9999-12-31', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00.001', "
    "'1970-01-01 00:00:01', 'Zoë 😀👨‍👩‍👧 𠜎 «ёж» \\t\\n', 'null', x'', x'00000000', x'', 0, "
    "-0.0, 0, 1901, '00:00:00.000001', 'a'), "
    "(6, 1234567890123456789012345678.0123456789, '2000-02-29', '2021-03-28 02:30:00', NULL, "
    "NULL, '', '\"text\"', NULL, NULL, NULL, 9223372036854775807, NULL, NULL, NULL, NULL, "
    "NULL), "
    "(18446744073709551615, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "9223372036854775808, NULL, NULL, NULL, NULL, NULL)",
)
EDGE_FIELDS = [
    ("id", "long"),
    ("amount", [NULL, {**DEC, "precision": 38, "scale": 10}]),
    ("born", [NULL, DATE]),
    ("seen", [NULL, TS]),
    ("seen3", [NULL, TS]),
    ("stamp", [NULL, TS]),
    ("name", [NULL, "string"]),
    ("doc", [NULL, "string"]),
    ("raw", [NULL, "string"]),
    ("fixed", [NULL, "string"]),
    ("blob_", [NULL, "string"]),
    ("big", [NULL, "long"]),
    ("ratio", [NULL, "string"]),
    ("flag", [NULL, "long"]),
    ("yr", [NULL, "long"]),
    ("span", [NULL, "string"]),
    ("kind", [NULL, "string"]),
]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
@pytest.mark.parametrize("mode", ["id", "seen"])
def test_mysql_edges_are_identical(mariadb_url: str, zone: str, mode: str) -> None:
    run_sql(mariadb_url, *EDGES)
    batching = {"mode": "id", "column": "id"} if mode == "id" else {
        "mode": "timestamp", "column": "seen"}  # fmt: skip
    spec = {"table": "edges", "fields": {n: n for n, _ in EDGE_FIELDS}, "key": "id",
            "batching": batching, "batch_size": 1, "settle_delay_s": 0}  # fmt: skip
    with two_drivers(mariadb_url, schema_of("edges", EDGE_FIELDS), spec, zone, False) as d:
        decided = [r for b in d.compare_all() for r in b]
    bad = sorted(r.bad for r in decided if r.bad is not None)
    # Every column's driver value is compared above; as messages, bytes in a string field
    # (1, 5), zero dates (2, 3, 4) and an unsigned id beyond long (the last) are bad rows.
    if mode == "id":
        assert len(decided) == 7
        assert [b.split(":")[0] for b in bad] == ["born", "born", "id", "raw", "raw", "seen"]
    else:  # rows with a cursor, before the horizon: 1, the zero cursor (3) and 6
        assert len(decided) == 3
        assert [b.split(":")[0] for b in bad] == ["raw", "seen"], bad


def test_mysqlclient_reads_a_big_batch_streaming(mariadb_url: str) -> None:
    run_sql(
        mariadb_url,
        "CREATE TABLE many (id BIGINT PRIMARY KEY, t VARCHAR(40), d DECIMAL(12,3), s DATETIME(6))",
        "INSERT INTO many SELECT seq, concat('Привет ', seq), seq / 7, "
        "TIMESTAMP '2020-01-01 00:00:00' + INTERVAL seq * 1001 MICROSECOND FROM seq_1_to_5000",
    )
    fields = [("id", "long"), ("t", "string"), ("d", {**DEC, "precision": 12, "scale": 3}),
              ("s", TS)]  # fmt: skip
    spec = {"table": "many", "fields": {n: n for n, _ in fields}, "key": "id",
            "batching": {"mode": "id", "column": "id"}, "batch_size": 1500}  # fmt: skip
    with two_drivers(mariadb_url, schema_of("many", fields), spec, "UTC", True) as d:
        batches = d.compare_all()
    assert [len(b) for b in batches] == [1500, 1500, 1500, 500]
