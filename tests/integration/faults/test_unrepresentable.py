"""Values that cannot be represented are bad rows, never changed values: PostgreSQL
'infinity'/'-infinity' (psycopg2 turns them into 9999-12-31 / 0001-01-01), years outside
1..9999 (the driver raised and every batch failed), NaN and infinite numerics, MySQL zero dates;
and a row whose message is larger than its topic's max.message.bytes (read from the topic at
start), which the broker would refuse at every commit."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.faults.harness import (
    Scenario,
    SourceDB,
    customers_entity,
    read_committed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UTC = dt.UTC


def dead_letters(scenario: Scenario, entity: str = "customers") -> dict[str, dict[str, Any]]:
    """The entity's dead letters by key (as text)."""
    out = {}
    for rec in read_committed(scenario.bootstrap, scenario.dead_letter_topic):
        assert rec.value is not None
        letter = json.loads(rec.value)
        if letter["entity"] == entity:
            out[str(letter["key"])] = letter
    return out


def published(scenario: Scenario, entity: str) -> dict[str, dict[str, object]]:
    delivery = scenario.delivery(entity)
    assert not delivery.problems, delivery.problems
    assert all(len(v) == 1 for v in delivery.by_id.values()), delivery.by_id
    return {k: v[0] for k, v in delivery.by_id.items()}


def test_postgres_values_without_a_value_are_dead_lettered(
    scenario: Scenario, pg: SourceDB
) -> None:
    pg.execute(
        "CREATE TABLE people (id bigint PRIMARY KEY, full_name text NOT NULL, birth date, "
        "registered timestamp, updated_at timestamptz NOT NULL)",
        "INSERT INTO people VALUES "
        "(1, 'ok one', '1980-05-01', '2020-01-01 10:00', '2024-01-01 00:00+00'), "
        "(2, 'inf', '1980-05-01', 'infinity', '2024-01-01 00:00+00'), "
        "(3, 'minus inf', '1980-05-01', '-infinity', '2024-01-01 00:00+00'), "
        "(4, 'year 10000', '1980-05-01', '10000-01-01 00:00', '2024-01-01 00:00+00'), "
        "(5, 'born BC', '0044-03-15 BC', '2020-01-01 10:00', '2024-01-01 00:00+00'), "
        "(6, 'tz minus inf', NULL, NULL, '-infinity'), "
        "(7, 'ok seven', '9999-12-31', '9999-12-31 23:59:59', '2024-01-02 00:00+00')",
        "CREATE TABLE balances (id bigint PRIMARY KEY, customer_id text NOT NULL, "
        "balance numeric, updated_at timestamp)",
        "INSERT INTO balances VALUES (1, 'c1', 10.5, NULL), (2, 'c2', 'NaN', NULL), "
        "(3, 'c3', 'Infinity', NULL), (4, 'c4', 3, NULL)",
    )
    people = customers_entity(
        "id",
        batch_size=3,
        table="people",
        fields={
            "local_id": "id",
            "full_name": "full_name",
            "birth_date": "birth",
            "register_date": "registered",
            "updated_at": "updated_at",
        },
        on_bad_row="dead_letter",
    )
    balances = {
        "table": "balances",
        "key": "id",
        "fields": {"local_id": "id", "customer_id": "customer_id", "balance": "balance"},
        "batching": {"mode": "id", "column": "id"},
        "on_bad_row": "dead_letter",
    }
    cfg = scenario.config(pg.url, {"customers": people, "bonus_balances": balances})
    scenario.run_once(cfg, timeout=120)

    got = published(scenario, "customers")
    assert sorted(got, key=int) == ["1", "7"], got  # never 9999-12-31 for 'infinity'
    # A real 9999-12-31 is a value like any other (an "open end" in many schemas).
    assert got["7"]["birth_date"] == dt.date(9999, 12, 31)
    assert got["7"]["register_date"] == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    letters = dead_letters(scenario)
    expected_people = {
        "2": ("register_date", "infinity"),
        "3": ("register_date", "-infinity"),
        "4": ("register_date", "outside the years 1..9999"),
        "5": ("birth_date", "outside the years 1..9999"),
        "6": ("updated_at", "-infinity"),
    }
    for key, (field, reason) in expected_people.items():
        letter = letters.get(key)
        assert letter is not None, (key, letters)
        assert letter["field"] == field and reason in letter["error"], letter
    assert got["1"]["register_date"] == dt.datetime(2020, 1, 1, 10, tzinfo=UTC)

    balances_got = published(scenario, "bonus_balances")
    assert sorted(balances_got, key=int) == ["1", "4"], balances_got
    assert balances_got["1"]["balance"] == Decimal("10.50")
    for key, text in (("2", "NaN"), ("3", "Infinity")):
        letter = dead_letters(scenario, "bonus_balances")[key]
        assert letter["field"] == "balance" and "not a finite number" in letter["error"], letter
        assert letter["row"]["balance"] == text, letter


