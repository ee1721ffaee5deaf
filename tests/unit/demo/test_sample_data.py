"""The sample CRM tables, their seed data and the demo configuration (SQLite only, no services)."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from poller.avro.schemas import ENTITIES, load_schema
from poller.config import Mode, load_config, parse_config
from poller.demo.command import run_demo, write_config
from poller.demo.sample_data import (
    BASE_COUNTS,
    ENTITY_TABLES,
    PASSWORD_ENV,
    ExactDecimal,
    create_and_seed,
    demo_config,
    full_name_sql,
    metadata,
    url_secret,
)

TENANTS = ("acme-corp", "globex")
PG_URL = "postgresql+psycopg2://crm:s3cr%40t%25x@db.example:5432/crm"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], int]]:
    path = tmp_path_factory.mktemp("seed") / "crm.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        counts = create_and_seed(engine, TENANTS)
    finally:
        engine.dispose()
    return path, counts


@pytest.fixture
def db(seeded: tuple[Path, dict[tuple[str, str], int]]) -> Iterator[sqlite3.Connection]:
    # Plain sqlite3: shows what is really stored, with no SQLAlchemy type conversion.
    conn = sqlite3.connect(seeded[0])
    yield conn
    conn.close()


def test_counts_per_tenant_match_the_tables(
    db: sqlite3.Connection, seeded: tuple[Path, dict[tuple[str, str], int]]
) -> None:
    counts = seeded[1]
    assert {t for t, _ in counts} == set(TENANTS)
    assert {table for _, table in counts} == set(ENTITY_TABLES.values())
    for table in ENTITY_TABLES.values():
        sql = f"SELECT user_id, count(*) FROM {table} GROUP BY user_id"  # noqa: S608
        stored = dict(db.execute(sql))
        assert stored == {t: counts[(t, table)] for t in TENANTS}, table
    for table, n in BASE_COUNTS.items():
        assert counts[("acme-corp", table)] == n
        # The second tenant differs, so a leak between tenants shows in the counts too.
        assert 0 < counts[("globex", table)] < n
    assert counts[("acme-corp", "goods_groups")] == 20
    assert sum(counts.values()) > 5_000


def test_seed_is_deterministic_and_scales(tmp_path: Path) -> None:
    def dump(path: Path, scale: int) -> tuple[dict[tuple[str, str], int], list[tuple[object, ...]]]:
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            counts = create_and_seed(engine, TENANTS, scale=scale, seed=7)
        finally:
            engine.dispose()
        with sqlite3.connect(path) as conn:
            return counts, conn.execute("SELECT * FROM cheques ORDER BY cheque_id").fetchall()

    first, second = dump(tmp_path / "a.sqlite", 1), dump(tmp_path / "b.sqlite", 1)
    assert first == second
    doubled, _rows = dump(tmp_path / "c.sqlite", 2)
    assert doubled[("acme-corp", "cheque_items")] == 2 * BASE_COUNTS["cheque_items"]


def test_decimals_are_exact_text_on_sqlite(db: sqlite3.Connection) -> None:
    decimals = [(t.name, c.name, c.type.scale) for t in metadata.sorted_tables
                for c in t.columns if isinstance(c.type, ExactDecimal)]  # fmt: skip
    assert len(decimals) == 13
    for table, column, scale in decimals:
        sql = f"SELECT typeof({column}), {column} FROM {table} WHERE {column} IS NOT NULL"  # noqa: S608
        for kind, value in db.execute(sql):
            assert kind == "text", (table, column)
            # every value carries exactly its scale: 12.30, never 12.3 or 12.300000001
            assert re.fullmatch(rf"-?\d+\.\d{{{scale}}}", value), (table, column, value)
    assert any(q[-3:] != "000" for (q,) in db.execute("SELECT qty FROM cheque_items"))
    # A receipt's total is the exact sum of its lines: nothing went through a float.
    lines: defaultdict[int, Decimal] = defaultdict(Decimal)
    for cheque_id, amount in db.execute("SELECT cheque_id, line_sum FROM cheque_items"):
        lines[cheque_id] += Decimal(amount)
    totals = {c: Decimal(t) for c, t in db.execute("SELECT cheque_id, total_sum FROM cheques")}
    assert totals == lines
    assert any(t % 1 for t in totals.values())  # cents present


def test_unicode_nulls_and_shared_timestamps(db: sqlite3.Connection) -> None:
    names = {r[0] for r in db.execute("SELECT f_name || ' ' || l_name FROM customers")}
    assert any(re.search("[\u0430-\u044f]", n) for n in names)  # Cyrillic
    assert any(re.search("[éëèçñüłåö]", n) for n in names)  # accented Latin
    assert any(re.search("[\u4e00-\u9fff]", n) for n in names)  # CJK
    payloads = [json.loads(p) for (p,) in db.execute("SELECT ev_data FROM crm_events")
                if p is not None]  # fmt: skip
    assert any("🎉" in p["note"] for p in payloads)
    for column in ("m_name", "phone", "email"):
        sql = f"SELECT count(*) FROM customers WHERE {column} IS NULL"  # noqa: S608
        nulls = db.execute(sql).fetchone()
        assert 0 < nulls[0] < 300 * 2, column
    dupes = db.execute(
        "SELECT count(*) FROM (SELECT updated_at FROM cheque_items GROUP BY user_id, updated_at"
        " HAVING count(*) > 10)"
    ).fetchone()
    assert dupes[0] >= 1
    roots = db.execute("SELECT count(*) FROM goods_groups WHERE parent_group_id IS NULL")
    assert roots.fetchone()[0] == 3 * 2
    (depth,) = db.execute("SELECT max(depth) FROM goods_groups").fetchone()
    assert depth >= 3


def test_full_name_expression_on_sqlite(db: sqlite3.Connection) -> None:
    sql = f"SELECT f_name, m_name, l_name, {full_name_sql('sqlite')} FROM customers"  # noqa: S608
    rows = db.execute(sql)
    for first, middle, last, full in rows:
        assert full == " ".join(p for p in (first, middle, last) if p is not None)
    assert "CONCAT_WS" in full_name_sql("postgresql") and "CONCAT_WS" in full_name_sql("mysql")


@pytest.mark.parametrize(
    "url",
    ["sqlite:////tmp/demo.sqlite", PG_URL, "mysql+pymysql://crm:pw@db:3306/crm?charset=utf8mb4"],
)
def test_demo_config_validates_and_maps_every_field(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    raw = demo_config(url, "acme-corp", "127.0.0.1:9092", "demo-x")
    cfg = parse_config(raw, "demo")
    assert cfg.tenant == "acme-corp" and cfg.source.tenant_column == "user_id"
    assert set(cfg.entities) == set(ENTITIES)
    assert {e.batching.mode for e in cfg.entities.values()} == set(Mode)
    assert cfg.entities["customers"].batching.mode is Mode.ID
    assert cfg.entities["customers"].batching.column == "customer_id"
    assert cfg.entities["receipts"].batching.mode is Mode.TIMESTAMP
    assert cfg.entities["receipt_lines"].batching.mode is Mode.TIMESTAMP_ID
    for name, ent in cfg.entities.items():
        assert set(ent.fields) == set(load_schema(name).field_names), name
        assert ent.table == ENTITY_TABLES[name]
        columns = {c.name for c in metadata.tables[ENTITY_TABLES[name]].columns}
        assert {ent.key, ent.batching.column} <= columns
        assert ent.settle_delay_s == 0 and ent.batch_size == 1000
    full_name = cfg.entities["customers"].fields["full_name"]
    assert ("||" in full_name) == url.startswith("sqlite")


def test_config_yaml_holds_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    safe, env = url_secret(PG_URL)
    assert "s3cr" not in safe and f"${{{PASSWORD_ENV}}}" in safe
    path = tmp_path / "c.yaml"
    write_config(path, demo_config(PG_URL, "acme-corp", "127.0.0.1:9092", "demo-x"), TENANTS)
    text = path.read_text(encoding="utf-8")
    assert "s3cr" not in text and PASSWORD_ENV in text
    assert yaml.safe_load(text)["source"]["url"] == safe
    monkeypatch.setenv(PASSWORD_ENV, env[PASSWORD_ENV])
    loaded = make_url(load_config(path).source.url)
    assert loaded.password == "s3cr@t%x"  # the escaped form round-trips to the real password
    assert url_secret("sqlite:///x.db") == ("sqlite:///x.db", {})


def test_seed_only_writes_sqlite_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-out").mkdir()
    (tmp_path / "demo-out" / "demo.sqlite").write_text("stale, not a database")
    args = argparse.Namespace(source=None, tenant="globex", config_out="out/c.yaml",
                              seed_only=True, bootstrap="127.0.0.1:1",
                              registry="http://127.0.0.1:1/apis/ccompat/v7")  # fmt: skip
    assert run_demo(args) == 0
    cfg = load_config(tmp_path / "out" / "c.yaml")
    assert cfg.tenant == "globex" and cfg.kafka.topic_prefix.startswith("demo-")
    # The demo publishes in the Confluent format, its config naming the registry.
    assert cfg.kafka.format == "confluent" and cfg.schema_registry is not None
    assert cfg.schema_registry.url == "http://127.0.0.1:1/apis/ccompat/v7"
    with sqlite3.connect(tmp_path / "demo-out" / "demo.sqlite") as conn:
        tenants = dict(conn.execute("SELECT user_id, count(*) FROM customers GROUP BY user_id"))
    assert set(tenants) == {"globex", "acme-corp"}  # recreated, with the other tenant too
    assert "wrote out/c.yaml" in capsys.readouterr().out
