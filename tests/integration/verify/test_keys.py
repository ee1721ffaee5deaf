"""Keys end to end on the real servers (issue 16 items 7, 8, 10, 10b): binary keys keep their
type through the delete reconciliation and verify in both formats; a reconciliation that would
tombstone too much stops; tenants whose key columns differ share one key schema; verify checks
the framing a consumer needs, not only the Avro body."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from tests.integration.faults.harness import Scenario, SourceDB, customers_entity, wait_for
from tests.integration.registry.stock import read_with_stock_consumer
from tests.integration.verify.test_verify import latest, verify

pytestmark = pytest.mark.integration

TOKENS = 300  # rows of the tokens table (the SQL below says 300)


def tokens_entity(db: SourceDB, **overrides: Any) -> dict[str, Any]:
    """`product_categories` over a table keyed by 16 raw bytes (MD5 of 1..300: quotes,
    backslashes and zero bytes among them), its local_id the key's hex."""
    if db.is_postgres:
        db.execute(
            "CREATE TABLE tokens (id bytea PRIMARY KEY, name text NOT NULL, "
            "updated_at timestamp(6) NOT NULL)",
            "INSERT INTO tokens SELECT decode(md5(g::text), 'hex'), 'Token ' || g, "
            "timestamp '2024-01-01' + g * interval '1 second' FROM generate_series(1, 300) g",
        )
        hex_id = "encode(id, 'hex')"
    else:
        db.execute(
            "CREATE TABLE tokens (id BINARY(16) PRIMARY KEY, name VARCHAR(50) NOT NULL, "
            "updated_at DATETIME(6) NOT NULL)",
            "INSERT INTO tokens SELECT UNHEX(MD5(seq)), CONCAT('Token ', seq), "
            "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_300",
        )
        hex_id = "LOWER(HEX(id))"
    entity = {
        "table": "tokens",
        "key": "id",
        "fields": {"local_id": hex_id, "name": "name", "updated_at": "updated_at"},
        "batching": {"mode": "timestamp", "column": "updated_at"},
        "batch_size": 100,
        "poll_interval_s": 1,
        "settle_delay_s": 0,
    }
    entity.update(overrides)
    return entity


def token_ids(db: SourceDB, names: list[str]) -> list[bytes]:
    return [bytes(db.scalar("SELECT id FROM tokens WHERE name = :n", {"n": n})) for n in names]


