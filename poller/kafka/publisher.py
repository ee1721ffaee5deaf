"""Kafka publishing: one transactional producer per tenant.

A batch's rows and its watermark record go into one transaction, so a read_committed consumer
sees both or neither. librdkafka's errors are mapped onto the poller's exception tree here and
nowhere else: retriable → retried in place, abortable → PublishError (the run loop aborts and
redoes from the last watermark), fenced → FencedError, fatal → KafkaFatalError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from poller.config import KafkaConfig
from poller.errors import (
    BrokerUnavailableError,
    FencedError,
    KafkaFatalError,
    PollerError,
    ProducerFailedError,
    PublishError,
)
from poller.kafka.acls import AclEntry, principal_of
from poller.kafka.clients import create
from poller.kafka.topics import KAFKA_LOGGER

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]

_FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
_PERMISSION_CODES = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
}

# Throughput defaults; anything in kafka.options wins.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.max.bytes": 4_000_000,
}


def classify(
    exc: KafkaException, what: str, kafka: KafkaConfig | None = None, txn_id: str | None = None
) -> Exception:
    """Turn a librdkafka error into the poller's error for `what` was being done."""
    err: KafkaError = exc.args[0]
    code = err.code()
    text = f"Kafka {what} failed: {err.str()} ({err.name()})"
    if kafka is not None and (named := _named_denial(err, what, kafka, txn_id)) is not None:
        return named
    if code in _FENCED_CODES:
        return FencedError(
            f"{text}. Another poller with the same transactional.id (same tenant) has taken "
            "over; this one stops. Run one poller per tenant."
        )
    if code == KafkaError.MSG_SIZE_TOO_LARGE:
        return KafkaFatalError(
            f"{text}. Raise message.max.bytes (kafka.options) and the topic's max.message.bytes."
        )
    if code in _PERMISSION_CODES:
        return KafkaFatalError(f"{text}. Grant the poller's principal the missing ACL.")
    if err.fatal():
        # Fatal to this producer instance only (e.g. INVALID_TXN_STATE after a broker restart,
        # an idempotence sequence gap): a new producer recovers, a human is not needed.
        return ProducerFailedError(f"{text}; the producer is replaced")
    if code in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        return BrokerUnavailableError(text)
    return PublishError(text)


def _named_denial(
    err: KafkaError, what: str, kafka: KafkaConfig, txn_id: str | None
) -> Exception | None:
    """A missing ACL named with its resource and operation, when the failing call tells which."""
    from poller.kafka.access import authentication_error, denied

    code = err.code()
    if code in (KafkaError._AUTHENTICATION, KafkaError._SSL):
        return authentication_error(kafka, err)
    if code == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED and txn_id is not None:
        acl = AclEntry("run", "TRANSACTIONAL_ID", txn_id, "LITERAL", "WRITE")
        return denied(kafka, acl, f"{what}: {err.str()}")
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED and what.startswith("produce to "):
        acl = AclEntry("run", "TOPIC", what.removeprefix("produce to "), "LITERAL", "WRITE")
        return denied(kafka, acl, err.str())
    if code in _PERMISSION_CODES:
        from poller.errors import KafkaAuthorizationError

        return KafkaAuthorizationError(
            f"Kafka {what} was denied for {principal_of(dict(kafka.options)) or 'this principal'}"
            f": {err.str()} ({err.name()}). Grant the ACLs `poller acl` lists."
        )
    return None


