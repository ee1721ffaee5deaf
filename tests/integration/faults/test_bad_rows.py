"""Rows that cannot be encoded.

Policy `fail` (the default): the process exits with code 4 naming tenant, entity, key, field
and the value's type; the rows before the bad one are published and the watermark stops just
before it, so nothing after it is published, and a rerun stops at the same row again.

Policy `dead_letter`: the bad rows go to the dead-letter topic as JSON with the error, every
good row arrives, and the watermark moves past them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.faults.harness import (
    Scenario,
    SourceDB,
    SourceRow,
    customers_entity,
    free_port,
    metric,
    read_committed,
    scrape,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 100
BAD_ID = 50
BATCH = 20  # the bad row is in the third batch, after a full batch boundary


def create_balances(db: SourceDB) -> None:
    db.execute(
        "CREATE TABLE balances (id bigint PRIMARY KEY, customer_id text, "
        "balance numeric(30,4) NOT NULL, balance_txt varchar(40), "
        "updated_at timestamp(6) NOT NULL)",
        "INSERT INTO balances SELECT g, 'cust-' || g, g * 1.25, "
        "CAST(CAST(g * 1.25 AS numeric(12,2)) AS text), "
        "timestamp '2024-01-01' + g * interval '1 minute' FROM generate_series(1, :n) AS g",
        params={"n": ROWS},
    )


def balances_entity(**overrides: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "table": "balances",
        "key": "id",
        "fields": {
            "local_id": "id",
            "customer_id": "customer_id",
            "balance": "balance",
            "updated_at": "updated_at",
        },
        "batching": {"mode": "id", "column": "id"},
        "batch_size": BATCH,
    }
    entity.update(overrides)
    return {k: v for k, v in entity.items() if v is not None}


def balances_rows(db: SourceDB) -> dict[str, SourceRow]:
    return {
        str(r[0]): SourceRow({"customer_id": r[1], "balance": r[2]})
        for r in db.rows("SELECT id, customer_id, balance FROM balances")
    }


@dataclass(frozen=True)
class BadCase:
    dialect: str
    entity: str
    field: str
    value_type: str
    reason: str  # part of the encoder's explanation
    setup: Callable[[SourceDB], dict[str, Any]]  # creates the data, returns the entity config
    expected: Callable[[SourceDB], dict[str, SourceRow]]


def _over_precision(db: SourceDB) -> dict[str, Any]:
    create_balances(db)
    db.execute(
        "UPDATE balances SET balance = 12345678901234567890.12 WHERE id = :id",
        params={"id": BAD_ID},
    )
    return balances_entity()


def _null_required(db: SourceDB) -> dict[str, Any]:
    create_balances(db)
    db.execute("UPDATE balances SET customer_id = NULL WHERE id = :id", params={"id": BAD_ID})
    return balances_entity()


def _text_as_number(db: SourceDB) -> dict[str, Any]:
    """A legacy column keeping amounts as text, read through a custom query."""
    create_balances(db)
    db.execute("UPDATE balances SET balance_txt = 'n/a' WHERE id = :id", params={"id": BAD_ID})
    return balances_entity(
        table=None,
        query="SELECT id, customer_id, balance_txt, updated_at FROM balances",
        fields={
            "local_id": "id",
            "customer_id": "customer_id",
            "balance": "balance_txt",
            "updated_at": "updated_at",
        },
    )


def _impossible_date(db: SourceDB) -> dict[str, Any]:
    """MariaDB stores 30 February when sql_mode allows invalid dates; the driver returns it
    as text since Python cannot build that date."""
    db.create_customers()
    db.seed_customers(ROWS)
    db.execute(
        "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
        "UPDATE customers SET birth_date = '2023-02-30' WHERE id = :id",
        params={"id": BAD_ID},
    )
    return customers_entity("id", batch_size=BATCH)


def _customers(db: SourceDB) -> dict[str, SourceRow]:
    return db.customers()


CASES = {
    "decimal-over-precision": BadCase(
        "postgresql",
        "bonus_balances",
        "balance",
        "Decimal",
        "needs more than 18 digits",
        _over_precision,
        balances_rows,
    ),
    "null-in-required-field": BadCase(
        "postgresql",
        "bonus_balances",
        "customer_id",
        "NoneType",
        "NULL in required field",
        _null_required,
        balances_rows,
    ),
    "text-as-number-via-query": BadCase(
        "postgresql",
        "bonus_balances",
        "balance",
        "str",
        "is not a decimal number",
        _text_as_number,
        balances_rows,
    ),
    "impossible-date-mariadb": BadCase(
        "mariadb",
        "customers",
        "birth_date",
        "str",
        "is not a valid date",
        _impossible_date,
        _customers,
    ),
}


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_row_fails_with_exit_4_and_holds_the_watermark(
    scenario: Scenario, case_id: str, request: pytest.FixtureRequest
) -> None:
    case = CASES[case_id]
    db: SourceDB = request.getfixturevalue("pg" if case.dialect == "postgresql" else "maria")
    entity_cfg = case.setup(db)
    cfg = scenario.config(db.url, {case.entity: entity_cfg})
    good = {k: v for k, v in case.expected(db).items() if int(k) < BAD_ID}

    for attempt in ("first run", "rerun"):
        proc = scenario.start(cfg, once=True, label=attempt.replace(" ", "-"))
        rc = proc.wait(timeout=90)
        log = proc.log()
        assert rc == 4, f"{attempt}: exit {rc}, expected 4 (bad row):\n{proc.describe()}"
        error = next((ln for ln in log.splitlines() if ln.startswith("poller: error:")), log)
        for part in (
            f"tenant {scenario.tenant!r}",
            f"entity {case.entity!r}",
            f"key {BAD_ID}",
            f"field {case.field!r}",
            f"({case.value_type})",
            case.reason,
        ):
            assert part in error, f"{attempt}: {part!r} not in the error message:\n{error}"

        # Everything before the bad row, once; nothing from it on; the watermark just before.
        scenario.verify_exactly_once(case.entity, good)
        shown = scenario.offsets(cfg)[case.entity]
        assert shown["cursor"] == BAD_ID - 1, f"{attempt}: watermark {shown}"
        assert shown["rows_total"] == BAD_ID - 1, f"{attempt}: watermark {shown}"


def test_dead_letter_policy_routes_bad_rows_and_moves_on(scenario: Scenario, pg: SourceDB) -> None:
    create_balances(pg)
    bad = {
        10: ("balance", "Decimal", "needs more than 18 digits"),
        50: ("customer_id", "NoneType", "NULL in required field"),
        77: ("balance", "Decimal", "more than 2 fractional digits"),
    }
    pg.execute(
        "UPDATE balances SET balance = 12345678901234567890.12 WHERE id = 10",
        "UPDATE balances SET customer_id = NULL WHERE id = 50",
        "UPDATE balances SET balance = 1.2345 WHERE id = 77",
    )
    port = free_port()
    cfg = scenario.config(
        pg.url, {"bonus_balances": balances_entity(on_bad_row="dead_letter")}, metrics_port=port
    )

    proc = scenario.start(cfg, label="poller")
    scenario.wait_for_cursor("bonus_balances", ROWS, timeout=60, watch=[proc])
    labels = {"tenant": scenario.tenant, "entity": "bonus_balances"}
    batches = ROWS // BATCH
    samples = wait_for(  # the counters move right after the commit the watermark shows
        lambda: (
            m if metric(m := scrape(port), "poller_batches_total", **labels) == batches else None
        ),
        10,
        f"the {batches} batches in the metrics",
    )
    proc.terminate()
    rc = proc.wait(timeout=30)
    assert rc == 0, f"SIGTERM must stop it cleanly:\n{proc.describe()}"

    assert metric(samples, "poller_rows_dead_lettered_total", **labels) == len(bad), samples
    assert metric(samples, "poller_rows_published_total", **labels) == ROWS - len(bad)

    good = {k: v for k, v in balances_rows(pg).items() if int(k) not in bad}
    scenario.verify_exactly_once("bonus_balances", good)
    shown = scenario.offsets(cfg)["bonus_balances"]
    assert shown["cursor"] == ROWS and shown["rows_total"] == ROWS, shown

    letters = read_committed(scenario.bootstrap, scenario.dead_letter_topic)
    by_key = {}
    for r in letters:
        assert r.value is not None
        record = json.loads(r.value)
        assert json.loads(r.key) == [scenario.tenant, record["key"]], r.key
        by_key[record["key"]] = record
    assert sorted(by_key) == sorted(bad) and len(letters) == len(bad), (
        f"dead letters for keys {sorted(by_key)} ({len(letters)} messages), expected {sorted(bad)}"
    )
    source = {r[0]: r for r in pg.rows("SELECT id, customer_id, balance FROM balances")}
    for key, (field, value_type, reason) in bad.items():
        rec = by_key[key]
        assert (rec["tenant"], rec["entity"]) == (scenario.tenant, "bonus_balances"), rec
        assert (rec["field"], rec["value_type"]) == (field, value_type), rec
        assert reason in rec["error"], rec
        row = rec["row"]
        assert row["local_id"] == key and row["customer_id"] == source[key][1], row
        assert Decimal(row["balance"]) == source[key][2], row  # the raw value, unrounded