def confluent(scenario: Scenario, db: SourceDB, entities: dict[str, Any], registry: str) -> Any:
    raw = scenario.config_dict(db.url, entities, kafka={"format": "confluent"})
    raw["schema_registry"] = {"url": registry}
    return raw


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_reconciliation_keeps_every_live_row_with_a_binary_key(
    scenario: Scenario, backend: str, registry_url: str, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL bytea keys with JSON message keys, MariaDB BINARY(16) keys with Avro keys:
    only the deleted rows are tombstoned (a text round trip of the key used to make the source
    lookup find nothing, and every live row was tombstoned; the Avro side crashed)."""
    db: SourceDB = request.getfixturevalue("pg" if backend == "postgresql" else "maria")
    entity = tokens_entity(db, repair_interval_s=1, repair_rows_per_s=5000)
    if backend == "postgresql":
        config = scenario.config(db.url, {"product_categories": entity})
    else:
        raw = confluent(scenario, db, {"product_categories": entity}, registry_url)
        config = scenario.write_config(raw)
    proc = scenario.start(config, label="live")
    scenario.wait_for_cursor("product_categories", db.max_cursor("updated_at", "tokens"), 90,
                             watch=[proc])  # fmt: skip
    gone = token_ids(db, ["Token 7", "Token 250"])
    db.execute("DELETE FROM tokens WHERE name IN ('Token 7', 'Token 250')")

    def rounds() -> int:
        return len(proc.log().split("delete reconciliation:")) - 1

    wait_for(lambda: rounds() >= 3, 90, "three reconciliation rounds", interval=0.5,
             watch=[proc])  # fmt: skip
    kept = latest(scenario.records("product_categories"))
    tombstoned = [k for k, v in kept.items() if v is None]
    assert len(kept) == TOKENS and len(tombstoned) == 2, proc.describe()
    for key in tombstoned:  # the deleted rows' keys, as hex (never Python's b'...')
        assert any(g.hex().encode() in key for g in gone), key
    assert all(b"b'" not in k and b'b\\"' not in k for k in kept), "a bytes repr in a key"
    proc.terminate()
    assert proc.wait(60) == 0, proc.describe()


def test_binary_keys_verify_and_repair_in_the_confluent_format(
    scenario: Scenario, maria: SourceDB, registry_url: str, kafka_bootstrap: str
) -> None:
    """A MariaDB BINARY(16) key is its hex in the canonical key record, which stock consumers
    read; verify names it, and `--repair` tombstones it."""
    entity = tokens_entity(maria)
    config = scenario.write_config(
        confluent(scenario, maria, {"product_categories": entity}, registry_url)
    )
    scenario.run_once(config, timeout=120)
    topic = scenario.topic("product_categories")
    keys = {k["local_id"] for k, _ in read_with_stock_consumer(kafka_bootstrap, registry_url,
                                                               [topic])[topic]}  # fmt: skip
    (seven,) = token_ids(maria, ["Token 7"])
    assert len(keys) == TOKENS and seven.hex() in keys, sorted(keys)[:3]
    code, report = verify(scenario, config)
    assert code == 0 and report["entities"]["product_categories"]["counts"]["equal"] == TOKENS

    maria.execute("DELETE FROM tokens WHERE name = 'Token 7'")
    code, report = verify(scenario, config)
    assert code == 10 and report["entities"]["product_categories"]["extra"] == [
        {"key": seven.hex()}
    ], report
    assert verify(scenario, config, "--repair")[0] == 0
    code, report = verify(scenario, config)
    assert code == 0 and report["equal"], report


def test_a_reconciliation_that_would_tombstone_too_much_stops_and_says_so(
    scenario: Scenario, pg: SourceDB
) -> None:
    """20 of 500 rows gone (4%) against the default repair_max_tombstone_share of 1%: nothing
    is tombstoned, the log says why, and the live poller goes on."""
    pg.create_customers()
    pg.seed_customers(500)
    entity = customers_entity("timestamp", batch_size=100, settle_delay_s=0,
                              repair_interval_s=1, repair_rows_per_s=5000)  # fmt: skip
    config = scenario.config(pg.url, {"customers": entity})
    proc = scenario.start(config, label="live")
    scenario.wait_for_cursor("customers", pg.max_cursor("updated_at"), 90, watch=[proc])
    pg.execute("DELETE FROM customers WHERE id <= 20")
    wait_for(lambda: proc.log().count("delete reconciliation stopped") >= 2, 90,
             "the reconciliation to refuse", interval=0.5, watch=[proc])  # fmt: skip
    assert "20 of the first 500 keys" in proc.log(), proc.describe()
    assert "repair_max_tombstone_share (1.00% = 5 keys)" in proc.log(), proc.describe()
    assert not any(r.value is None for r in scenario.records("customers")), "tombstoned"
    # The live poller still publishes.
    pg.seed_customers(1, first=501)
    scenario.wait_for_cursor("customers", pg.max_cursor("updated_at"), 60, watch=[proc])
    proc.terminate()
    assert proc.wait(60) == 0, proc.describe()


def test_tenants_with_differently_named_and_typed_keys_share_one_key_schema(
    scenario: Scenario, pg: SourceDB, registry_url: str, kafka_bootstrap: str
) -> None:
    """Item 7: retailer A keys customers by `id bigint`, retailer B by `cust_no varchar`; both
    publish to the shared topic in the Confluent format and the key subject holds one schema.
    Item 10: `verify --entity customers` with a second entity configured."""
    pg.execute(
        "CREATE TABLE crm_a (id bigint PRIMARY KEY, name text, updated_at timestamp(6) NOT NULL)",
        "INSERT INTO crm_a SELECT g, 'A ' || g, timestamp '2024-01-01' + g * interval '1s' "
        "FROM generate_series(1, 40) g",
        "CREATE TABLE crm_b (cust_no varchar(20) PRIMARY KEY, fio text, "
        "changed timestamp(6) NOT NULL)",
        "INSERT INTO crm_b SELECT 'B-' || g, 'B ' || g, timestamp '2024-01-01' + g * interval '1s' "
        "FROM generate_series(1, 30) g",
        "CREATE TABLE goods (id bigint PRIMARY KEY, title text NOT NULL, "
        "updated_at timestamp(6) NOT NULL)",
        "INSERT INTO goods SELECT g, 'G ' || g, timestamp '2024-01-01' + g * interval '1s' "
        "FROM generate_series(1, 10) g",
    )
    batching = {"mode": "timestamp", "column": "updated_at"}
    a = {
        "table": "crm_a",
        "key": "id",
        "batching": batching,
        "settle_delay_s": 0,
        "fields": {"local_id": "id", "full_name": "name", "updated_at": "updated_at"},
    }
    b = {
        "table": "crm_b",
        "key": "cust_no",
        "settle_delay_s": 0,
        "batching": {"mode": "timestamp", "column": "changed"},
        "fields": {"local_id": "cust_no", "full_name": "fio", "updated_at": "changed"},
    }
    goods = {"table": "goods", "key": "id", "batching": batching, "settle_delay_s": 0,
             "fields": {"local_id": "id", "name": "title", "updated_at": "updated_at"}}  # fmt: skip
    raw_a = confluent(scenario, pg, {"customers": a, "products": goods}, registry_url)
    raw_b = confluent(scenario, pg, {"customers": b}, registry_url)
    raw_b["tenant"] = scenario.tenant + "-b"
    config_a = scenario.write_config(raw_a, "a.yaml")
    config_b = scenario.write_config(raw_b, "b.yaml")
    scenario.run_once(config_a, timeout=120, label="a")
    scenario.run_once(config_b, timeout=120, label="b")  # exited 2 (HTTP 409) before

    topic = scenario.topic("customers")
    client = SchemaRegistryClient({"url": registry_url})
    assert client.get_versions(f"{topic}-key") == [1]
    schema = json.loads(client.get_latest_version(f"{topic}-key").schema.schema_str)
    assert [(f["name"], f["type"]) for f in schema["fields"]] == [
        ("tenant", "string"), ("local_id", "string")]  # fmt: skip
    records = read_with_stock_consumer(kafka_bootstrap, registry_url, [topic])[topic]
    by_tenant: dict[str, set[str]] = {}
    for key, value in records:
        assert value is not None and value["local_id"] == key["local_id"]
        by_tenant.setdefault(key["tenant"], set()).add(key["local_id"])
    assert by_tenant == {
        scenario.tenant: {str(i) for i in range(1, 41)},
        scenario.tenant + "-b": {f"B-{i}" for i in range(1, 31)},
    }
    code, report = verify(scenario, config_a, "--entity", "customers")  # KeyError before
    assert code == 0 and report["entities"]["customers"]["counts"]["equal"] == 40, report
    assert list(report["entities"]) == ["customers"]
    code, report = verify(scenario, config_b)
    assert code == 0 and report["entities"]["customers"]["counts"]["equal"] == 30, report


def test_verify_checks_the_framing_a_consumer_needs(
    scenario: Scenario, db: SourceDB, registry_url: str, kafka_bootstrap: str
) -> None:
    """Item 10b, on PostgreSQL and MariaDB: a right body re-published under a schema id that
    does not exist, or under another subject's id, fails every stock consumer: verify reports
    both keys as different (exit 10) and `--repair` republishes them."""
    db.create_customers()
    db.seed_customers(50)
    entity = customers_entity("timestamp", batch_size=100, settle_delay_s=0)
    config = scenario.write_config(confluent(scenario, db, {"customers": entity}, registry_url))
    scenario.run_once(config, timeout=120)
    topic = scenario.topic("customers")
    kept = latest(scenario.records("customers"))
    client = SchemaRegistryClient({"url": registry_url})
    key_id = client.get_latest_version(f"{topic}-key").schema_id
    value_id = client.get_latest_version(f"{topic}-value").schema_id
    assert key_id != value_id
    items = sorted(kept.items())
    (k1, v1), (k2, v2) = items[3], items[4]
    assert v1 is not None and v2 is not None and v1[1:5] == value_id.to_bytes(4, "big")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=k1, value=b"\x00" + (2**31 - 7).to_bytes(4, "big") + v1[5:])
    producer.produce(topic, key=k2, value=b"\x00" + key_id.to_bytes(4, "big") + v2[5:])
    assert producer.flush(30) == 0

    code, report = verify(scenario, config)
    found = report["entities"]["customers"]
    assert code == 10 and len(found["different"]) == 2, found  # exit 0 before
    assert found["counts"]["equal"] == 48, found
    assert verify(scenario, config, "--repair")[0] == 0
    code, report = verify(scenario, config)
    assert code == 0 and report["equal"], report
    # Both keys' latest records carry the value subject's id again (what compaction keeps).
    now = latest(scenario.records("customers"))
    assert now[k1] == v1 and now[k2] == v2


def test_verify_repair_moves_keys_of_the_old_format_to_the_canonical_key(
    scenario: Scenario, pg: SourceDB, registry_url: str, kafka_bootstrap: str
) -> None:
    """docs/keys.md: a topic holding keys of the former format (source column names, `long`)
    beside today's. Verify reports the old keys as extra (never as the row), `--repair`
    tombstones them, and the delete reconciliation leaves them alone while the row exists."""
    pg.create_customers()
    pg.seed_customers(40)
    entity = customers_entity("timestamp", batch_size=100, settle_delay_s=0)
    raw = confluent(scenario, pg, {"customers": entity}, registry_url)
    config = scenario.write_config(raw)
    scenario.run_once(config, timeout=120)
    topic = scenario.topic("customers")
    client = SchemaRegistryClient({"url": registry_url})
    client.set_compatibility(f"{topic}-key", "NONE")
    old_schema = {"type": "record", "name": "CustomerKey", "namespace": "retail.loyalty",
                  "fields": [{"name": "tenant", "type": "string"},
                             {"name": "id", "type": "long"}]}  # fmt: skip
    old_id = client.register_schema(f"{topic}-key", Schema(json.dumps(old_schema), "AVRO"))
    kept = latest(scenario.records("customers"))
    some_value = next(v for v in kept.values() if v is not None)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    old_keys = []
    for i in (5, 6, 7):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, fastavro.parse_schema(old_schema),
                                   {"tenant": scenario.tenant, "id": i})  # fmt: skip
        old_keys.append(b"\x00" + old_id.to_bytes(4, "big") + body.getvalue())
        producer.produce(topic, key=old_keys[-1], value=some_value)
    assert producer.flush(30) == 0
    # The poller sets FULL_TRANSITIVE at start; the subject keeps both versions.
    raw["schema_registry"]["compatibility"] = None
    # The delete reconciliation (no share limit here) leaves the old keys alone: their rows
    # exist, and a tombstone would delete them downstream.
    ent = raw["entities"]["customers"]
    ent.update(repair_interval_s=1, repair_rows_per_s=5000, repair_max_tombstone_share=1)
    proc = scenario.start(scenario.write_config(raw, "live.yaml"), label="live")
    wait_for(lambda: proc.log().count("delete reconciliation: ") >= 2, 90,
             "two reconciliation rounds", interval=0.5, watch=[proc])  # fmt: skip
    proc.terminate()
    assert proc.wait(60) == 0, proc.describe()
    assert "0 tombstones" in proc.log() and not any(
        r.value is None for r in scenario.records("customers")
    ), proc.describe()
    for k in ("repair_interval_s", "repair_rows_per_s", "repair_max_tombstone_share"):
        del ent[k]
    config = scenario.write_config(raw)

    code, report = verify(scenario, config)
    found = report["entities"]["customers"]
    assert code == 10 and sorted(d["key"] for d in found["extra"]) == [5, 6, 7], found
    assert found["counts"]["equal"] == 40 and not found["missing"], found
    assert verify(scenario, config, "--repair")[0] == 0
    code, report = verify(scenario, config)
    assert code == 0 and report["equal"], report
    now = latest(scenario.records("customers"))
    assert all(now[k] is None for k in old_keys)
    assert sum(v is not None for v in now.values()) == 40