class TransactionalPublisher:
    def __init__(
        self,
        kafka: KafkaConfig,
        transactional_id: str,
        stats_cb: Callable[[str], None] | None = None,
        op_timeout_s: float = 30.0,
        max_batch_bytes: int | None = None,
    ) -> None:
        conf: dict[str, Any] = {
            **PRODUCER_DEFAULTS,
            **kafka.producer_options(),
            "bootstrap.servers": kafka.bootstrap_servers,
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "transaction.timeout.ms": int(kafka.transaction_timeout_s * 1000),
            "error_cb": self._on_error,
            "logger": KAFKA_LOGGER,
        }
        if max_batch_bytes is not None:  # below every topic's max.message.bytes
            conf["batch.size"] = min(int(conf.get("batch.size", max_batch_bytes)), max_batch_bytes)
        if stats_cb is not None:
            conf["stats_cb"] = stats_cb
            conf.setdefault("statistics.interval.ms", 5000)
        self.transactional_id = transactional_id
        self._kafka = kafka
        self._timeout = op_timeout_s
        self._producer = create(Producer, conf)  # an invalid option: ConfigError
        # The raw produce() for the hot loop; a full queue (BufferError) goes through send().
        self.produce_fast = self._producer.produce
        self._in_txn = False
        self.fatal: Exception | None = None

    def _on_error(self, err: KafkaError) -> None:
        # Called from poll(); broker-down noise is retried by librdkafka itself.
        if err.fatal() or err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            self.fatal = classify(
                KafkaException(err), "producer", self._kafka, self.transactional_id
            )
        log.debug("librdkafka: %s", err.str())

    def _call(self, what: str, fn: Callable[[], None], deadline_s: float | None = None) -> None:
        """Run a transactional API call, retrying it while librdkafka says it is retriable."""
        deadline = time.monotonic() + (deadline_s or self._timeout * 4)
        while True:
            try:
                fn()
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                retry = err.retriable() and not err.fatal() and self.fatal is None
                if retry and time.monotonic() < deadline:
                    log.warning("Kafka %s: %s; retrying", what, err.str())
                    time.sleep(0.5)
                    continue
                if err.txn_requires_abort():
                    raise PublishError(
                        f"Kafka {what} failed, transaction must be aborted: {err.str()}"
                    ) from exc
                error = classify(exc, what, self._kafka, self.transactional_id)
                if isinstance(error, FencedError | KafkaFatalError | ProducerFailedError):
                    # The producer is unusable and the coordinator has aborted its transaction:
                    # nothing is left to abort or flush.
                    self.fatal, self._in_txn = error, False
                raise error from exc

    def start(self) -> None:
        """Register the transactional.id: fences any older producer of this tenant and aborts
        its open transaction, so what it had not committed never becomes visible."""
        self._call("init_transactions", lambda: self._producer.init_transactions(self._timeout))

    @property
    def in_transaction(self) -> bool:
        return self._in_txn

    def begin(self) -> None:
        self._call("begin_transaction", self._producer.begin_transaction)
        self._in_txn = True

    def send(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: Headers | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        produce = self._producer.produce
        try:
            try:
                produce(topic, value, key, headers=headers, timestamp=timestamp_ms)
            except BufferError:
                # Local queue full: let librdkafka drain it, then try once more per wait. A
                # KafkaException from the retry (the transaction failed meanwhile) is classified
                # below like the first attempt's.
                while True:
                    if self.fatal is not None:
                        raise self.fatal from None
                    self._producer.poll(0.05)
                    try:
                        produce(topic, value, key, headers=headers, timestamp=timestamp_ms)
                        return
                    except BufferError:
                        continue
        except KafkaException as exc:
            raise classify(exc, f"produce to {topic}", self._kafka) from exc

    def poll(self) -> None:
        self._producer.poll(0)
        if self.fatal is not None:
            raise self.fatal

    def commit(self) -> None:
        """Flush and commit. On an abortable failure the transaction is aborted here; when the
        transaction cannot be ended at all, the producer is marked failed (see `abort`)."""
        try:
            self._call(
                "commit_transaction", lambda: self._producer.commit_transaction(self._timeout)
            )
        except (FencedError, KafkaFatalError):
            raise
        except PublishError:
            self.abort()
            raise
        except PollerError as exc:
            # Timed out: whether it committed is unknown until the watermarks are read again;
            # this producer cannot begin another transaction, so a new one must take over.
            self._failed("commit_transaction", exc)
            raise
        self._in_txn = False

    def abort(self, deadline_s: float | None = None) -> None:
        """Abort the open transaction. If that fails (e.g. INVALID_TXN_STATE after a broker
        restart) the producer is marked failed and ProducerFailedError raised: the run loop
        replaces it, and the new producer's init_transactions aborts the transaction. Only
        fencing and missing permissions stay terminal."""
        if not self._in_txn or self.fatal is not None:
            self._in_txn = False
            return
        try:
            self._call(
                "abort_transaction",
                lambda: self._producer.abort_transaction(self._timeout),
                deadline_s,
            )
        except (FencedError, KafkaFatalError):
            raise
        except PollerError as exc:
            raise self._failed("abort_transaction", exc) from exc
        finally:
            self._in_txn = False

    def _failed(self, what: str, cause: PollerError) -> ProducerFailedError:
        failure = (
            self.fatal
            if isinstance(self.fatal, ProducerFailedError)
            else ProducerFailedError(
                f"Kafka {what} could not end the transaction ({cause}); the producer is replaced"
            )
        )
        self.fatal, self._in_txn = failure, False
        return failure

    @property
    def failed(self) -> bool:
        """True when this producer can no longer be used and must be replaced."""
        return self.fatal is not None

    def queue_length(self) -> int:
        return len(self._producer)

    def close(self) -> None:
        if self.fatal is not None:
            self._producer.purge()  # a fenced/fatal producer delivers nothing more
            return
        if self._in_txn:
            try:
                self.abort(deadline_s=10)
            except Exception as exc:  # closing anyway; the coordinator times the txn out
                log.warning("abort on close failed: %s", exc)
        self._producer.flush(5)
