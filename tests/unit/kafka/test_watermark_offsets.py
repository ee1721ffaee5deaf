"""Reading the watermark topic's end survives a leader that is not known yet, and gives up
on errors that will not pass."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from poller.errors import BrokerUnavailableError, KafkaAuthorizationError
from poller.kafka.topic_end import end_offset as _high_watermark


class FlakyConsumer:
    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.calls = 0

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return 0, 42


def test_not_leader_right_after_creation_is_asked_again() -> None:
    consumer = FlakyConsumer([KafkaError.NOT_LEADER_FOR_PARTITION] * 2)
    assert _high_watermark(consumer, "t.watermarks", 0, timeout_s=10) == 42
    assert consumer.calls == 3


def test_an_error_that_will_not_pass_is_raised_at_once_as_transient() -> None:
    consumer = FlakyConsumer([KafkaError.INVALID_REQUEST])
    with pytest.raises(BrokerUnavailableError, match=r"t\.watermarks\[0\]"):
        _high_watermark(consumer, "t.watermarks", 0, timeout_s=10)
    assert consumer.calls == 1


def test_a_missing_read_acl_is_terminal_and_named_at_once() -> None:
    """Issue 17: retried as transient it looped forever; now exit 5, naming topic and READ."""
    consumer = FlakyConsumer([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaAuthorizationError, match=r"READ on TOPIC 't\.watermarks'"):
        _high_watermark(consumer, "t.watermarks", 0, timeout_s=10)
    assert consumer.calls == 1


def test_a_leader_that_never_comes_gives_up_at_the_timeout() -> None:
    consumer = FlakyConsumer([KafkaError.LEADER_NOT_AVAILABLE] * 1000)
    with pytest.raises(BrokerUnavailableError):
        _high_watermark(consumer, "t.watermarks", 0, timeout_s=0.5)
    assert 1 < consumer.calls < 50
