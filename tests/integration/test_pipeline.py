"""The whole pipeline against the real services: database -> poller -> Kafka -> decoded records.

Each test owns a fresh database (fixtures `pg_url` / `mariadb_url`, or a SQLite file), a unique
topic prefix and transactional id (so no test fences another), and deletes its topics at the
end. The poller runs in-process (`Poller(cfg).run(once=True)`) except where the process boundary
is the point (restart). Topics are read back with a read_committed consumer and compared with
the source rows: exact key sets, exact counts, exact values.
"""

from __future__ import annotations

import copy
import datetime as dt
import signal
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from poller.avro import ENTITIES, load_schema
from poller.sample_data import ENTITY_TABLES, create_and_seed, demo_config
from tests.integration.pipeline_helpers import (
    EndOffsets,
    PollerProcess,
    assert_exactly_once,
    config,
    engine,
    execute,
    read_entity,
    read_topics,
    run_once,
    stored_watermarks,
    topics_deleted_after,
    unique_prefix,
    wait_until,
)

pytestmark = pytest.mark.integration

TENANT, OTHER = "acme-corp", "globex"


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A unique topic prefix (also the transactional id prefix); its topics are deleted after."""
    p = unique_prefix()
    with topics_deleted_after(kafka_bootstrap, p):
        yield p


def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'source.sqlite'}"
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    return url


def tenant_keys(url: str, table: str, key: str, tenant: str) -> list[object]:
    t = sa.table(table, sa.column(key), sa.column("user_id"))
    eng = engine(url)
    try:
        with eng.connect() as conn:
            return list(conn.execute(sa.select(t.c[key]).where(t.c.user_id == tenant)).scalars())
    finally:
        eng.dispose()


# ------------------------------------------------------------------ 1. every entity, every db


@pytest.mark.parametrize("mode", ["id", "timestamp"])
@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "sqlite"])
def test_every_entity_end_to_end(
    backend: str,
    mode: str,
    prefix: str,
    kafka_bootstrap: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    url = db_url(backend, request, tmp_path)
    eng = engine(url)
    try:
        counts = create_and_seed(eng, (TENANT, OTHER))
    finally:
        eng.dispose()
    cfg: dict[str, Any] = copy.deepcopy(demo_config(url, TENANT, kafka_bootstrap, prefix))
    cfg["source"]["url"] = url  # the real URL, not the ${PASSWORD} placeholder
    assert set(cfg["entities"]) == set(ENTITIES)
    for ent in cfg["entities"].values():
        column = ent["key"] if mode == "id" else "updated_at"
        ent["batching"] = {"mode": mode, "column": column}
        # Many batch boundaries, some inside the seed's runs of rows sharing one updated_at.
        ent["batch_size"] = 97
    run_once(cfg)

    topics = read_topics(kafka_bootstrap, [f"{prefix}.{name}" for name in ENTITIES])
    for name, ent in cfg["entities"].items():
        table = ENTITY_TABLES[name]
        assert counts[(TENANT, table)] > 0 and counts[(OTHER, table)] > 0, (name, counts)
        mine = tenant_keys(url, table, ent["key"], TENANT)
        theirs = tenant_keys(url, table, ent["key"], OTHER)
        assert len(mine) == counts[(TENANT, table)] and len(theirs) == counts[(OTHER, table)]
        messages = topics[f"{prefix}.{name}"]
        assert_exactly_once(messages, mine, TENANT, f"{backend}/{mode}/{name}")
        assert not {m.key for m in messages} & set(theirs), f"{name}: {OTHER} rows published"
        assert all(m.entity == name for m in messages)
        assert all(m.record["local_id"] == str(m.key) for m in messages), name
    marks = stored_watermarks(kafka_bootstrap, prefix, TENANT)
    assert {n: w.rows_total for n, w in marks.items()} == {
        n: counts[(TENANT, ENTITY_TABLES[n])] for n in ENTITIES
    }


# ------------------------------------------------------------------ helpers of the tests below

PEOPLE_DDL = (
    "CREATE TABLE people (id integer PRIMARY KEY, user_id varchar(64) NOT NULL, "
    "f_name varchar(100) NOT NULL, l_name varchar(100), updated_at timestamp NOT NULL)",
    "CREATE INDEX ix_people_keyset ON people (user_id, updated_at, id)",
)


def people_entity(mode: str, batch_size: int, **extra: Any) -> dict[str, Any]:
    """`customers` read from the table `people` (PostgreSQL)."""
    return {
        "table": "people",
        "key": "id",
        "fields": {"local_id": "id", "first_name": "f_name", "last_name": "l_name",
                   "updated_at": "updated_at"},
        "batching": {"mode": mode, "column": "id" if mode == "id" else "updated_at"},
        "batch_size": batch_size,
        "settle_delay_s": 0,
        **extra,
    }  # fmt: skip


def epoch_ms(naive_utc: dt.datetime) -> int:
    return (naive_utc.replace(tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // (
        dt.timedelta(milliseconds=1)
    )


# ------------------------------------------------------------------ 2. 50,000 rows, one stamp


def test_fifty_thousand_rows_sharing_one_timestamp(
    pg_url: str, prefix: str, kafka_bootstrap: str
) -> None:
    stamp = dt.datetime(2024, 5, 5, 12, 0, 0, 123456)
    # 55,000 rows, one updated_at; every 11th id belongs to another tenant, so the tenant
    # filter and the keyset run through the same equal-timestamp range.
    execute(
        pg_url,
        *PEOPLE_DDL,
        "INSERT INTO people SELECT g, CASE WHEN g % 11 = 0 THEN 'globex' ELSE 'acme' END, "
        "'F' || g, 'L' || g, :stamp FROM generate_series(1, 55000) g",
        params={"stamp": stamp},
    )
    expected = [i for i in range(1, 55_001) if i % 11]
    assert len(expected) == 50_000
    entities = {"customers": people_entity("timestamp", 1_000)}
    cfg = config(pg_url, "acme", kafka_bootstrap, prefix, entities, tenant_column="user_id")
    run_once(cfg)

    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    assert_exactly_once(messages, expected, "acme", "50,000 rows sharing one timestamp")
    assert {m.timestamp_ms for m in messages} == {epoch_ms(stamp)}
    wm = stored_watermarks(kafka_bootstrap, prefix, "acme")["customers"]
    assert (wm.position.cursor, wm.position.key, wm.rows_total) == (stamp, 54_999, 50_000)


# ------------------------------------------------------------------ 3. a hostile tenant id

EVIL = "acme' OR '1'='1"


@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "sqlite"])
def test_tenant_id_is_bound_never_spliced(
    backend: str,
    prefix: str,
    kafka_bootstrap: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    url = db_url(backend, request, tmp_path)
    eng = engine(url)
    try:
        # "acme" is what the injected text would compare with; every tenant has rows.
        counts = create_and_seed(eng, ("acme", EVIL, "globex"))
    finally:
        eng.dispose()
    cfg = copy.deepcopy(demo_config(url, EVIL, kafka_bootstrap, prefix))
    cfg["source"]["url"] = url
    names = ("customers", "receipts", "receipt_lines", "product_categories")
    cfg["entities"] = {n: cfg["entities"][n] for n in names}  # all three batching modes
    run_once(cfg)

    topics = read_topics(kafka_bootstrap, [f"{prefix}.{n}" for n in names])
    for name in names:
        table, key = ENTITY_TABLES[name], cfg["entities"][name]["key"]
        mine = tenant_keys(url, table, key, EVIL)
        assert len(mine) == counts[(EVIL, table)] > 0
        assert counts[("acme", table)] > 0 and counts[("globex", table)] > 0
        messages = topics[f"{prefix}.{name}"]
        assert_exactly_once(messages, mine, EVIL, f"{backend}/{name}")
    marks = stored_watermarks(kafka_bootstrap, prefix, EVIL)
    assert {n: w.rows_total for n, w in marks.items()} == {
        n: counts[(EVIL, ENTITY_TABLES[n])] for n in names
    }


# ------------------------------------------------------------------ 4. updates republish


def test_update_in_timestamp_mode_publishes_the_new_version(
    pg_url: str, prefix: str, kafka_bootstrap: str
) -> None:
    eng = engine(pg_url)
    try:
        counts = create_and_seed(eng, (TENANT, OTHER))
    finally:
        eng.dispose()
    cfg = copy.deepcopy(demo_config(pg_url, TENANT, kafka_bootstrap, prefix))
    cfg["source"]["url"] = pg_url
    receipts = cfg["entities"]["receipts"]
    assert receipts["batching"] == {"mode": "timestamp", "column": "updated_at"}
    cfg["entities"] = {"receipts": receipts}
    topic = f"{prefix}.receipts"
    run_once(cfg)
    first = read_entity(kafka_bootstrap, topic)
    assert_exactly_once(first, tenant_keys(pg_url, "cheques", "cheque_id", TENANT), TENANT, "run 1")
    n = counts[(TENANT, "cheques")]

    target = sorted(tenant_keys(pg_url, "cheques", "cheque_id", TENANT))[len(first) // 2]
    eng = engine(pg_url)
    try:
        with eng.begin() as conn:
            newest = conn.execute(sa.text("SELECT max(updated_at) FROM cheques")).scalar_one()
            new_stamp = newest + dt.timedelta(days=1, microseconds=7)
            assert new_stamp < dt.datetime.now(dt.UTC).replace(tzinfo=None)  # not in the future
            updated = conn.execute(
                sa.text("UPDATE cheques SET cheque_no = 'UPDATED-№1', updated_at = :ts "
                        "WHERE cheque_id = :id"),
                {"ts": new_stamp, "id": target},
            )  # fmt: skip
            assert updated.rowcount == 1
    finally:
        eng.dispose()
    run_once(cfg)

    after = read_entity(kafka_bootstrap, topic)
    assert len(after) == n + 1, f"expected exactly one new message, got {len(after) - n}"
    counts_by_key = Counter(m.key for m in after)
    assert {k: c for k, c in counts_by_key.items() if c != 1} == {target: 2}
    assert set(counts_by_key) == {m.key for m in first}
    old, new = [m for m in after if m.key == target]  # partition/offset order
    assert old.partition == new.partition and old.offset < new.offset
    assert old.record == next(m.record for m in first if m.key == target)
    assert old.record["receipt_number"] != "UPDATED-№1"
    assert new.record["receipt_number"] == "UPDATED-№1"
    assert new.record["updated_at"] == new_stamp.replace(tzinfo=dt.UTC)
    assert new.timestamp_ms == epoch_ms(new_stamp)
    unchanged = {k: v for k, v in new.record.items() if k not in ("receipt_number", "updated_at")}
    assert unchanged == {k: v for k, v in old.record.items() if k in unchanged}
    # the rows of run 1 are still the first n messages' content: nothing else was re-sent
    assert sorted((m.partition, m.offset) for m in first) == sorted(
        (m.partition, m.offset) for m in after if m is not new
    )
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["receipts"]
    assert (wm.position.cursor, wm.position.key, wm.rows_total) == (new_stamp, target, n + 1)


# ------------------------------------------------------------------ 5. restart


ROWS_BEFORE, ROWS_AFTER = 30_000, 4_000


def test_restart_resumes_without_duplicate_or_gap(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    execute(
        pg_url,
        *PEOPLE_DDL,
        "INSERT INTO people SELECT g, CASE WHEN g % 7 = 0 THEN 'globex' ELSE 'acme' END, "
        "'F' || g, 'L' || g, timestamp '2024-01-01' + g * interval '1 second' "
        "FROM generate_series(1, :n) g",
        params={"n": ROWS_BEFORE},
    )
    cfg = config(pg_url, "acme", kafka_bootstrap, prefix,
                 {"customers": people_entity("id", 1_000, poll_interval_s=0.5)},
                 tenant_column="user_id")  # fmt: skip
    cfg["logging"] = {"format": "text", "level": "INFO"}
    watermark_topic = f"{prefix}.watermarks"

    first = PollerProcess(cfg, tmp_path, "continuous")
    ends = EndOffsets(kafka_bootstrap)
    try:
        # Each committed batch adds two offsets to the watermark topic (record, commit marker).
        wait_until(lambda: ends.high(watermark_topic) >= 6, timeout=60,
                   what="3 committed batches", interval=0.02, proc=first)  # fmt: skip
        first.proc.send_signal(signal.SIGTERM)
        code = first.wait(timeout=30)
    finally:
        ends.close()
        first.kill()
    assert code == 0, f"SIGTERM: exit code {code}\n{first.log()[-3000:]}"
    assert "signal 15" in first.log()
    stopped = stored_watermarks(kafka_bootstrap, prefix, "acme")["customers"]
    acme_total = sum(1 for i in range(1, ROWS_BEFORE + 1) if i % 7)
    assert isinstance(stopped.position.cursor, int)
    assert 0 < stopped.rows_total < acme_total, (
        f"the poller had finished ({stopped}) before SIGTERM: the restart is not tested"
    )

    execute(
        pg_url,
        "INSERT INTO people SELECT g, CASE WHEN g % 7 = 0 THEN 'globex' ELSE 'acme' END, "
        "'F' || g, 'L' || g, timestamp '2024-06-01' + g * interval '1 second' "
        "FROM generate_series(:lo, :hi) g",
        params={"lo": ROWS_BEFORE + 1, "hi": ROWS_BEFORE + ROWS_AFTER},
    )
    second = PollerProcess(cfg, tmp_path, "once", "--once")
    try:
        code = second.wait(timeout=120)
    finally:
        second.kill()
    assert code == 0, f"--once: exit code {code}\n{second.log()[-3000:]}"

    expected = [i for i in range(1, ROWS_BEFORE + ROWS_AFTER + 1) if i % 7]
    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    assert_exactly_once(messages, expected, "acme", "restart")
    assert all(m.record["first_name"] == f"F{m.key}" for m in messages)
    wm = stored_watermarks(kafka_bootstrap, prefix, "acme")["customers"]
    assert (wm.position.cursor, wm.rows_total) == (max(expected), len(expected))


# ------------------------------------------------------------------ 6. custom query with JOIN


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_custom_query_with_join_and_where(
    backend: str, prefix: str, kafka_bootstrap: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    ts = "timestamp" if backend == "postgresql" else "datetime(6)"
    execute(
        url,
        "CREATE TABLE shops (id integer PRIMARY KEY, currency varchar(3) NOT NULL)",
        f"CREATE TABLE sales (id integer PRIMARY KEY, user_id varchar(64) NOT NULL, "
        f"shop_id integer NOT NULL, sold_at {ts} NOT NULL, total decimal(18,2) NOT NULL, "
        f"state varchar(10) NOT NULL, updated_at {ts} NOT NULL)",
    )
    currencies = {1: "EUR", 2: "RUB", 3: "USD"}
    base = dt.datetime(2024, 2, 1, 9, 30)
    sales = [
        {
            "id": i,
            "user_id": "acme" if i % 5 else "globex",
            "shop_id": i % 3 + 1,
            "sold_at": base + dt.timedelta(minutes=i, microseconds=i),
            "total": Decimal(i * 101).scaleb(-2),
            "state": ("draft", "closed", "cancelled", "closed")[i % 4],
            "updated_at": base + dt.timedelta(hours=i // 4),  # runs of equal stamps
        }
        for i in range(1, 81)
    ]
    eng = engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO shops VALUES (:id, :currency)"),
                [{"id": k, "currency": v} for k, v in currencies.items()],
            )
            conn.execute(
                sa.text("INSERT INTO sales VALUES (:id, :user_id, :shop_id, :sold_at, :total, "
                        ":state, :updated_at)"),
                sales,
            )  # fmt: skip
    finally:
        eng.dispose()
    query = (
        "SELECT s.id, s.user_id, s.sold_at, s.total, s.state, s.updated_at, "
        "sh.currency AS shop_currency FROM sales s JOIN shops sh ON sh.id = s.shop_id "
        "WHERE s.state <> 'draft' AND s.sold_at >= TIMESTAMP '2000-01-01 00:00:00'"
    )
    entity = {
        "query": query,
        "key": "id",
        "fields": {"local_id": "id", "purchased_at": "sold_at", "total_amount": "total",
                   "status": "state", "currency": "shop_currency", "updated_at": "updated_at"},
        "batching": {"mode": "timestamp", "column": "updated_at"},
        "batch_size": 7,
        "settle_delay_s": 0,
    }  # fmt: skip
    cfg = config(url, "acme", kafka_bootstrap, prefix, {"receipts": entity},
                 tenant_column="user_id")  # fmt: skip
    run_once(cfg)

    wanted = [r for r in sales if r["user_id"] == "acme" and r["state"] != "draft"]
    assert 0 < len(wanted) < sum(r["user_id"] == "acme" for r in sales)
    messages = read_entity(kafka_bootstrap, f"{prefix}.receipts")
    assert_exactly_once(messages, [r["id"] for r in wanted], "acme", f"{backend} query")
    got = {m.key: m.record for m in messages}
    for r in wanted:
        rec = got[r["id"]]
        assert (rec["currency"], rec["status"], rec["total_amount"], rec["purchased_at"]) == (
            currencies[r["shop_id"]],
            r["state"],
            r["total"],
            r["sold_at"].replace(tzinfo=dt.UTC),
        ), r["id"]


# ------------------------------------------------------------------ 7. exact values

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
