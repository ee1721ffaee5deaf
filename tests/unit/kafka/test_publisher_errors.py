"""librdkafka errors map onto the poller's exception tree (transient vs terminal)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from poller.config import KafkaConfig
from poller.errors import (
    BrokerUnavailableError,
    ConfigError,
    FencedError,
    KafkaFatalError,
    ProducerFailedError,
    PublishError,
    TransientError,
)
from poller.kafka.publisher import TransactionalPublisher, classify


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


# ------------------------------------------------------------- failures to end a transaction
# A stand-in for librdkafka's Producer where a real broker cannot be made to return these
# errors on demand; the classification and the publisher's state are what is tested.


class _StubProducer:
    """Raises the queued KafkaErrors (or BufferError) from the named calls, in order."""

    def __init__(self, **raises: list[BaseException]) -> None:
        self.raises = raises
        self.calls: list[str] = []

    def _maybe_raise(self, name: str) -> None:
        self.calls.append(name)
        queue = self.raises.get(name)
        if queue:
            raise queue.pop(0)

    def abort_transaction(self, _timeout: float) -> None:
        self._maybe_raise("abort_transaction")

    def commit_transaction(self, _timeout: float) -> None:
        self._maybe_raise("commit_transaction")

    def produce(self, *_args: object, **_kw: object) -> None:
        self._maybe_raise("produce")

    def poll(self, _timeout: float) -> int:
        self.calls.append("poll")
        return 0

    def purge(self) -> None:
        self.calls.append("purge")

    def flush(self, _timeout: float) -> int:
        self.calls.append("flush")
        return 0


def _publisher(stub: _StubProducer) -> TransactionalPublisher:
    pub = TransactionalPublisher(KafkaConfig(bootstrap_servers="127.0.0.1:1"), "t.stub")
    pub._producer = stub  # type: ignore[assignment]
    pub._in_txn = True
    return pub


def _kafka(code: int, *, fatal: bool = False, abortable: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, "test", fatal=fatal, txn_requires_abort=abortable))


@pytest.mark.parametrize("fatal", [True, False], ids=["fatal", "not-fatal"])
def test_a_failed_abort_replaces_the_producer_instead_of_exiting(fatal: bool) -> None:
    """After a broker restart abort_transaction returned INVALID_TXN_STATE and the poller
    exited 5: a failure to end a transaction is transient, and the producer is replaced."""
    stub = _StubProducer(abort_transaction=[_kafka(KafkaError.INVALID_TXN_STATE, fatal=fatal)])
    pub = _publisher(stub)
    with pytest.raises(ProducerFailedError, match="replaced") as caught:
        pub.abort()
    assert isinstance(caught.value, TransientError)
    assert pub.failed and not pub.in_transaction
    pub.close()
    assert stub.calls[-1] == "purge", stub.calls  # nothing of the failed producer is flushed


def test_a_commit_that_needs_an_abort_which_fails_is_transient() -> None:
    stub = _StubProducer(
        commit_transaction=[_kafka(KafkaError._MSG_TIMED_OUT, abortable=True)],
        abort_transaction=[_kafka(KafkaError.INVALID_TXN_STATE, fatal=True)],
    )
    pub = _publisher(stub)
    with pytest.raises(TransientError):
        pub.commit()
    assert pub.failed


def test_a_fatal_commit_is_transient_but_fencing_stays_terminal() -> None:
    pub = _publisher(_StubProducer(commit_transaction=[_kafka(KafkaError._FATAL, fatal=True)]))
    with pytest.raises(ProducerFailedError):
        pub.commit()
    assert pub.failed
    fenced = _publisher(
        _StubProducer(abort_transaction=[_kafka(KafkaError.PRODUCER_FENCED, fatal=True)])
    )
    with pytest.raises(FencedError):
        fenced.abort()


def test_a_kafka_error_on_the_queue_full_retry_is_classified() -> None:
    """The first produce() finds the local queue full, the retry fails with a KafkaException:
    that must come out as the poller's error, never a raw KafkaException (a traceback)."""
    stub = _StubProducer(
        produce=[BufferError("queue full"), _kafka(KafkaError._STATE, abortable=True)]
    )
    pub = _publisher(stub)
    with pytest.raises(PublishError, match="produce to t1"):
        pub.send("t1", b"k", b"v")
    assert stub.calls == ["produce", "poll", "produce"]


def test_an_invalid_librdkafka_option_is_a_config_error() -> None:
    kafka = KafkaConfig(bootstrap_servers="127.0.0.1:1", options={"no.such.option": 1})
    with pytest.raises(ConfigError, match=r"no\.such\.option"):
        TransactionalPublisher(kafka, "t.bad")


def test_a_fatal_error_of_the_producer_itself_is_transient() -> None:
    err = classify(_kafka(KafkaError.INVALID_TXN_STATE, fatal=True), "abort_transaction")
    assert type(err) is ProducerFailedError and "replaced" in str(err)
    fenced = classify(_kafka(KafkaError._FENCED, fatal=True), "produce")
    assert type(fenced) is FencedError
    denied = classify(_kafka(KafkaError.TOPIC_AUTHORIZATION_FAILED, fatal=True), "produce")
    assert type(denied) is KafkaFatalError
