"""`poller verify` against real PostgreSQL, MariaDB and Kafka: equal after a copy; exactly the
keys changed, deleted and added behind the poller's back; `--repair` makes the topic equal
again without moving the watermark."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faults.harness import Scenario, SourceDB, customers_entity
from tests.integration.faults.readback import Record
from tests.integration.faults.waits import poller_argv

pytestmark = pytest.mark.integration

ROWS = 2_000


def verify(scenario: Scenario, config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """`poller verify --json` (plus `extra`): exit code and the parsed report."""
    out = scenario.cli("verify", "--config", str(config), "--json", *extra, timeout=180)
    assert out.returncode in (0, 10) and out.stdout, (
        f"verify failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    )
    return out.returncode, json.loads(out.stdout)


def on_a_terminal(*args: str, timeout: float = 120) -> tuple[int, str]:
    """`poller ARGS` with stdout and stderr on a pseudo-terminal: exit code and output."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(poller_argv(*args), stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave)  # fmt: skip
    os.close(slave)
    out = b""
    try:
        while chunk := os.read(master, 65536):
            out += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(master)
    return proc.wait(timeout), out.decode(errors="replace")


def latest(records: list[Record]) -> dict[bytes, bytes | None]:
    """What compaction keeps: the last record of each key (None: a tombstone)."""
    out: dict[bytes, bytes | None] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.key] = r.value
    return out


def key_of(scenario: Scenario, key: object) -> bytes:
    return json.dumps([scenario.tenant, key], separators=(",", ":")).encode()


def test_verify_names_exactly_the_keys_changed_behind_the_pollers_back(
    scenario: Scenario, db: SourceDB
) -> None:
    db.create_customers()
    db.seed_customers(ROWS)
    entity = customers_entity("timestamp", batch_size=500, settle_delay_s=0)
    config = scenario.config(db.url, {"customers": entity})
    scenario.run_once(config, timeout=120)

    code, report = verify(scenario, config)
    counts = report["entities"]["customers"]["counts"]
    assert code == 0 and report["equal"], report
    assert counts["compared"] == counts["equal"] == counts["topic_keys"] == ROWS, counts

    # Behind the poller's back: values changed without touching the cursor, rows deleted, rows
    # added with an old cursor (the poller will never read them), one row added after the
    # watermark (the poller will publish it: not a difference).
    db.execute("UPDATE customers SET email = 'changed@example.com' WHERE id IN (5, 700, 1500)")
    db.execute("DELETE FROM customers WHERE id IN (10, 1200)")
    db.execute(
        "INSERT INTO customers (id, full_name, email, birth_date, updated_at) VALUES "
        "(5001, 'Late One', NULL, NULL, '2023-06-01 00:00:00'), "
        "(5002, 'Late Two', NULL, NULL, '2023-06-01 00:00:01'), "
        "(5003, 'Future', NULL, NULL, '2030-01-01 00:00:00')"
    )
    code, report = verify(scenario, config, "--sample", "50")
    found = report["entities"]["customers"]
    assert code == 10 and not report["equal"]
    assert sorted(d["key"] for d in found["missing"]) == [5001, 5002], found
    assert sorted(d["key"] for d in found["extra"]) == [10, 1200], found
    assert sorted(d["key"] for d in found["different"]) == [5, 700, 1500], found
    for d in found["different"]:
        assert d["fields"] == {"email": {"source": "changed@example.com", "topic": f"c{d['key']}"
                                         "@example.com"}}, d  # fmt: skip
    c = found["counts"]
    assert (c["missing"], c["extra"], c["different"], c["pending"]) == (2, 2, 3, 1), c

    before = scenario.stored("customers")
    high = scenario.watermark_high()
    code, repaired = verify(scenario, config, "--repair")
    assert code == 0, repaired
    rep = repaired["entities"]["customers"]["repair"]
    assert (rep["tombstones"], rep["republished"]) == (2, 5), rep

    code, report = verify(scenario, config)
    assert code == 0 and report["equal"], report
    assert report["entities"]["customers"]["counts"]["pending"] == 1
    assert scenario.watermark_high() == high, "the repair wrote to the watermark topic"
    after = scenario.stored("customers")
    assert after is not None and before is not None
    assert (after.position, after.rows_total) == (before.position, before.rows_total)

    kept = latest(scenario.records("customers"))
    assert kept[key_of(scenario, 10)] is None and kept[key_of(scenario, 1200)] is None
    assert kept[key_of(scenario, 5001)] is not None


