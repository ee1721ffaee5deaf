"""Deletes the poller cannot see by polling: the scheduled reconciliation of a running poller
(`repair_interval_s`) tombstones them; text keys go through the spilled merge."""

from __future__ import annotations

import json

import pytest

from tests.integration.faults.harness import (
    Scenario,
    SourceDB,
    customers_entity,
    free_port,
    metric,
    scrape,
    wait_for,
)
from tests.integration.verify.test_verify import key_of, latest, verify

pytestmark = pytest.mark.integration


def test_running_poller_tombstones_hard_deleted_rows_on_schedule(
    scenario: Scenario, db: SourceDB
) -> None:
    db.create_customers()
    db.seed_customers(500)
    entity = customers_entity(
        "timestamp", batch_size=100, settle_delay_s=0,
        repair_interval_s=1, repair_rows_per_s=5000, repair_range_keys=200,
    )  # fmt: skip
    port = free_port()
    config = scenario.config(db.url, {"customers": entity}, metrics_port=port)
    proc = scenario.start(config, label="live")
    wm = scenario.wait_for_cursor("customers", db.max_cursor("updated_at"), 90, watch=[proc])

    db.execute("DELETE FROM customers WHERE id IN (7, 8, 250)")
    gone = {key_of(scenario, k) for k in (7, 8, 250)}

    def tombstoned() -> dict[bytes, bytes | None] | None:
        kept = latest(scenario.records("customers"))
        return kept if all(kept.get(k, b"") is None for k in gone) else None

    kept = wait_for(tombstoned, 90, "tombstones of the deleted rows", interval=1, watch=[proc])
    assert sum(v is None for v in kept.values()) == 3, "only the deleted keys are tombstoned"
    tombstones = wait_for(
        lambda: metric(scrape(port), "poller_repair_messages_total", action="tombstone"),
        30, "the repair metric", interval=0.5, watch=[proc],
    )  # fmt: skip
    assert tombstones == 3
    # More rounds change nothing: a tombstoned key is not looked up again.
    wait_for(lambda: len(proc.log().split("delete reconciliation:")) > 4, 60,
             "more reconciliation rounds", interval=0.5, watch=[proc])  # fmt: skip
    records = scenario.records("customers")
    assert sum(r.value is None for r in records) == 3, "a key was tombstoned twice"
    stored = scenario.stored("customers")
    assert stored is not None and stored.position == wm.position, "the watermark moved"
    proc.terminate()
    assert proc.wait(60) == 0, proc.describe()


def test_text_keys_verify_and_repair(scenario: Scenario, pg: SourceDB) -> None:
    """Keys the database sorts by its own collation ('b' < 'B' < 'Ä' in en_US): the source
    side is spilled and merged by the message key's bytes."""
    pg.execute(
        "CREATE TABLE categories (code text PRIMARY KEY, name text NOT NULL, "
        "updated_at timestamp(6) NOT NULL)",
        "INSERT INTO categories SELECT 'c-' || g || CASE g % 3 WHEN 0 THEN 'Ä' WHEN 1 THEN 'b' "
        "ELSE 'B' END, 'Name ' || g, timestamp '2024-01-01' + g * interval '1 second' "
        "FROM generate_series(1, 300) AS g",
    )
    entity = {
        "table": "categories",
        "key": "code",
        "fields": {"local_id": "code", "name": "name", "updated_at": "updated_at"},
        "batching": {"mode": "timestamp", "column": "updated_at"},
        "batch_size": 100,
        "settle_delay_s": 0,
    }
    config = scenario.config(pg.url, {"product_categories": entity})
    scenario.run_once(config, timeout=120)
    code, report = verify(scenario, config)
    assert code == 0 and report["entities"]["product_categories"]["counts"]["equal"] == 300

    pg.execute(
        "DELETE FROM categories WHERE code = 'c-3Ä'",
        "UPDATE categories SET name = 'Renamed' WHERE code = 'c-4b'",
        "INSERT INTO categories VALUES ('c-0B', 'Old', '2023-01-01')",
    )
    code, report = verify(scenario, config)
    found = report["entities"]["product_categories"]
    assert code == 10
    assert [d["key"] for d in found["extra"]] == ["c-3Ä"], found
    assert [d["key"] for d in found["missing"]] == ["c-0B"], found
    assert [d["key"] for d in found["different"]] == ["c-4b"], found
    assert found["different"][0]["fields"] == {"name": {"source": "Renamed", "topic": "Name 4"}}

    code, _ = verify(scenario, config, "--repair")
    assert code == 0
    code, report = verify(scenario, config)
    assert code == 0 and report["equal"], report
    kept = latest(scenario.records("product_categories"))
    assert kept[json.dumps([scenario.tenant, "c-3Ä"], ensure_ascii=False,
                           separators=(",", ":")).encode()] is None  # fmt: skip


def test_composite_keys_verify_and_repair(scenario: Scenario, pg: SourceDB) -> None:
    """`key: [receipt_id, line_no]`: looked up as row values, merged by message-key bytes."""
    pg.execute(
        "CREATE TABLE lines (receipt_id bigint, line_no int, qty numeric(18,3) NOT NULL, "
        "amount numeric(18,2) NOT NULL, updated_at timestamp(6) NOT NULL, "
        "PRIMARY KEY (receipt_id, line_no))",
        "INSERT INTO lines SELECT g / 3, g % 3, 1.5, g, timestamp '2024-01-01' + g * interval '1s' "
        "FROM generate_series(3, 200) AS g",
    )
    entity = {
        "table": "lines",
        "key": ["receipt_id", "line_no"],
        "fields": {
            "local_id": "receipt_id || '/' || line_no", "receipt_id": "receipt_id",
            "line_number": "line_no", "quantity": "qty", "amount": "amount",
            "updated_at": "updated_at",
        },
        "batching": {"mode": "timestamp", "column": "updated_at"},
        "batch_size": 50,
        "settle_delay_s": 0,
    }  # fmt: skip
    config = scenario.config(pg.url, {"receipt_lines": entity})
    scenario.run_once(config, timeout=120)
    code, report = verify(scenario, config)
    assert code == 0 and report["entities"]["receipt_lines"]["counts"]["equal"] == 198, report

    pg.execute(
        "DELETE FROM lines WHERE receipt_id = 10 AND line_no = 1",
        "UPDATE lines SET amount = 0.01 WHERE receipt_id = 20 AND line_no = 2",
        "INSERT INTO lines VALUES (0, 0, 1, 1, '2023-01-01')",
    )
    code, report = verify(scenario, config)
    found = report["entities"]["receipt_lines"]
    assert code == 10
    assert [d["key"] for d in found["extra"]] == [[10, 1]], found
    assert [d["key"] for d in found["missing"]] == [[0, 0]], found
    assert [d["key"] for d in found["different"]] == [[20, 2]], found
    assert verify(scenario, config, "--repair")[0] == 0
    code, report = verify(scenario, config)
    assert code == 0 and report["equal"], report
