"""Every entity topic in the Confluent format, read by the stock confluent-kafka consumer with
SchemaRegistryClient + AvroDeserializer (no poller code), equals the source rows field by field,
on PostgreSQL and MariaDB; the subjects carry FULL_TRANSITIVE and the Avro key record."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy.pool import NullPool

from poller.avro.schemas import ENTITIES
from poller.config import parse_config
from poller.demo.sample_data import ENTITY_TABLES, create_and_seed, demo_config
from poller.pipeline.runner import Poller
from tests.integration.pipeline.helpers import config, execute
from tests.integration.registry.stock import expected_records, read_with_stock_consumer

pytestmark = pytest.mark.integration
TENANT, OTHER = "acme-corp", "globex"


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_stock_avro_deserializer_reads_every_entity_as_in_the_source(
    backend: str,
    prefix: str,
    kafka_bootstrap: str,
    registry_url: str,
    request: pytest.FixtureRequest,
) -> None:
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        counts = create_and_seed(eng, (TENANT, OTHER))
    finally:
        eng.dispose()
    cfg: dict[str, Any] = copy.deepcopy(
        demo_config(url, TENANT, kafka_bootstrap, prefix, registry_url)
    )
    cfg["source"]["url"] = url  # the real URL, not the ${PASSWORD} placeholder
    assert cfg["kafka"]["format"] == "confluent" and set(cfg["entities"]) == set(ENTITIES)
    Poller(parse_config(cfg)).run(once=True)

    topics = read_with_stock_consumer(
        kafka_bootstrap, registry_url, [f"{prefix}.{n}" for n in ENTITIES]
    )
    client = SchemaRegistryClient({"url": registry_url})
    for name, ent in cfg["entities"].items():
        topic = f"{prefix}.{name}"
        expected = expected_records(url, name, ent, TENANT)
        assert len(expected) == counts[(TENANT, ENTITY_TABLES[name])] > 0
        got: dict[object, dict[str, Any] | None] = {}
        for key, value in topics[topic]:
            # The canonical key record (docs/keys.md): the demo maps its key to local_id.
            assert set(key) == {"tenant", "local_id"}, (name, key)
            assert key["tenant"] == TENANT, f"{name}: a {key['tenant']} row was published"
            source_key = int(key["local_id"])  # the demo's keys are integers
            assert source_key not in got, f"{name}: key {key} published twice"
            got[source_key] = value
        assert got == expected, name
        for side in ("key", "value"):
            assert client.get_compatibility(f"{topic}-{side}") == "FULL_TRANSITIVE"
        key_schema = client.get_latest_version(f"{topic}-key").schema.schema_str
        assert '"name":"tenant","type":"string"' in key_schema.replace(" ", ""), key_schema


def test_composite_key_is_an_avro_record_of_every_key_column(
    pg_url: str, prefix: str, kafka_bootstrap: str, registry_url: str
) -> None:
    execute(
        pg_url,
        "CREATE TABLE lines (cheque_id bigint NOT NULL, line_no varchar(10) NOT NULL, "
        "user_id varchar(64) NOT NULL, qty numeric(18,3) NOT NULL, "
        "PRIMARY KEY (cheque_id, line_no))",
        "INSERT INTO lines VALUES (1, 'a', 'acme-corp', 1.5), (1, 'b', 'acme-corp', 2), "
        "(2, 'a', 'acme-corp', 3.25), (3, 'a', 'globex', 9)",
    )
    ent = {
        "table": "lines",
        "key": ["cheque_id", "line_no"],
        "fields": {
            "local_id": "line_no",
            "receipt_id": "cheque_id",
            "quantity": "qty",
            "amount": "qty",
        },
        "batching": {"mode": "id", "column": "cheque_id"},
        "batch_size": 2,
    }
    raw = config(pg_url, TENANT, kafka_bootstrap, prefix, {"receipt_lines": ent})
    raw["kafka"]["format"] = "confluent"
    raw["schema_registry"] = {"url": registry_url}
    raw["source"]["tenant_column"] = "user_id"
    Poller(parse_config(raw)).run(once=True)
    topic = f"{prefix}.receipt_lines"
    messages = read_with_stock_consumer(kafka_bootstrap, registry_url, [topic])[topic]
    got = sorted((k["tenant"], k["receipt_id"], k["local_id"], v["quantity"]) for k, v in messages)
    assert got == [
        (TENANT, "1", "a", Decimal("1.500")),
        (TENANT, "1", "b", Decimal("2.000")),
        (TENANT, "2", "a", Decimal("3.250")),
    ]
    # The canonical fields the key columns map to, in the entity schema's order.
    assert all(list(k) == ["tenant", "local_id", "receipt_id"] for k, _ in messages)
