"""The native PostgreSQL path against the Python path, on the same rows: identical values, keys,
message times, bad-row decisions (a batch with a bad row is handed to the Python path) and
positions. Over the value-edge corpus of the other tests and over Hypothesis-generated rows of
every supported type."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.avro.schemas import load_schema
from tests.integration.pipeline.test_values import VALUE_ROWS, value_entities
from tests.integration.source.native_harness import run_sql, schema_of, two_paths

pytestmark = pytest.mark.integration

NULL = "null"
DEC = {"type": "bytes", "logicalType": "decimal"}
TS = {"type": "long", "logicalType": "timestamp-micros"}
DATE = {"type": "int", "logicalType": "date"}


@pytest.fixture(autouse=True)
def _native() -> None:
    from tests.integration.source.native_harness import require_native

    require_native()


# ------------------------------------------------------------------ the value-edge corpus

VALS = (
    "CREATE TABLE vals (id integer PRIMARY KEY, amount numeric(18,2) NOT NULL, "
    "discount numeric(18,2), sold timestamp NOT NULL, changed timestamptz, born date, "
    "txt text, txt2 varchar(6000))"
)
VALS_INSERT = (
    "INSERT INTO vals VALUES (:id, :amount, :discount, :sold, :changed, :born, :txt, :txt2)"
)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("confluent", [False, True])
def test_value_edge_corpus_is_identical(pg_url: str, zone: str, confluent: bool) -> None:
    run_sql(pg_url, VALS, rows=VALUE_ROWS, insert=VALS_INSERT)
    for entity, spec in value_entities().items():
        spec = {**spec, "batch_size": 1}  # one decision per row
        with two_paths(pg_url, load_schema(entity), spec, timezone=zone, confluent=confluent) as p:
            batches = p.compare_all()
        decided = [b for b in batches if b.python]
        assert len(decided) == len(VALUE_ROWS)
        # 0001-01-01 and 9999-12-31 23:59:59.999999 sit in the extension's safety margin at the
        # ends of Python's range: those rows go to the Python path, every other row is native.
        native = [b.native_used for b in decided]
        assert native.count(True) >= len(VALUE_ROWS) - 2, [b.fallbacks for b in decided]


EDGES = (
    "CREATE TABLE edges (id bigint PRIMARY KEY, amount numeric, born date, seen timestamp, "
    "seen_tz timestamptz, name text, flag boolean, ratio double precision, raw bytea, doc jsonb)",
    "INSERT INTO edges VALUES "
    "(1, 10.5, '1980-05-01', '2020-01-01 10:00', '2024-01-01 00:00+00', 'ok', true, NULL, "
    "NULL, NULL), "
    "(2, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
    "(3, 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
    "(4, NULL, 'infinity', '-infinity', 'infinity', NULL, NULL, NULL, NULL, NULL), "
    "(5, NULL, '10000-01-01', '10000-01-01', NULL, NULL, NULL, NULL, NULL, NULL), "
    "(6, NULL, '0044-03-15 BC', NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
    "(7, 1.005, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
    "(8, 123456789012345678, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
    "(9, NULL, NULL, NULL, NULL, NULL, NULL, 1.5, NULL, NULL), "
    "(10, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '\\x00ff', NULL), "
    "(11, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '\"text\"'), "
    "(12, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null'), "
    "(13, -0.00, '2000-02-29', '2021-03-28 02:30', '2021-10-31 01:30+00', "
    "'\u00e9\"\\\\ \t\n', false, NULL, NULL, NULL), "
    "(14, 0.01, NULL, NULL, NULL, E'\\x01\\x1f\\x7f', NULL, NULL, NULL, NULL)",
)
EDGE_FIELDS = [
    ("id", "long"),
    ("amount", [NULL, {**DEC, "precision": 18, "scale": 2}]),
    ("born", [NULL, DATE]),
    ("seen", [NULL, TS]),
    ("seen_tz", [NULL, TS]),
    ("name", [NULL, "string"]),
    ("flag", [NULL, "boolean"]),
    ("ratio", [NULL, "string"]),
    ("raw", [NULL, "string"]),
    ("doc", [NULL, "string"]),
]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_unrepresentable_values_go_to_the_python_path(pg_url: str, zone: str) -> None:
    run_sql(pg_url, *EDGES)
    spec = {
        "table": "edges",
        "fields": {n: n for n, _ in EDGE_FIELDS},
        "key": "id",
        "batching": {"mode": "id", "column": "id"},
        "batch_size": 1,
    }
    with two_paths(pg_url, schema_of("edges", EDGE_FIELDS), spec, timezone=zone) as p:
        batches = [b for b in p.compare_all() if b.python]
    by_id = dict(zip(range(1, 15), batches, strict=True))
    for i in (2, 3, 4, 5, 6, 7, 8, 9, 10):  # bad rows in the Python path
        assert by_id[i].python[0].bad is not None, i
        assert not by_id[i].native_used
    assert by_id[11].python[0].value is not None  # a JSON string is text to psycopg2
    assert not by_id[11].native_used and not by_id[12].native_used  # json: the Python path
    for i in (1, 13, 14):
        assert by_id[i].native_used, (i, by_id[i].fallbacks)


def test_oversized_rows_are_decided_by_the_python_path(pg_url: str) -> None:
    run_sql(
        pg_url,
        "CREATE TABLE big (id bigint PRIMARY KEY, body text)",
        "INSERT INTO big SELECT g, repeat('x', g * 100) FROM generate_series(1, 4) g",
    )
    spec = {"table": "big", "fields": {"id": "id", "body": "body"}, "key": "id",
            "batching": {"mode": "id", "column": "id"}, "batch_size": 1}  # fmt: skip
    fields = [("id", "long"), ("body", "string")]
    with two_paths(pg_url, schema_of("big", fields), spec, max_value=150) as p:
        batches = [b for b in p.compare_all() if b.python]
    assert [b.native_used for b in batches] == [True, False, False, False]
    assert [b.python[0].bad is not None for b in batches] == [False, True, True, True]
    assert batches[1].fallbacks == ["oversized"]


# ------------------------------------------------------------------ generated rows

GEN_TABLE = (
    "CREATE TABLE gen (id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, "
    "num numeric, numi numeric, txt text, vc varchar(20), bc char(5), u uuid, flag boolean, "
    "d date, ts timestamp, tstz timestamptz, upd timestamp NOT NULL)"
)
GEN_INSERT = (
    "INSERT INTO gen VALUES (:id, :i2, :i4, :i8, :num, :numi, :txt, :vc, :bc, :u, :flag, :d, "
    ":ts, :tstz, :upd)"
)
GEN_FIELDS = [
    ("local_id", "string"),  # the bigint id as text
    ("i2", [NULL, "int"]),
    ("i4", [NULL, "int"]),
    ("i8", [NULL, "long"]),
    ("i4_dec", [NULL, {**DEC, "precision": 12, "scale": 2}]),
    ("n2", [NULL, {**DEC, "precision": 20, "scale": 2}]),
    ("n6", [NULL, {**DEC, "precision": 38, "scale": 6}]),
    ("n12", [NULL, {**DEC, "precision": 30, "scale": 12}]),
    ("n0", [NULL, {**DEC, "precision": 38, "scale": 0}]),
    ("nl", [NULL, "long"]),
    ("txt", [NULL, "string"]),
    ("vc", [NULL, "string"]),
    ("bc", [NULL, "string"]),
    ("u", [NULL, "string"]),
    ("flag", [NULL, "boolean"]),
    ("d", [NULL, DATE]),
    ("ts", [NULL, TS]),
    ("tstz", [NULL, TS]),
    ("updated_at", TS),
]
GEN_MAPPING = {
    "local_id": "id", "i2": "i2", "i4": "i4", "i8": "i8", "i4_dec": "i4", "n2": "num",
    "n6": "num", "n12": "num", "n0": "numi", "nl": "numi", "txt": "txt", "vc": "vc", "bc": "bc",
    "u": "u", "flag": "flag", "d": "d", "ts": "ts", "tstz": "tstz", "updated_at": "upd",
}  # fmt: skip

TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
# Naive wall times in the years the zone tables cover, many close to DST changes.
DST_EDGES = [dt.datetime(y, m, d, h, mi) for y in (1996, 2021, 2024, 2037, 2099)
             for (m, d, h, mi) in ((3, 28, 2, 30), (3, 10, 2, 0), (10, 31, 1, 30),
                                   (11, 3, 1, 59), (3, 26, 1, 59))]  # fmt: skip
WALL = st.one_of(
    st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2099, 12, 31)),
    st.sampled_from(DST_EDGES).flatmap(
        lambda t: st.integers(-7200, 7200).map(lambda s: t + dt.timedelta(seconds=s))
    ),
)
INSTANT = st.datetimes(dt.datetime(1, 1, 3), dt.datetime(9999, 12, 29), timezones=st.just(dt.UTC))


def _decimal(max_scale: int, max_digits: int) -> st.SearchStrategy[Decimal]:
    return st.builds(
        lambda n, s: Decimal(n).scaleb(-s),
        st.integers(-(10**max_digits) + 1, 10**max_digits - 1),
        st.integers(0, max_scale),
    )


def _maybe(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s)


ROW = st.fixed_dictionaries(
    {
        "i2": _maybe(st.integers(-(2**15), 2**15 - 1)),
        "i4": _maybe(st.integers(-(2**31), 2**31 - 1)),
        "i8": _maybe(st.integers(-(2**63), 2**63 - 1)),
        "num": _maybe(_decimal(2, 17)),
        "numi": _maybe(_decimal(0, 18)),
        "txt": _maybe(st.text(TEXT, max_size=40)),
        "vc": _maybe(st.text(TEXT, max_size=20)),
        "bc": _maybe(st.text(TEXT, max_size=5)),
        "u": _maybe(st.uuids().map(str)),
        "flag": _maybe(st.booleans()),
        "d": _maybe(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))),
        "ts": _maybe(WALL),
        "tstz": _maybe(INSTANT),
        "upd": st.one_of(  # in the past: a time-mode batch stops at the database's now
            st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2025, 12, 31)),
            st.sampled_from([t for t in DST_EDGES if t.year < 2025]),
        ),
    }
)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


def _fill(pg_url: str, rows: list[dict[str, Any]]) -> None:
    run_sql(pg_url, "TRUNCATE gen", rows=[{"id": i, **r} for i, r in enumerate(rows, 1)],
            insert=GEN_INSERT)  # fmt: skip


@pytest.fixture
def gen_url(pg_url: str) -> str:
    run_sql(pg_url, GEN_TABLE)
    return pg_url


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ROW, min_size=1, max_size=12), zone=st.sampled_from(ZONES),
       confluent=st.booleans(), time_mode=st.booleans())  # fmt: skip
def test_generated_rows_are_identical(
    gen_url: str, rows: list[dict[str, Any]], zone: str, confluent: bool, time_mode: bool
) -> None:
    _fill(gen_url, rows)
    batching = (
        {"mode": "timestamp+id", "column": "upd", "id_column": "id"}
        if time_mode
        else {"mode": "id", "column": "id"}
    )
    spec = {"table": "gen", "fields": GEN_MAPPING, "key": "id", "batching": batching,
            "batch_size": 5, "settle_delay_s": 0}  # fmt: skip
    with two_paths(gen_url, schema_of("gen", GEN_FIELDS), spec, timezone=zone,
                   confluent=confluent) as p:  # fmt: skip
        batches = p.compare_all()
    assert sum(len(b.python) for b in batches) == len(rows)
    for b in batches:  # every value is inside what the extension handles: no batch falls back
        if b.python:
            assert b.native_used, b.fallbacks


DECIMAL_FIELDS = [("id", "long")] + [
    (f"s{s}", [NULL, {**DEC, "precision": p, "scale": s}])
    for s, p in ((0, 1), (0, 38), (1, 5), (2, 18), (3, 10), (4, 38), (6, 20), (9, 38), (12, 30))
]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.one_of(_decimal(14, 30), _decimal(3, 3)), min_size=1, max_size=8))
def test_decimals_at_every_scale_decide_like_python(pg_url: str, values: list[Decimal]) -> None:
    """One numeric column into decimal fields of many scales: a value too fine or too long for
    any of them is a bad row in the Python path and goes there; the rest is native, same bytes."""
    run_sql(pg_url, "DROP TABLE IF EXISTS nums",
            "CREATE TABLE nums (id bigint PRIMARY KEY, v numeric)",
            rows=[{"id": i, "v": v} for i, v in enumerate(values, 1)],
            insert="INSERT INTO nums VALUES (:id, :v)")  # fmt: skip
    spec = {"table": "nums", "fields": {n: ("id" if n == "id" else "v") for n, _ in DECIMAL_FIELDS},
            "key": "id", "batching": {"mode": "id", "column": "id"}, "batch_size": 1}  # fmt: skip
    with two_paths(pg_url, schema_of("nums", DECIMAL_FIELDS), spec) as p:
        batches = [b for b in p.compare_all() if b.python]
    for b in batches:  # per row: native exactly when the Python path finds no bad value
        assert b.native_used == (b.python[0].bad is None), (b.python, b.fallbacks)


# ------------------------------------------------------------------ quoting into COPY

HOSTILE = [
    "acme' OR '1'='1",
    "x'); DROP TABLE orders; --",
    "back\\slash' || (SELECT 1) || '",
    "$$dollar$$",
    "юникод'\"",
    "E'\\x27'",
]


def test_hostile_tenants_and_cursor_values_are_quoted(pg_url: str) -> None:
    """COPY takes no bind parameters: the statement is quoted by psycopg2's mogrify. Tenants and
    text tie-breaker values built to break out of a literal read exactly their own rows."""
    run_sql(
        pg_url,
        "CREATE TABLE orders (tenant_id text NOT NULL, code text NOT NULL, "
        "updated_at timestamp NOT NULL, PRIMARY KEY (tenant_id, code))",
        rows=[
            {"t": t, "c": c, "u": dt.datetime(2024, 1, 1, 12)}
            for t in [*HOSTILE, "other"]
            for c in [*HOSTILE, "plain", str(uuid.UUID(int=7))]
        ],
        insert="INSERT INTO orders VALUES (:t, :c, :u)",
    )
    fields = [("code", "string"), ("updated_at", TS)]
    spec = {"table": "orders", "fields": {"code": "code", "updated_at": "updated_at"},
            "key": "code", "batching": {"mode": "timestamp", "column": "updated_at"},
            "batch_size": 1, "settle_delay_s": 0}  # fmt: skip
    for tenant in HOSTILE:
        with two_paths(pg_url, schema_of("orders", fields), spec, tenant=tenant,
                       tenant_column="tenant_id") as p:  # fmt: skip
            batches = [b for b in p.compare_all() if b.python]
        # one row per batch, each after a hostile tie-breaker value: all read, none twice
        assert len(batches) == len(HOSTILE) + 2
        assert all(b.native_used for b in batches), [b.fallbacks for b in batches]
        keys = [b.python[0].key for b in batches]
        assert len(set(keys)) == len(keys)
        assert all(k is not None and k.startswith(f'["{_json(tenant)}",'.encode()) for k in keys)
    run_sql(pg_url, "SELECT count(*) FROM orders")  # the table is still there


def _json(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)[1:-1]


# ------------------------------------------------------------------ whole-entity fallbacks


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"key": ["id", "code"]}, "composite message key"),
        ({"deletes": {"column": "gone", "values": [True]}}, "soft deletes"),
    ],
)
def test_an_entity_the_extension_cannot_serve_says_so_once(
    pg_url: str, extra: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_sql(
        pg_url,
        "CREATE TABLE t (id bigint, code text, gone boolean NOT NULL, PRIMARY KEY (id, code))",
        "INSERT INTO t SELECT g, 'c' || g, false FROM generate_series(1, 5) g",
    )
    fields = [("id", "long"), ("code", "string")]
    spec = {"table": "t", "fields": {"id": "id", "code": "code"}, "key": "id",
            "batching": {"mode": "id", "column": "id"}, "batch_size": 2, **extra}  # fmt: skip
    logs = caplog.at_level("INFO", logger="poller.source.native_pg")
    with logs, two_paths(pg_url, schema_of("t", fields), spec) as p:
        batches = [b for b in p.compare_all() if b.python]
    assert sum(len(b.python) for b in batches) == 5
    assert not any(b.native_used for b in batches)
    assert {r for b in batches for r in b.fallbacks} == {"unsupported"}  # the metric label
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and why in lines[0], lines
