"""The watermark loader reads committed watermarks only: a transaction that wrote a newer
watermark and was then aborted must not move the position (a read_uncommitted loader would
resume after rows that were never published)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from confluent_kafka import Producer

from poller.batch import Position
from poller.config import KafkaConfig
from poller.kafka import watermark
from tests.integration.conftest import NewTopicFn
from tests.integration.topics import read_to_end

pytestmark = pytest.mark.integration

TENANT = "acme-corp"


def _record(entity: str, cursor: int, rows: int) -> bytes:
    wm = watermark.Watermark(
        TENANT, entity, "id", Position(cursor, cursor), rows, dt.datetime.now(dt.UTC)
    )
    return watermark.encode(wm)


def _producer(bootstrap: str) -> Producer:
    p = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"wm-abort-{uuid.uuid4().hex}"}
    )
    p.init_transactions(30)
    return p


def _uncommitted_cursors(bootstrap: str, topic: str) -> list[object]:
    """Every watermark physically in the log, aborted ones included."""
    messages = read_to_end(bootstrap, [topic], 10, "read_uncommitted", "wm-raw")[topic]
    return [watermark.decode(m.value()).position.cursor for m in messages]


@pytest.mark.parametrize("later_commit", [False, True], ids=["aborted-last", "aborted-inside"])
def test_loader_ignores_an_aborted_newer_watermark(
    kafka_bootstrap: str, topic_factory: NewTopicFn, later_commit: bool
) -> None:
    topic = topic_factory("wm_abort", config={"cleanup.policy": "compact"})
    key = watermark.key_bytes(TENANT, "customers")
    p = _producer(kafka_bootstrap)

    p.begin_transaction()
    p.produce(topic, _record("customers", 100, 100), key)
    p.commit_transaction(30)

    p.begin_transaction()
    p.produce(topic, _record("customers", 200, 200), key)
    p.flush(30)  # the newer watermark is in the log before the abort
    p.abort_transaction(30)

    if later_commit:  # an unrelated committed write after the aborted one
        p.begin_transaction()
        p.produce(topic, _record("receipts", 7, 7), watermark.key_bytes(TENANT, "receipts"))
        p.commit_transaction(30)

    raw = _uncommitted_cursors(kafka_bootstrap, topic)
    assert 200 in raw, f"the aborted watermark never reached the log: {raw}"

    loaded = watermark.load(KafkaConfig(bootstrap_servers=kafka_bootstrap), topic, TENANT)
    assert loaded["customers"].position == Position(100, 100)
    assert loaded["customers"].rows_total == 100
    if later_commit:
        assert loaded["receipts"].position == Position(7, 7)
