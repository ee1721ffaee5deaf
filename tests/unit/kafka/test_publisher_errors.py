"""librdkafka errors map onto the poller's exception tree (transient vs terminal)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from poller.errors import BrokerUnavailableError, FencedError, KafkaFatalError, PublishError
from poller.kafka.publisher import classify


@pytest.mark.parametrize(
    ("code", "expected", "hint"),
    [
        (KafkaError._FENCED, FencedError, "same tenant"),
        (KafkaError.PRODUCER_FENCED, FencedError, "same tenant"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaFatalError, "ACL"),
        (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaFatalError, "ACL"),
        (KafkaError.MSG_SIZE_TOO_LARGE, KafkaFatalError, "message.max.bytes"),
        (KafkaError._TIMED_OUT, BrokerUnavailableError, "produce"),
        (KafkaError._ALL_BROKERS_DOWN, BrokerUnavailableError, "produce"),
        (KafkaError.NOT_ENOUGH_REPLICAS, PublishError, "produce"),
    ],
)
def test_classify(code: int, expected: type[Exception], hint: str) -> None:
    err = classify(KafkaException(KafkaError(code)), "produce to t")
    assert type(err) is expected
    assert hint in str(err)
    assert "produce to t" in str(err)
