"""Real-world schemas against the real services: key types and composite keys, tenants that
differ only by case, trailing spaces or accents, DATE cursors, NULL cursors, and a stored
watermark that no longer fits the configuration."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from poller.config import parse_config
from poller.errors import ConfigError, SchemaMismatchError
from poller.ops.metrics import Metrics
from poller.pipeline.preflight import mapping_problems
from poller.pipeline.runner import Poller
from poller.source.reader import make_engine
from tests.integration.pipeline.helpers import (
    TENANT,
    assert_exactly_once,
    config,
    db_url,
    engine,
    read_entity,
    run_once,
    stored_watermarks,
)

pytestmark = pytest.mark.integration

T0 = dt.datetime(2024, 3, 1, 12, 0, 0)
T1 = dt.datetime(2024, 3, 2, 12, 0, 0)


def customers(table: str, **extra: Any) -> dict[str, Any]:
    return {
        "table": table,
        "key": "id",
        "fields": {"local_id": "f_name", "first_name": "f_name", "updated_at": "updated_at"},
        "batching": {"mode": "timestamp", "column": "updated_at"},
        "batch_size": 2,
        "settle_delay_s": 0,
        **extra,
    }


def create(url: str, ddl: str, rows: list[dict[str, Any]], table: str = "t") -> None:
    eng = engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text(ddl))
            if rows:
                cols = list(rows[0])
                conn.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(cols)}) "  # noqa: S608 - test DDL
                        f"VALUES ({', '.join(':' + c for c in cols)})"
                    ),
                    rows,
                )
    finally:
        eng.dispose()


def insert(url: str, rows: list[dict[str, Any]], table: str = "t") -> None:
    create(url, "SELECT 1", rows, table)


# --- any key type, composite keys ------------------------------------------------------------

KEY_TYPES: dict[str, dict[str, str]] = {
    "postgresql": {
        "uuid": "uuid",
        "bytes": "bytea",
        "decimal": "numeric(12,3)",
        "string": "varchar(20)",
    },
    "mariadb": {
        "uuid": "UUID",
        "bytes": "BINARY(16)",
        "decimal": "DECIMAL(12,3)",
        "string": "VARCHAR(20)",
    },
}


def key_value(kind: str, i: int) -> Any:
    # Values whose order differs from i, so the keyset really orders by the key.
    n = (i * 7919) % 101
    if kind == "uuid":
        return uuid.UUID(int=(n << 64) | i)
    if kind == "bytes":
        return bytes([n, i]) + bytes(14)
    if kind == "decimal":
        return Decimal(n) + Decimal(i) / 1000
    return f"k{n:03d}-{i}"


def json_key(kind: str, value: Any) -> object:
    if kind == "bytes":
        return bytes(value).hex()
    return str(value)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@pytest.mark.parametrize("kind", ["uuid", "bytes", "decimal", "string"])
def test_composite_key_of_any_type(
    backend: str,
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
) -> None:
    """`key: [k, line_no]` with k of each type: the keyset, the message key and the stored
    watermark (bound back after a restart) all keep the type. Today a UUID crashes every run
    and a composite key is not accepted."""
    url = db_url(backend, request, tmp_path)
    ddl = (
        f"CREATE TABLE t (k {KEY_TYPES[backend][kind]} NOT NULL, line_no integer NOT NULL, "
        "user_id varchar(64) NOT NULL, f_name varchar(64) NOT NULL, "
        "updated_at timestamp(6) NOT NULL, PRIMARY KEY (k, line_no))"
    )
    rows = [
        {"k": key_value(kind, i), "line_no": ln, "user_id": TENANT, "f_name": f"r{i}.{ln}",
         "updated_at": T0}
        for i in range(1, 6) for ln in (2, 1)
    ]  # fmt: skip
    create(url, ddl, rows)
    ent = customers("t", key=["k", "line_no"])
    cfg = config(url, TENANT, kafka_bootstrap, prefix, {"customers": ent})
    run_once(cfg)
    later = [{**r, "updated_at": T1, "line_no": r["line_no"] + 10} for r in rows[:3]]
    insert(url, later)
    run_once(cfg)  # resumes from a stored (T0, (k, line_no)) position

    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    expected = {(json_key(kind, r["k"]), r["line_no"]) for r in rows + later}
    if backend == "mariadb" and kind == "uuid":  # MariaDB hands UUIDs out as text
        expected = {(str(k), ln) for k, ln in expected}
    got = [m for m in messages if isinstance(m.key, tuple)]
    assert len(got) == len(messages)
    assert_exactly_once(got, expected, TENANT, f"{backend} {kind} composite key")
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert wm.columns == ["updated_at", "k", "line_no"]
    assert isinstance(wm.position.key, tuple) and len(wm.position.key) == 2


# --- tenants compared exactly -----------------------------------------------------------------

DECOYS = ["ACME", "Acme", "acme ", "acmé", " acme"]
TENANT_COLUMN = {
    # Collations that make `=` loose on purpose: the poller must still compare exactly.
    "postgresql": 'varchar(64) COLLATE "loose"',
    "mariadb": "varchar(64) COLLATE utf8mb4_general_ci",
    "sqlite": "varchar(64) COLLATE NOCASE",
}


@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "sqlite"])
def test_tenant_is_compared_exactly(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
) -> None:
    """Decoy tenants differing by case, trailing/leading space and accents: on MariaDB's
    default collation (and PostgreSQL's non-deterministic ones, SQLite's NOCASE) a plain `=`
    matches them, and tenant acme would receive their rows."""
    url = db_url(backend, request, tmp_path)
    if backend == "postgresql":
        create(
            url,
            "CREATE COLLATION loose (provider = icu, locale = 'und-u-ks-level1', "
            "deterministic = false)",
            [],
        )
    ddl = (
        f"CREATE TABLE t (id integer PRIMARY KEY, user_id {TENANT_COLUMN[backend]} NOT NULL, "
        "f_name varchar(64) NOT NULL, updated_at timestamp NOT NULL)"
    )
    tenants = ["acme", *DECOYS]
    rows = [
        {"id": i, "user_id": t, "f_name": f"{t}-{i}", "updated_at": T0 + dt.timedelta(seconds=i)}
        for i, t in enumerate(tenants * 3)
    ]
    create(url, ddl, rows)
    cfg = config(
        url, "acme", kafka_bootstrap, prefix, {"customers": customers("t")}, tenant_column="user_id"
    )
    run_once(cfg)
    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    mine = {r["id"] for r in rows if r["user_id"] == "acme"}
    assert_exactly_once(messages, mine, "acme", f"{backend} tenant acme among decoys")


# --- DATE cursors ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_date_cursor_reads_only_whole_days(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
) -> None:
    """Rows of today may still change today: only days wholly behind the bound are read
    (today a row updated later the same day would be behind the watermark, and lost)."""
    url = db_url(backend, request, tmp_path)
    today = dt.datetime.now(dt.UTC).date()
    ddl = (
        "CREATE TABLE t (id integer PRIMARY KEY, f_name varchar(64) NOT NULL, "
        "updated_at date NOT NULL)"
    )
    rows = [
        {"id": 1, "f_name": "two days ago", "updated_at": today - dt.timedelta(days=2)},
        {"id": 2, "f_name": "yesterday", "updated_at": today - dt.timedelta(days=1)},
        {"id": 3, "f_name": "today", "updated_at": today},
    ]
    create(url, ddl, rows)
    ent = customers("t")
    ent["fields"] = {"local_id": "f_name", "birth_date": "updated_at"}
    cfg = config(url, TENANT, kafka_bootstrap, prefix, {"customers": ent})
    run_once(cfg)
    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    assert sorted(str(m.key) for m in messages) == ["1", "2"]
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert wm.position.cursor == today - dt.timedelta(days=1)


# --- NULL cursors ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@pytest.mark.parametrize("mode", ["timestamp", "id"])
def test_nullable_cursor_is_refused_unless_skipped(
    backend: str,
    mode: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
) -> None:
    """A nullable cursor: `check` names it with the count of NULL rows and the fixes, `run`
    refuses it; with `null_cursor: skip` the other rows are published once (in id mode on
    MariaDB, which sorts NULLs first, a NULL used to become the position and loop) and the
    skipped rows are counted."""
    url = db_url(backend, request, tmp_path)
    ddl = (
        "CREATE TABLE t (id integer PRIMARY KEY, seq integer NULL, f_name varchar(64) NOT NULL, "
        "updated_at timestamp(6) NULL)"
    )
    rows = [
        {"id": i, "seq": None if i % 3 == 0 else i, "f_name": f"r{i}",
         "updated_at": None if i % 3 == 0 else T0 + dt.timedelta(seconds=i)}
        for i in range(1, 10)
    ]  # fmt: skip
    create(url, ddl, rows)
    ent = customers("t", batch_size=2)
    if mode == "id":
        ent["batching"] = {"mode": "id", "column": "seq"}
    cfg = config(url, TENANT, kafka_bootstrap, prefix, {"customers": ent})
    column = "seq" if mode == "id" else "updated_at"

    parsed = parse_config(cfg)
    eng = make_engine(parsed.source)
    try:
        problems = mapping_problems(parsed, eng)
    finally:
        eng.dispose()
    assert len(problems) == 1, problems
    assert f"batching.column '{column}' is nullable (3 row(s)" in problems[0]
    assert "NOT NULL" in problems[0] and "COALESCE" in problems[0]
    assert "null_cursor: skip" in problems[0]
    with pytest.raises(SchemaMismatchError, match="nullable"):
        run_once(cfg)

    ent["null_cursor"] = "skip"
    metrics = Metrics()
    Poller(parse_config(cfg), metrics).run(once=True)
    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    assert_exactly_once(messages, {r["id"] for r in rows if r["seq"]}, TENANT, "non-NULL rows")
    skipped = metrics.null_cursor_rows.labels(TENANT, "customers")._value.get()
    assert skipped == 3


# --- a stored watermark that does not fit the configuration ----------------------------------


def test_stored_watermark_of_another_mode_stops_with_the_reset_command(
    pg_url: str, kafka_bootstrap: str, prefix: str
) -> None:
    """Switching an entity from `id` to `timestamp` (or to another column) used to compare
    the stored id with the timestamp column, silently publishing nothing. Now: exit 2 with
    the command to run."""
    ddl = (
        "CREATE TABLE t (id integer PRIMARY KEY, f_name varchar(64) NOT NULL, "
        "updated_at timestamp NOT NULL)"
    )
    create(pg_url, ddl, [{"id": i, "f_name": f"r{i}", "updated_at": T0} for i in range(1, 4)])
    by_id = customers("t", batching={"mode": "id", "column": "id"})
    run_once(config(pg_url, TENANT, kafka_bootstrap, prefix, {"customers": by_id}))
    by_time = config(pg_url, TENANT, kafka_bootstrap, prefix, {"customers": customers("t")})
    poller = Poller(parse_config(by_time))
    poller.config_path = "poller.yaml"
    with pytest.raises(ConfigError) as err:
        poller.run(once=True)
    assert err.value.exit_code == 2
    text = str(err.value)
    assert "entities.customers: the stored watermark (mode id on id, id" in text
    assert "mode timestamp on updated_at, id" in text
    assert "poller watermarks reset --config poller.yaml --entity customers --to earliest" in text


def test_naive_start_on_a_zone_aware_cursor(pg_url: str, kafka_bootstrap: str, prefix: str) -> None:
    """`start: 2024-03-01T13:30:00` (naive) on a timestamptz column is wall-clock time in
    source.timezone. Comparing it with the aware values the driver returns used to raise a
    bare TypeError on every restart."""
    ddl = (
        "CREATE TABLE t (id integer PRIMARY KEY, f_name varchar(64) NOT NULL, "
        "updated_at timestamptz NOT NULL)"
    )
    berlin = dt.timezone(dt.timedelta(hours=1))  # CET on 2024-03-01
    rows = [
        {"id": i, "f_name": f"r{i}", "updated_at": dt.datetime(2024, 3, 1, 12, i, tzinfo=dt.UTC)}
        for i in range(1, 6)
    ]
    create(pg_url, ddl, rows)
    ent = customers("t", start="2024-03-01T13:02:00")  # 12:02 UTC in Europe/Berlin
    cfg = config(
        pg_url, TENANT, kafka_bootstrap, prefix, {"customers": ent}, timezone="Europe/Berlin"
    )
    run_once(cfg)
    run_once(cfg)  # restarts from the stored aware position
    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    assert_exactly_once(messages, {3, 4, 5}, TENANT, "rows after the naive start")
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert wm.position.cursor == dt.datetime(2024, 3, 1, 13, 5, tzinfo=berlin)
