"""A tenant's committed watermark behind another writer's open transaction is still read.

A read_committed client asking where a partition ends is told the last stable offset: the
start of the oldest open transaction (or of a commit whose markers are not written yet). The
loader used to read only that far, so on the shared watermark topic a tenant's newest
watermark, committed after another tenant's transaction began, was not seen: the poller
resumed from an older position and published rows twice (CI caught the same race in the test
reader: a partition whose commit markers were still on their way was read as empty).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition

from poller.batch import Position
from poller.config import KafkaConfig
from poller.errors import BrokerUnavailableError
from poller.kafka import backfill_state, watermark
from poller.kafka.topic_end import high_watermarks
from poller.kafka.topics import committed_consumer
from tests.integration.conftest import NewTopicFn

pytestmark = pytest.mark.integration

A, B = "acme-corp", "globex"


def _record(tenant: str, cursor: int) -> bytes:
    wm = watermark.Watermark(
        tenant, "customers", "id", Position(cursor, cursor), cursor, dt.datetime.now(dt.UTC)
    )
    return watermark.encode(wm)


def _producer(bootstrap: str, who: str) -> Producer:
    p = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"wm-open-{who}-{uuid.uuid4().hex}"}
    )
    p.init_transactions(30)
    return p


def _open(p: Producer, topic: str, key: bytes, value: bytes) -> None:
    """A transaction that wrote `key` and stays open (in the log, not yet committed)."""
    p.begin_transaction()
    p.produce(topic, value, key)
    assert p.flush(30) == 0


def _commit(p: Producer, topic: str, key: bytes, value: bytes) -> None:
    p.begin_transaction()
    p.produce(topic, value, key)
    p.commit_transaction(30)


@pytest.fixture
def shared(kafka_bootstrap: str, topic_factory: NewTopicFn) -> str:
    return topic_factory("wm_open", config={"cleanup.policy": "compact"})


def test_a_watermark_committed_behind_an_open_transaction_is_waited_for(
    kafka_bootstrap: str, shared: str
) -> None:
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap)
    b, a = _producer(kafka_bootstrap, "b"), _producer(kafka_bootstrap, "a")
    _open(b, shared, watermark.key_bytes(B, "customers"), _record(B, 5))
    _commit(a, shared, watermark.key_bytes(A, "customers"), _record(A, 1000))
    b_open = True
    try:
        # While B's transaction stays open, A's committed watermark cannot be read: the
        # loader must say so (transient, retried), never answer without it.
        with pytest.raises(BrokerUnavailableError, match="open transaction"):
            watermark.load(kafka, shared, A, timeout_s=2)
        got: dict[str, object] = {}

        def load() -> None:
            got.update(watermark.load(kafka, shared, A, timeout_s=60))

        reader = threading.Thread(target=load)
        reader.start()
        reader.join(1.0)  # still waiting for B: it may not answer before B ends
        assert reader.is_alive(), f"answered while B's transaction was open: {got}"
        b.commit_transaction(30)
        b_open = False
        reader.join(60)
        assert not reader.is_alive()
        assert isinstance(wm := got.get("customers"), watermark.Watermark), got
        assert wm.position == Position(1000, 1000)
    finally:
        if b_open:
            b.abort_transaction(30)


def test_only_the_tenants_own_records_are_waited_for(kafka_bootstrap: str, shared: str) -> None:
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap)
    b, a = _producer(kafka_bootstrap, "b"), _producer(kafka_bootstrap, "a")
    _commit(a, shared, watermark.key_bytes(A, "customers"), _record(A, 1000))
    _open(b, shared, watermark.key_bytes(B, "customers"), _record(B, 5))
    try:
        # B's transaction holds the last stable offset, but nothing of A lies beyond it.
        loaded = watermark.load(kafka, shared, A, timeout_s=5)
        assert loaded["customers"].position == Position(1000, 1000)
    finally:
        b.abort_transaction(30)


def test_an_abandoned_backfill_transaction_is_named_not_waited_for(
    kafka_bootstrap: str, shared: str
) -> None:
    """A live poller killed mid-backfill restarts without waiting for its backfill's abandoned
    transaction to time out: it reads its live watermarks and learns that a backfill state is
    unsettled, for the Backfiller to read again once it has fenced that transaction."""
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap)
    live, backfill = _producer(kafka_bootstrap, "live"), _producer(kafka_bootstrap, "backfill")
    _commit(live, shared, watermark.key_bytes(A, "customers"), _record(A, 1000))
    key = f'["{A}","customers","{backfill_state.BACKFILL}"]'.encode()
    _open(backfill, shared, key, b"{}")
    try:
        stored = backfill_state.load_all(kafka, shared, A, timeout_s=5, wait_for=watermark.live_key)
        assert stored.watermarks["customers"].position == Position(1000, 1000)
        assert stored.unsettled_backfills == {"customers"}
        with pytest.raises(BrokerUnavailableError, match="open transaction"):
            backfill_state.load_all(kafka, shared, A, timeout_s=2)  # waits for every key
    finally:
        backfill.abort_transaction(30)


def test_the_high_watermark_counts_what_the_last_stable_offset_does_not(
    kafka_bootstrap: str, shared: str
) -> None:
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap)
    b = _producer(kafka_bootstrap, "b")
    _open(b, shared, watermark.key_bytes(B, "customers"), _record(B, 5))
    consumer = committed_consumer(kafka, "wm-open-probe")
    try:
        stable = consumer.get_watermark_offsets(TopicPartition(shared, 0), timeout=15)[1]
        assert stable == 0  # what a read_committed client is told
        assert high_watermarks(kafka, shared, [0], "wm-open-probe", 15) == {0: 1}
    finally:
        consumer.close()
        b.abort_transaction(30)