def test_an_infinite_cursor_is_dead_lettered_and_passed(scenario: Scenario, pg: SourceDB) -> None:
    """Timestamp mode with '-infinity' in the cursor column: the row is a bad row, and the
    position after it (its text) binds back as the same literal."""
    pg.create_customers()
    pg.seed_customers(6)
    pg.execute("UPDATE customers SET updated_at = '-infinity' WHERE id = 1")
    entity = customers_entity("timestamp", batch_size=1, on_bad_row="dead_letter", settle_delay_s=0)
    cfg = scenario.config(pg.url, {"customers": entity})
    scenario.run_once(cfg, timeout=120)
    got = published(scenario, "customers")
    assert sorted(got, key=int) == ["2", "3", "4", "5", "6"], got
    letters = dead_letters(scenario)
    assert list(letters) == ["1"] and "-infinity" in letters["1"]["error"], letters
    scenario.run_once(cfg, timeout=120, label="rerun")  # resumes after the stored position
    assert len(scenario.records("customers")) == 5


def test_mariadb_zero_dates_are_bad_rows(scenario: Scenario, maria: SourceDB) -> None:
    maria.execute(
        "CREATE TABLE people (id BIGINT PRIMARY KEY, full_name VARCHAR(40) NOT NULL, "
        "birth DATE, registered DATETIME(6))",
        "SET SESSION sql_mode = ''",
        "INSERT INTO people VALUES (1, 'ok', '1980-05-01', '2020-01-01 10:00:00'), "
        "(2, 'zero date', '0000-00-00', '2020-01-01 10:00:00'), "
        "(3, 'zero datetime', '1980-05-01', '0000-00-00 00:00:00'), "
        "(4, 'zero month', '2024-00-15', '2020-01-01 10:00:00'), "
        "(5, 'ok', NULL, NULL)",
    )
    entity = customers_entity(
        "id",
        table="people",
        fields={
            "local_id": "id",
            "full_name": "full_name",
            "birth_date": "birth",
            "register_date": "registered",
        },
        on_bad_row="dead_letter",
    )
    cfg = scenario.config(maria.url, {"customers": entity})
    scenario.run_once(cfg, timeout=120)
    assert sorted(published(scenario, "customers"), key=int) == ["1", "5"]
    letters = dead_letters(scenario)
    assert {k: v["field"] for k, v in letters.items()} == {
        "2": "birth_date",
        "3": "register_date",
        "4": "birth_date",
    }, letters


@pytest.mark.parametrize("policy", ["dead_letter", "fail"])
def test_a_row_larger_than_the_topic_allows_is_a_bad_row(
    scenario: Scenario, pg: SourceDB, policy: str
) -> None:
    pg.create_customers()
    pg.seed_customers(40)
    # 64,000 random hex digits: lz4 cannot shrink them below the topic's 20,000 bytes.
    pg.execute(
        "UPDATE customers SET full_name = (SELECT string_agg(md5(random()::text || g), '') "
        "FROM generate_series(1, 2000) g) WHERE id = 25",
        # Larger still, but it compresses to almost nothing: the broker takes it.
        "UPDATE customers SET full_name = repeat('x', 100000) WHERE id = 12",
    )
    big = pg.rows("SELECT full_name FROM customers WHERE id = 25")[0][0]
    entity = customers_entity("id", batch_size=10, on_bad_row=policy)
    cfg = scenario.config(
        pg.url,
        {"customers": entity},
        kafka={"topic_config": {"cleanup.policy": "compact", "max.message.bytes": "20000"}},
    )
    proc = scenario.start(cfg, once=True, label="poller")
    rc = proc.wait(timeout=120)  # before: every commit refused, retried forever
    log = proc.log()
    got = published(scenario, "customers")
    assert got["12"]["full_name"] == "x" * 100000
    if policy == "fail":
        assert rc == 4, proc.describe()
        assert "key 25" in log and "'(message)'" in log and "max.message.bytes" in log, log
        assert sorted(got, key=int) == [str(i) for i in range(1, 25)]
        return
    assert rc == 0, proc.describe()
    assert sorted(got, key=int) == [str(i) for i in range(1, 41) if i != 25]
    letter = dead_letters(scenario)["25"]
    assert letter["field"] == "(message)" and "max.message.bytes" in letter["error"], letter
    assert letter["row"]["full_name"] == big  # the dead-letter topic (1 MB) takes it
