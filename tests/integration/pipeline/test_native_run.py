"""A whole `poller run --once` on the native PostgreSQL path writes the same committed messages
(keys, values, headers, timestamps, order) and the same watermark as the Python path."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from poller.config import parse_config
from poller.pipeline.runner import Poller
from tests.integration.pipeline.helpers import (
    config,
    execute,
    stored_watermarks,
    topics_deleted_after,
    unique_prefix,
)
from tests.integration.source.native_harness import require_native

pytestmark = pytest.mark.integration

ENTITY = {
    "table": "people",
    "fields": {"local_id": "id", "first_name": "name", "birth_date": "born",
               "register_date": "seen_tz", "updated_at": "updated_at"},
    "key": "id",
    "batching": {"mode": "timestamp+id", "column": "updated_at", "id_column": "id"},
    "batch_size": 400,
    "settle_delay_s": 0,
}  # fmt: skip


def raw_messages(bootstrap: str, topic: str) -> list[tuple[Any, ...]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out, pending = [], set(parts)
        while pending:
            msg = consumer.poll(10)
            assert msg is not None, f"no end of {topic}"
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                pending.discard(msg.partition())
                continue
            out.append((msg.partition(), msg.key(), msg.value(), msg.headers(), msg.timestamp()))
        return sorted(out, key=lambda m: (m[0], out.index(m)))
    finally:
        consumer.close()


def run(cfg: dict[str, Any]) -> float:
    poller = Poller(parse_config(cfg))
    poller.run(once=True)
    counter = poller.metrics.native_batches.labels("acme", "customers")
    return float(counter._value.get())


def confluent(cfg: dict[str, Any], registry: str | None) -> dict[str, Any]:
    """The Confluent format (Avro keys of the canonical key schema: a bigint id published in
    the string field local_id) on the real registry; single-object without one."""
    if registry is None:
        return cfg
    return {**cfg, "kafka": {**cfg["kafka"], "format": "confluent"},
            "schema_registry": {"url": registry}}  # fmt: skip


@pytest.mark.parametrize("wire", ["single_object", "confluent"])
def test_native_and_python_runs_publish_the_same_bytes(
    pg_url: str,
    prefix: str,
    kafka_bootstrap: str,
    registry_url: str,
    monkeypatch: pytest.MonkeyPatch,
    wire: str,
) -> None:
    registry = registry_url if wire == "confluent" else None
    require_native()
    execute(
        pg_url,
        "CREATE TABLE people (id bigint PRIMARY KEY, name text, born date, seen_tz timestamptz, "
        "updated_at timestamp NOT NULL)",
        "INSERT INTO people SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'Фёдор ' || g END, "
        "DATE '1950-01-01' + g, TIMESTAMPTZ '2021-03-28 00:00+00' + g * INTERVAL '7 minutes', "
        "TIMESTAMP '2021-10-31 00:00' + (g / 3) * INTERVAL '1 minute' "
        "FROM generate_series(1, 2000) g",
    )
    other = unique_prefix()
    with topics_deleted_after(kafka_bootstrap, other):
        entities = {"customers": ENTITY}
        native_cfg = confluent(
            config(pg_url, "acme", kafka_bootstrap, prefix, entities, timezone="Europe/Berlin"),
            registry,
        )
        assert run(native_cfg) >= 5  # every batch took the native path
        monkeypatch.setenv("POLLER_NATIVE", "0")
        python_cfg = confluent(
            config(pg_url, "acme", kafka_bootstrap, other, entities, timezone="Europe/Berlin"),
            registry,
        )
        assert run(python_cfg) == 0
        native = raw_messages(kafka_bootstrap, f"{prefix}.customers")
        python = raw_messages(kafka_bootstrap, f"{other}.customers")
        assert len(native) == 2000
        assert native == python
        wm_native = stored_watermarks(kafka_bootstrap, prefix, "acme")["customers"]
        wm_python = stored_watermarks(kafka_bootstrap, other, "acme")["customers"]
        assert repr(wm_native.position) == repr(wm_python.position)
        assert wm_native.rows_total == wm_python.rows_total == 2000
