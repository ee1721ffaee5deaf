"""Issue 16 item 16: the watermark loader of a large fleet. The shared watermark topic holds a
record per (tenant, entity) plus heartbeats; a poller at start reads all of it. The loader's
deadline is for a read that stopped moving, not for a long one, and the topic the poller creates
is compacted with settings that keep it small."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from poller.batch import Position
from poller.config import AppConfig, KafkaConfig
from poller.kafka import watermark
from poller.kafka.topics import WATERMARK_TOPIC_CONFIG, ensure_topics, wanted_topics
from tests.integration.conftest import NewTopicFn, unique_name

pytestmark = pytest.mark.integration

ENTITIES = ("customers", "receipts", "receipt_lines", "events")


def _fill(bootstrap: str, topic: str, tenants: int, rounds: int) -> None:
    """`rounds` heartbeats of every (tenant, entity): what an hour of a fleet leaves behind."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000})
    now = dt.datetime.now(dt.UTC)
    for r in range(rounds):
        for t in range(tenants):
            for e in ENTITIES:
                wm = watermark.Watermark(
                    f"tenant-{t:04d}", e, "id", Position(r * 10 + t, None), r, now
                )
                while True:
                    try:
                        p.produce(topic, watermark.encode(wm), watermark.key_bytes(wm.tenant, e))
                        break
                    except BufferError:
                        p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0


def test_a_long_read_that_keeps_moving_is_not_cut_off(
    kafka_bootstrap: str, topic_factory: NewTopicFn
) -> None:
    topic = topic_factory("wm_large", config={"cleanup.policy": "compact"})
    tenants, rounds = 1000, 60  # 1,000 tenants x 4 entities x 60 heartbeats = 240,000 records
    _fill(kafka_bootstrap, topic, tenants, rounds)
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap)
    started = time.monotonic()
    # A deadline of 1 s, far shorter than the whole read: it must be extended by progress.
    found = watermark.load(kafka, topic, "tenant-0421", timeout_s=1.0)
    took = time.monotonic() - started
    assert set(found) == set(ENTITIES)
    assert found["customers"].position.cursor == (rounds - 1) * 10 + 421  # the latest
    print(
        f"\nloaded 1 tenant's watermarks from {tenants * len(ENTITIES) * rounds} records "
        f"in {took:.2f}s"
    )


def test_the_watermark_topic_is_made_to_stay_small(kafka_bootstrap: str) -> None:
    prefix = unique_name("wmcfg")
    cfg = AppConfig.model_validate(
        {
            "tenant": "t",
            "source": {"url": "sqlite:///unused.db"},
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "topic_prefix": prefix,
                "format": "single_object",
            },
            "entities": {
                "customers": {
                    "table": "c",
                    "key": "id",
                    "fields": {"local_id": "id"},
                    "batching": {"mode": "id", "column": "id"},
                }
            },
        }
    )
    topics = wanted_topics(cfg)
    name = cfg.kafka.watermark_topic_name("t")
    ensure_topics(cfg.kafka, {name: topics[name]})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        res = ConfigResource(ResourceType.TOPIC, name)
        configs = admin.describe_configs([res])[res].result(30)
        for key, value in WATERMARK_TOPIC_CONFIG.items():
            assert configs[key].value == value, key
        assert int(configs["segment.ms"].value) <= 3600 * 1000  # compacted at least hourly
    finally:
        admin.delete_topics([name])
