"""verify's source side on the native PostgreSQL path (poller/verify/native_source.py) judges
every row as its Python path does: the same items (key, state, value digest) in the same order
and the same counts, over the value-edge corpus, unrepresentable values (whose pages go to the
Python path), and a generated table of several pages with rows after the watermark."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from poller.avro.schemas import load_schema
from poller.source.query import EntityQuery, Position
from poller.verify import compare, source_side
from poller.verify.compare import Counts, Merge
from poller.verify.native_source import NativePages
from poller.verify.source_side import VerifySource
from tests.integration.pipeline.test_values import VALUE_ROWS, value_entities
from tests.integration.source.native_harness import TwoPaths, require_native, run_sql, schema_of
from tests.integration.source.test_native_differential import (
    EDGE_FIELDS,
    EDGES,
    VALS,
    VALS_INSERT,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _native() -> None:
    require_native()


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pages of 7 rows, so a table spans many pages and a bad row's page is one of them."""
    monkeypatch.setattr(source_side, "PAGE_ROWS", 7)
    monkeypatch.setattr(compare, "PAGE_ROWS", 7)
    yield


def both(p: TwoPaths, watermark: Position | None) -> tuple[Any, Any, NativePages]:
    """(items, counts) of each path, and the native reader (to see which pages it served)."""
    out = []
    native = NativePages.of(p.stream, "postgresql", "psycopg2", composite=False)
    assert native is not None
    for pages in (None, native):
        query = EntityQuery(p.ent, p.src, p.stream.tenant, p.stream.schema.field_names,
                            p.engine.dialect)  # fmt: skip
        source = VerifySource(p.engine, query, p.ent, p.src, watermark)
        merge = Merge(p.stream, lambda d: None, Counts(), pages)
        mode, items = merge.source_items(source, sqlite3.connect(":memory:"), lambda n: None)
        out.append((mode, list(items), merge.counts))
    (m1, py, c1), (m2, nat, c2) = out
    assert (m1, m2) == ("int", "int")
    return (py, nat), (c1, c2), native


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("confluent", [False, True])
def test_value_edge_corpus_verifies_alike(
    pg_url: str, zone: str, confluent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page per row: the rows at the ends of the extension's range take the Python path,
    # every other row the native one.
    monkeypatch.setattr(source_side, "PAGE_ROWS", 1)
    monkeypatch.setattr(compare, "PAGE_ROWS", 1)
    run_sql(pg_url, VALS, rows=VALUE_ROWS, insert=VALS_INSERT)
    for entity, spec in value_entities().items():
        p = TwoPaths(pg_url, load_schema(entity), spec, timezone=zone, confluent=confluent)
        try:
            for watermark in (None, Position(VALUE_ROWS[len(VALUE_ROWS) // 2]["id"], None)):
                (py, nat), (c1, c2), native = both(p, watermark)
                assert nat == py
                assert c2 == c1
                assert native.native_pages >= len(VALUE_ROWS) - 2 - c1.bad
        finally:
            p.close()


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_unrepresentable_values_verify_alike(pg_url: str, zone: str, small_pages: None) -> None:
    run_sql(pg_url, *EDGES)
    spec = {"table": "edges", "fields": {n: n for n, _ in EDGE_FIELDS}, "key": "id",
            "batching": {"mode": "id", "column": "id"}, "batch_size": 1}  # fmt: skip
    p = TwoPaths(pg_url, schema_of("edges", EDGE_FIELDS), spec, timezone=zone)
    try:
        (py, nat), (c1, c2), native = both(p, Position(10, 10))
    finally:
        p.close()
    assert nat == py
    assert c2 == c1 and c1.bad > 0 and c1.pending == 4
    assert native.fallback_pages > 0  # the bad rows' pages were the Python path's


@pytest.mark.parametrize(
    "batching",
    [{"mode": "timestamp+id", "column": "seen", "id_column": "id"},
     {"mode": "timestamp", "column": "seen"}, {"mode": "id", "column": "id"}],
)  # fmt: skip
def test_many_pages_with_pending_rows_verify_alike(
    pg_url: str, small_pages: None, batching: dict[str, str]
) -> None:
    run_sql(
        pg_url,
        "CREATE TABLE people (id bigint PRIMARY KEY, user_id text, name text, born date, "
        "seen timestamp)",
        "INSERT INTO people SELECT i, CASE WHEN mod(i, 5) = 0 THEN 'other' ELSE 'acme' END, "
        "CASE WHEN mod(i, 3) = 0 THEN NULL ELSE 'Имя ✓ ' || i END, date '1970-01-01' + i, "
        "timestamp '2021-03-28 00:00' + i * interval '17 minutes' FROM generate_series(1, 200) i",
    )
    fields = [("id", "long"), ("name", ["null", "string"]),
              ("born", ["null", {"type": "int", "logicalType": "date"}]),
              ("seen", {"type": "long", "logicalType": "timestamp-micros"})]  # fmt: skip
    spec = {"table": "people", "fields": {n: n for n, _ in fields}, "key": "id",
            "batching": batching, "batch_size": 10}  # fmt: skip
    p = TwoPaths(pg_url, schema_of("people", fields), spec, tenant_column="user_id",
                 timezone="Europe/Berlin")  # fmt: skip
    try:
        seen = p_seen(pg_url, 120)
        mark = {"timestamp+id": Position(seen, 120), "timestamp": Position(seen, None),
                "id": Position(120, 120)}[batching["mode"]]  # fmt: skip
        (py, nat), (c1, c2), native = both(p, mark)
    finally:
        p.close()
    assert nat == py
    assert c2 == c1
    assert c1.source_rows == 160 and 0 < c1.pending < 160  # the tenant's rows only
    assert native.fallback_pages == 0 and native.native_pages == 160 // 7 + 1


def p_seen(url: str, key: int) -> object:
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(sa.text("SELECT seen FROM people WHERE id = :k"), {"k": key}).scalar()
    finally:
        eng.dispose()
