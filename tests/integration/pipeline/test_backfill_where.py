"""Backfill through the keyset range API on the real PostgreSQL and MariaDB: a hostile `--where`
cannot escape the tenant filter, a condition is test-run before it is stored, a failing backfill
is stored as failed and does not stop the live poller, and the tenant filter follows the
tenant column's type (docs/keyset.md)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from poller.batch import BEGINNING
from poller.config import parse_config
from poller.kafka import backfill_state as bf_state
from poller.kafka.backfill_state import BackfillState, load_all
from poller.kafka.publisher import TransactionalPublisher
from poller.pipeline.backfill import Backfiller, new_request
from poller.source.reader import make_engine
from tests.integration.pipeline.helpers import (
    OTHER,
    TENANT,
    config,
    execute,
    people_entity,
    read_entity,
    run_once,
    stored_watermarks,
)
from tests.integration.pipeline.test_backfill import (
    backfill_cmd,
    backfill_state,
    in_process,
    write_config,
)

pytestmark = pytest.mark.integration

BACKENDS = ["postgresql", "mariadb"]
TEXT_TYPE = {"postgresql": "text", "mariadb": "longtext"}
AT = dt.datetime(2024, 3, 1, 8, 0, 0)


def people(url: str, backend: str, n: int) -> None:
    """`people` with a wide l_name: ids 1..n of the tenant, n+1..n+5 of another tenant."""
    execute(
        url,
        "CREATE TABLE people (id integer PRIMARY KEY, user_id varchar(64) NOT NULL, "
        f"f_name varchar(100) NOT NULL, l_name {TEXT_TYPE[backend]}, "
        "updated_at timestamp NOT NULL)",
    )
    add_people(url, 1, n, TENANT)
    add_people(url, n + 1, n + 5, OTHER)


def add_people(url: str, first: int, last: int, tenant: str) -> None:
    rows = [
        {"id": i, "t": tenant, "f": f"F{i}", "at": AT + dt.timedelta(seconds=i)}
        for i in range(first, last + 1)
    ]
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text("INSERT INTO people VALUES (:id, :t, :f, NULL, :at)"), rows)
    finally:
        eng.dispose()


def stored_backfill(cfg: dict[str, Any]) -> BackfillState | None:
    app = parse_config(cfg)
    topic = app.kafka.watermark_topic_name(TENANT)
    return load_all(app.kafka, topic, TENANT, timeout_s=15, missing_ok=True).backfills.get(
        "customers"
    )


def url_of(backend: str, request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    return url


HOSTILE = [
    "1=1) OR (1=1",  # the reported escape: closes the wrapping parenthesis
    "(1=1)) OR ((1=1",
    "1=1 -- ",  # a line comment swallowing the rest of the statement
    "1=1 /*",
    "f_name = 'x' /* ) OR (1=1 */",
    "1=1; DELETE FROM people",
    "1=0 UNION SELECT * FROM people",
    "id IN (SELECT id FROM people WHERE user_id = 'globex')",
    "no_such_column = 1",  # parses; the database refuses it in the zero-row test run
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_where_is_refused_before_it_is_stored_and_never_leaks_a_tenant(
    backend: str, request: pytest.FixtureRequest, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    url = url_of(backend, request)
    people(url, backend, 20)
    entities = {"customers": people_entity("timestamp", 100)}
    cfg = config(url, TENANT, kafka_bootstrap, prefix, entities, tenant_column="user_id")
    path = write_config(cfg, tmp_path / "c.yaml")
    bounds = ["--from", AT.isoformat(), "--to", (AT + dt.timedelta(days=1)).isoformat()]
    for condition in HOSTILE:
        refused = in_process(
            backfill_cmd(path, "--entity", "customers", *bounds, "--where", condition, "--queue")
        )
        assert refused.returncode == 2, (condition, refused.stdout, refused.stderr)
        assert "--where" in refused.stderr or "does not fit" in refused.stderr, refused.stderr
        assert stored_backfill(cfg) is None, f"{condition!r} was stored"

    # Accepted: a quote escaped the MySQL way is read as the server reads it (a string), so
    # it selects nothing rather than everything.
    tricky = "f_name = 'a\\' ) OR (1=1 '" if backend == "mariadb" else "f_name <> 'F3'"
    done = in_process(backfill_cmd(path, "--entity", "customers", *bounds, "--where", tricky))
    assert done.returncode == 0, done.stdout + done.stderr
    messages = read_entity(kafka_bootstrap, f"{prefix}.customers")
    assert {m.tenant for m in messages} <= {TENANT}
    keys = Counter(m.key for m in messages)
    assert all(k <= 20 for k in keys), f"another tenant's row was published: {sorted(keys)}"
    assert set(keys) == (set() if backend == "mariadb" else set(range(1, 21)) - {3})


@pytest.mark.parametrize("backend", BACKENDS)
def test_backfill_reads_the_cursor_as_the_live_reader_does(
    backend: str, request: pytest.FixtureRequest, prefix: str, kafka_bootstrap: str
) -> None:
    """The backfill's statements know the cursor column's type (on SQL Server/Oracle a
    datetime cursor is bound as exact text; without it the bounds were truncated)."""
    url = url_of(backend, request)
    people(url, backend, 3)
    entities = {"customers": people_entity("timestamp", 100)}
    raw = config(url, TENANT, kafka_bootstrap, prefix, entities, tenant_column="user_id")
    app = parse_config(raw)
    eng = make_engine(app.source)
    backfiller = Backfiller(app, eng)
    try:
        low, high = AT.isoformat(), (AT + dt.timedelta(days=1)).isoformat()
        req = new_request(app, "customers", "cursor", low, high, None, eng.dialect.name)
        backfiller.submit(req)
        assert backfiller.jobs["customers"].query.q.cursor_type.kind == "datetime"
        backfiller.run()
        assert backfiller.states["customers"].rows == 3
    finally:
        backfiller.close()
        eng.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_oversized_row_fails_the_backfill_alone_and_the_live_poller_goes_on(
    backend: str, request: pytest.FixtureRequest, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A row over the topic's max.message.bytes is a bad row in a backfill too (before, the
    broker refused the commit and a poller replaying the backfill retried it forever). Under
    `on_bad_row: fail` the backfill is stored as failed with its cause; the live rows still
    flow and `run --once` returns."""
    url = url_of(backend, request)
    people(url, backend, 20)
    entity = people_entity("id", 100, on_bad_row="fail")
    entity["fields"]["last_name"] = "l_name"
    cfg = config(url, TENANT, kafka_bootstrap, prefix, {"customers": entity},
                 tenant_column="user_id")  # fmt: skip
    run_once(cfg)
    # id mode never reads row 10 again live; only the backfill meets its new, huge value
    big = secrets.token_hex(1_600_000)  # 3.2 MB of hex: over 1 MB even compressed
    execute(url, "UPDATE people SET l_name = :big WHERE id = 10", params={"big": big})
    path = write_config(cfg, tmp_path / "c.yaml")
    queued = in_process(backfill_cmd(path, "--entity", "customers", "--from", "1", "--to", "20",
                                     "--queue"))  # fmt: skip
    assert queued.returncode == 0, queued.stdout + queued.stderr
    add_people(url, 31, 35, TENANT)

    run_once(cfg)  # returns: the failed backfill does not stop the live loop

    state = backfill_state(cfg, "customers")
    assert state is not None and state.done and state.error is not None, state
    assert "BadRowError" in state.error and "bytes" in state.error, state.error
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert wm.position.cursor == 35
    keys = Counter(m.key for m in read_entity(kafka_bootstrap, f"{prefix}.customers"))
    assert set(keys) == set(range(1, 21)) | set(range(31, 36))
    assert max(keys.values()) <= 2
    assert keys[10] == 1, "the oversized row was published"


