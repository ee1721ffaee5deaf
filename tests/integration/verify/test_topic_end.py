"""verify reads an entity topic to its high watermark, not to the last stable offset.

On a shared entity topic another tenant's open transaction holds the last stable offset back
(and right after a commit, the commit markers still on their way do). verify used to stop
there: rows committed beyond it were reported missing, and `--repair` would publish them a
second time. Now it waits until every transaction below the end has ended, and says so when
one does not.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from poller.avro.schemas import load_all
from poller.batch import BEGINNING
from poller.config import KafkaConfig, parse_config
from poller.errors import BrokerUnavailableError
from poller.pipeline.stream import make_streams
from poller.verify.topic_side import TopicSnapshot, open_spill

pytestmark = pytest.mark.integration

A, B = "acme", "globex"


def _snapshot(bootstrap: str, topic_prefix: str, tmp_path: Path) -> TopicSnapshot:
    cfg = parse_config(
        {
            "tenant": A,
            "source": {"url": "sqlite:///unused.db"},
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": topic_prefix,
                "format": "single_object",
            },
            "entities": {
                "customers": {
                    "table": "customers",
                    "fields": {"local_id": "id", "updated_at": "updated_at"},
                    "key": "id",
                    "batching": {"mode": "id", "column": "id"},
                }
            },
        }
    )
    stream = make_streams(cfg, load_all(), {}, {"customers": BEGINNING})["customers"]
    return TopicSnapshot(open_spill(tmp_path), stream)


def _producer(bootstrap: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"v-{uuid.uuid4().hex}"})
    p.init_transactions(30)
    return p


def test_rows_committed_behind_another_tenants_open_transaction_are_not_missing(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    prefix = f"vend_{uuid.uuid4().hex[:10]}"
    topic = f"{prefix}.customers"
    created = kafka_admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    created[topic].result(timeout=30)
    other, mine = _producer(kafka_bootstrap), _producer(kafka_bootstrap)
    other.begin_transaction()
    other.produce(topic, b"\x00", json.dumps([B, 1]).encode())
    assert other.flush(30) == 0  # open: the last stable offset stays at its record
    mine.begin_transaction()
    for key in range(1, 6):
        mine.produce(topic, f"row {key}".encode(), json.dumps([A, key]).encode())
    mine.commit_transaction(30)
    committed = True
    try:
        with pytest.raises(BrokerUnavailableError, match="open transaction"):
            _snapshot(kafka_bootstrap, prefix, tmp_path).load(_kafka(kafka_bootstrap), timeout_s=2)
        other.commit_transaction(30)
        committed = False
        snap = _snapshot(kafka_bootstrap, prefix, tmp_path)
        snap.load(_kafka(kafka_bootstrap), timeout_s=30)
        assert snap.count() == 5
        assert snap.foreign == 1
    finally:
        if committed:
            other.abort_transaction(30)
        kafka_admin.delete_topics([topic])


def _kafka(bootstrap: str) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=bootstrap)
