"""Keyset batching against the real services: shared timestamps, bound tenant ids, updates,
restarts without duplicate or gap, custom queries.
"""

from __future__ import annotations

import copy
import datetime as dt
import signal
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from poller.demo.sample_data import ENTITY_TABLES, create_and_seed, demo_config
from tests.integration.pipeline.helpers import (
    OTHER,
    PEOPLE_DDL,
    TENANT,
    EndOffsets,
    PollerProcess,
    assert_exactly_once,
    config,
    db_url,
    engine,
    epoch_ms,
    execute,
    people_entity,
    read_entity,
    read_topics,
    run_once,
    stored_watermarks,
    tenant_keys,
    wait_until,
)

pytestmark = pytest.mark.integration
EVIL = "acme' OR '1'='1"
ROWS_BEFORE, ROWS_AFTER = 30_000, 4_000


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
    # Paced, so that however fast the machine, SIGTERM after 3 batches comes long before the
    # 26th: the table takes at least 1.2 s.
    cfg["source"]["max_rows_per_second"] = 20_000
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
