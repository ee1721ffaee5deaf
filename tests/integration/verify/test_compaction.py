"""A soft-deleted row's tombstone really removes the key once Kafka compacts the topic: the
topic is made with tiny segments and cleaning thresholds but a one-hour compaction lag, so the
value and its tombstone are both seen first; then the lag drops to zero and the test waits for
the broker's log cleaner (it wakes every 15 s by default) to drop every record of the key."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType

from tests.integration.faults.harness import Scenario, SourceDB, customers_entity, wait_for
from tests.integration.verify.test_verify import key_of, latest, verify

pytestmark = pytest.mark.integration

FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": "300",  # roll the active segment at the next append after 0.3 s
    "min.cleanable.dirty.ratio": "0.001",
    # Held off until both records are seen; without it the cleaner may already have dropped the
    # value (superseded by the tombstone) when the test reads the topic.
    "min.compaction.lag.ms": "3600000",
    "delete.retention.ms": "300",  # keep tombstones only briefly after their segment is cleaned
}


def test_compaction_removes_a_tombstoned_key(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.execute("ALTER TABLE customers ADD COLUMN deleted_at timestamp")
    pg.seed_customers(50)
    entity = customers_entity(
        "timestamp", batch_size=20, settle_delay_s=0, deletes={"column": "deleted_at"}
    )
    kafka = {"topic_partitions": 1, "topic_config": FAST_COMPACTION}
    config = scenario.config(pg.url, {"customers": entity}, kafka=kafka)
    scenario.run_once(config, timeout=120)
    pg.execute("UPDATE customers SET deleted_at = now(), updated_at = '2024-06-01' WHERE id = 7")
    scenario.run_once(config, timeout=120)
    gone, kept = key_of(scenario, 7), key_of(scenario, 8)
    records = scenario.records("customers")
    assert [r.value is None for r in records if r.key == gone] == [False, True], records

    # Now let the cleaner at it.
    topic = scenario.topic("customers")
    lag = ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[lag])
    admin = AdminClient({"bootstrap.servers": scenario.bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)

    # Appends of another tenant's key roll segments and give the cleaner dirty data to clean.
    producer = Producer({"bootstrap.servers": scenario.bootstrap})
    filler = f'["filler-{uuid.uuid4().hex[:6]}",1]'.encode()

    def compacted() -> bool:
        producer.produce(topic, b"x", filler)
        producer.flush(10)
        keys = [r.key for r in scenario.records("customers")]
        return gone not in keys and kept in keys

    try:
        wait_for(compacted, 150, "the log cleaner to remove every record of the key", interval=1)
    finally:
        producer.flush(10)
    assert latest(scenario.records("customers"))[kept] is not None
    code, report = verify(scenario, config)
    assert code == 0 and report["entities"]["customers"]["counts"]["deleted"] == 1, report