def test_a_uuid_tenant_written_in_upper_case_is_found(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The byte-exact tenant comparison is for character columns: on a `uuid` column it
    compared 'A0EE..' with 'a0ee..' and matched 0 rows, silently. `poller check` now also
    warns when a tenant has no row in an entity."""
    tenant = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"
    other = "b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"
    execute(
        pg_url,
        "CREATE TABLE people (id integer PRIMARY KEY, user_id uuid NOT NULL, "
        "f_name varchar(100) NOT NULL, l_name varchar(100), updated_at timestamp NOT NULL)",
        "INSERT INTO people SELECT g, CASE WHEN g > 5 THEN :other ELSE lower(:t) END::uuid, "
        "'F' || g, NULL, timestamp '2024-01-01' FROM generate_series(1, 8) g",
        params={"t": tenant, "other": other},
    )
    entities = {"customers": people_entity("id", 100)}
    cfg = config(pg_url, tenant, kafka_bootstrap, prefix, entities, tenant_column="user_id")
    run_once(cfg)
    keys = Counter(m.key for m in read_entity(kafka_bootstrap, f"{prefix}.customers"))
    assert keys == Counter(dict.fromkeys(range(1, 6), 1))

    missing = dict(cfg, tenant="c2eebc99-9c0b-4ef8-bb6d-6bb9bd380a13")
    path = write_config(missing, tmp_path / "missing.yaml")
    checked = in_process([str(path), "check", "--config", str(path)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "has 0 rows" in checked.stdout and "'customers'" in checked.stdout, checked.stdout
    path = write_config(cfg, tmp_path / "present.yaml")
    checked = in_process([str(path), "check", "--config", str(path)])
    assert "has 0 rows" not in checked.stdout, checked.stdout


def test_a_condition_that_fails_on_a_row_fails_the_backfill_not_the_poller(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`CAST(f_name AS integer) > 0` passes the zero-row test run and fails on the first row
    it reads. Replayed by a poller, the backfill is stored as failed with the database's
    reason; before, the poller crash-looped on it."""
    people(pg_url, "postgresql", 5)
    entities = {"customers": people_entity("id", 100)}
    cfg = config(pg_url, TENANT, kafka_bootstrap, prefix, entities, tenant_column="user_id")
    path = write_config(cfg, tmp_path / "c.yaml")
    where = "CAST(f_name AS integer) > 0"
    queued = in_process(backfill_cmd(path, "--entity", "customers", "--from", "1", "--to", "5",
                                     "--where", where, "--queue"))  # fmt: skip
    assert queued.returncode == 0, queued.stdout + queued.stderr

    run_once(cfg)

    state = backfill_state(cfg, "customers")
    assert state is not None and state.error is not None and state.rows == 0, state
    assert "refuses a value" in state.error and "integer" in state.error, state.error
    keys = Counter(m.key for m in read_entity(kafka_bootstrap, f"{prefix}.customers"))
    assert keys == Counter(dict.fromkeys(range(1, 6), 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hostile_condition_already_in_the_topic_is_not_replayed(
    backend: str, request: pytest.FixtureRequest, prefix: str, kafka_bootstrap: str
) -> None:
    """A pending backfill stored by an older release with `1=1) OR (1=1` (which escaped the
    tenant filter then): a poller starting with it pending validates it again, stores it as
    failed, publishes no row of another tenant, and serves its live entities."""
    url = url_of(backend, request)
    people(url, backend, 5)
    entities = {"customers": people_entity("id", 100)}
    cfg = config(url, TENANT, kafka_bootstrap, prefix, entities, tenant_column="user_id")
    run_once(cfg)
    app = parse_config(cfg)
    now = dt.datetime.now(dt.UTC)
    hostile = BackfillState(TENANT, "customers", "cursor", 1, 100, "1=1) OR (1=1", BEGINNING,
                            0, False, now, now)  # fmt: skip
    pub = TransactionalPublisher(app.kafka, f"{prefix}.planted")
    pub.start()
    try:
        pub.begin()
        pub.send(app.kafka.watermark_topic_name(TENANT), bf_state.key_bytes(TENANT, "customers"),
                 bf_state.encode(hostile))  # fmt: skip
        pub.commit()
    finally:
        pub.close()
    add_people(url, 31, 32, TENANT)

    run_once(cfg)

    state = backfill_state(cfg, "customers")
    assert state is not None and state.error is not None and "--where" in state.error, state
    keys = Counter(m.key for m in read_entity(kafka_bootstrap, f"{prefix}.customers"))
    assert keys == Counter(dict.fromkeys([1, 2, 3, 4, 5, 31, 32], 1)), keys
