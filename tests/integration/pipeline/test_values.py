"""Values round trip exactly (decimals, time zones, unicode, NULLs) on PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from poller.avro.schemas import load_schema
from tests.integration.pipeline.helpers import (
    assert_exactly_once,
    config,
    engine,
    execute,
    read_topics,
    run_once,
)

pytestmark = pytest.mark.integration
BERLIN = ZoneInfo("Europe/Berlin")
TEXTS = (
    "Zoë 😀👨‍👩‍👧 日本語 中文 𠜎 Привет, мир! «ёж»",
    "e\u0301 a\u0308 n\u0303 (combining marks, not normalised) שלום",
    "  quotes ' \" back\\slash\nnew line\ttab  ",
    "",  # empty text is not NULL
)
VALUE_ROWS: list[dict[str, Any]] = [
    {"id": 1, "amount": Decimal("9999999999999999.99"),
     "discount": Decimal("-9999999999999999.99"),
     "sold": dt.datetime(2024, 1, 15, 10, 0, 0, 1),  # CET, +01:00
     "changed": dt.datetime(2024, 7, 1, 12, 34, 56, 123456,
                            tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
     "born": dt.date(1, 1, 1), "txt": TEXTS[0], "txt2": TEXTS[3]},
    {"id": 2, "amount": Decimal("-0.01"), "discount": None,
     "sold": dt.datetime(2024, 7, 15, 23, 59, 59, 999999),  # CEST, +02:00: the UTC day before
     "changed": None, "born": dt.date(9999, 12, 31), "txt": None, "txt2": None},
    {"id": 3, "amount": Decimal("0.00"), "discount": Decimal("12.30"),
     "sold": dt.datetime(1970, 1, 1, 0, 59, 59, 999999),  # 1 µs before the epoch, in UTC
     "changed": dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
     "born": dt.date(1970, 1, 1), "txt": TEXTS[1], "txt2": TEXTS[2]},
    {"id": 4, "amount": Decimal("-1234567.89"), "discount": Decimal("0.01"),
     "sold": dt.datetime(1900, 3, 1, 0, 0, 0, 500000),
     # (not 9999-12-31 23:00+: the session zone is source.timezone, and the driver cannot
     # represent that instant in Berlin, year 10000)
     "changed": dt.datetime(9999, 12, 30, 12, 0, 0, 999999, tzinfo=dt.UTC),
     "born": dt.date(2000, 2, 29), "txt": "x" * 5000 + "🎉", "txt2": "ok"},
    {"id": 5, "amount": Decimal("1.00"), "discount": Decimal("-0.50"),
     "sold": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
     "changed": dt.datetime(2024, 10, 27, 0, 30, 0, 1, tzinfo=dt.UTC),
     "born": None, "txt": "Ελληνικά ☃ ∑ ﷺ", "txt2": None},
]  # fmt: skip


def value_entities() -> dict[str, dict[str, Any]]:
    """One source table `vals`, read as receipts (decimals, timestamps, text) and as customers
    (dates, text), both in id mode: far-future stamps would wait behind a time-mode bound."""
    common = {"table": "vals", "key": "id", "batching": {"mode": "id", "column": "id"},
              "batch_size": 2}  # fmt: skip
    return {
        "receipts": {**common, "fields": {
            "local_id": "id", "total_amount": "amount", "discount_amount": "discount",
            "purchased_at": "sold", "updated_at": "changed", "receipt_number": "txt",
            "store_id": "txt2"}},
        "customers": {**common, "fields": {
            "local_id": "id", "first_name": "txt", "last_name": "txt2", "birth_date": "born",
            "register_date": "changed", "updated_at": "sold"}},
    }  # fmt: skip


def expected_records(rows: list[dict[str, Any]], zone: ZoneInfo) -> dict[str, dict[int, Any]]:
    def utc(naive: dt.datetime) -> dt.datetime:
        return naive.replace(tzinfo=zone).astimezone(dt.UTC)

    def aware(value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else value.astimezone(dt.UTC)

    out: dict[str, dict[int, Any]] = {}
    for entity, mapping in value_entities().items():
        names = load_schema(entity).field_names
        fields = mapping["fields"]
        out[entity] = {}
        for r in rows:
            source = {**r, "id": str(r["id"]), "sold": utc(r["sold"]),
                      "changed": aware(r["changed"])}  # fmt: skip
            out[entity][r["id"]] = {n: source[fields[n]] if n in fields else None for n in names}
    return out


def check_values(url: str, rows: list[dict[str, Any]], prefix: str, bootstrap: str) -> None:
    cfg = config(url, "acme", bootstrap, prefix, value_entities(), timezone="Europe/Berlin")
    run_once(cfg)
    expected = expected_records(rows, BERLIN)
    topics = read_topics(bootstrap, [f"{prefix}.receipts", f"{prefix}.customers"])
    for entity in ("receipts", "customers"):
        messages = topics[f"{prefix}.{entity}"]
        assert_exactly_once(messages, [r["id"] for r in rows], "acme", entity)
        for m in messages:
            want = expected[entity][m.key]
            for field, value in want.items():
                got = m.record[field]
                assert got == value and type(got) is type(value), (entity, m.key, field, got)
                if isinstance(value, Decimal):
                    assert str(got) == str(value), (entity, m.key, field)  # scale kept
                if isinstance(value, dt.datetime):
                    assert got.utcoffset() == dt.timedelta(0)
                    assert got.replace(tzinfo=None) == value.replace(tzinfo=None)  # to the µs
            assert m.record == want


def insert_values(url: str, rows: list[dict[str, Any]]) -> None:
    eng = engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO vals VALUES (:id, :amount, :discount, :sold, :changed, "
                        ":born, :txt, :txt2)"),
                rows,
            )  # fmt: skip
    finally:
        eng.dispose()


def test_values_round_trip_postgresql(pg_url: str, prefix: str, kafka_bootstrap: str) -> None:
    execute(
        pg_url,
        "CREATE TABLE vals (id integer PRIMARY KEY, amount numeric(18,2) NOT NULL, "
        "discount numeric(18,2), sold timestamp NOT NULL, changed timestamptz, born date, "
        "txt text, txt2 text)",
    )
    insert_values(pg_url, VALUE_ROWS)
    check_values(pg_url, VALUE_ROWS, prefix, kafka_bootstrap)


def test_values_round_trip_mariadb(mariadb_url: str, prefix: str, kafka_bootstrap: str) -> None:
    # MariaDB has no zone-aware column type: `changed` is a second DATETIME(6), read in
    # source.timezone like `sold`.
    def local(value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else value.astimezone(BERLIN).replace(tzinfo=None)

    rows = [{**r, "changed": local(r["changed"])} for r in VALUE_ROWS]
    execute(
        mariadb_url,
        "CREATE TABLE vals (id integer PRIMARY KEY, amount DECIMAL(18,2) NOT NULL, "
        "discount DECIMAL(18,2), sold DATETIME(6) NOT NULL, changed DATETIME(6), born DATE, "
        "txt TEXT, txt2 TEXT) CHARACTER SET utf8mb4",
    )
    insert_values(mariadb_url, rows)
    aware_rows = [
        {**r, "changed": None if r["changed"] is None else r["changed"].replace(tzinfo=BERLIN)}
        for r in rows
    ]
    check_values(mariadb_url, aware_rows, prefix, kafka_bootstrap)