def test_soft_deletes_are_published_as_tombstones(scenario: Scenario, db: SourceDB) -> None:
    db.create_customers()
    db.execute("ALTER TABLE customers ADD COLUMN is_deleted CHAR(1)")
    db.seed_customers(300)
    db.execute("UPDATE customers SET is_deleted = 'Y' WHERE id IN (3, 4)")
    entity = customers_entity(
        "timestamp", batch_size=100, settle_delay_s=0,
        deletes={"column": "is_deleted", "values": ["Y", 1]},
    )  # fmt: skip
    config = scenario.config(db.url, {"customers": entity})
    scenario.run_once(config, timeout=120)
    kept = latest(scenario.records("customers"))
    assert len(kept) == 300
    assert kept[key_of(scenario, 3)] is None and kept[key_of(scenario, 4)] is None
    assert kept[key_of(scenario, 5)] is not None

    # Flagged later (with a new cursor): the next poll publishes its tombstone.
    db.execute(
        "UPDATE customers SET is_deleted = 'Y', updated_at = '2024-06-01 00:00:00' WHERE id = 100"
    )
    db.execute("UPDATE customers SET is_deleted = 'N', updated_at = '2024-06-01 00:00:01' "
               "WHERE id = 101")  # fmt: skip
    scenario.run_once(config, timeout=120)
    records = scenario.records("customers")
    kept = latest(records)
    assert kept[key_of(scenario, 100)] is None and kept[key_of(scenario, 101)] is not None
    assert sum(1 for r in records if r.value is None) == 3, "one tombstone per deleted row"

    code, report = verify(scenario, config)
    counts = report["entities"]["customers"]["counts"]
    assert code == 0 and report["equal"], report
    assert (counts["deleted"], counts["equal"]) == (3, 297), counts


def test_verify_and_repair_in_the_confluent_format(
    scenario: Scenario, pg: SourceDB, registry_url: str
) -> None:
    """Avro keys and values framed with schema ids (the default format): verify reads the key
    records and compares the bodies after the 5-byte header."""
    pg.create_customers()
    pg.seed_customers(300)
    entity = customers_entity("timestamp", batch_size=100, settle_delay_s=0)
    raw = scenario.config_dict(pg.url, {"customers": entity}, kafka={"format": "confluent"})
    raw["schema_registry"] = {"url": registry_url}
    config = scenario.write_config(raw)
    scenario.run_once(config, timeout=120)
    records = scenario.records("customers")
    assert records and all(r.key[:1] == b"\x00" and r.value[:1] == b"\x00" for r in records
                           if r.value is not None)  # fmt: skip
    code, report = verify(scenario, config)
    assert code == 0 and report["entities"]["customers"]["counts"]["equal"] == 300, report

    pg.execute("DELETE FROM customers WHERE id = 11")
    pg.execute("UPDATE customers SET email = NULL WHERE id = 12")
    code, report = verify(scenario, config)
    found = report["entities"]["customers"]
    assert code == 10 and [d["key"] for d in found["extra"]] == [11], found
    assert found["different"] == [
        {"key": 12, "fields": {"email": {"source": None, "topic": "c12@example.com"}}}
    ], found
    assert verify(scenario, config, "--repair")[0] == 0
    code, report = verify(scenario, config)
    assert code == 0 and report["equal"], report
    # On a terminal: a progress bar per phase, then the text report.
    code, shown = on_a_terminal("verify", "--config", str(config))
    assert code == 0, shown
    assert "comparing with the source" in shown and "customers: EQUAL" in shown, shown
