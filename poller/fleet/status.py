"""The status topic: each tenant's state as its worker last saw it, like Kafka Connect's
status.storage.topic. Compacted, one record per tenant (key = tenant id, value = JSON), written
by the tenant's owner on every change and read by `poller tenants list`:

* STARTING   the process was started and has not reached Kafka yet
* RUNNING    it fenced any previous owner and read its watermarks
* RESTARTING it exited with an error a new process may get past; restarted with backoff
* FAILED     it exited with an error only a person can fix (configuration, a bad row, a missing
             permission, ...): not restarted until its configuration changes or an operator
             runs `poller tenants restart`

A removed tenant's record is a tombstone. Writes are best effort: the status is for people, and
a lost record is replaced by the next change.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, Producer

from poller.errors import TerminalError
from poller.fleet.settings import WorkerConfig
from poller.kafka.clients import create
from poller.kafka.tail import read_topic
from poller.kafka.topics import KAFKA_LOGGER

log = logging.getLogger(__name__)

STATES = ("STARTING", "RUNNING", "RESTARTING", "FAILED")


@dataclass(frozen=True)
class TenantStatus:
    tenant: str
    state: str
    worker: str
    at: float  # seconds since the epoch
    exit: str | None = None  # how the last process ended, in words
    error: str | None = None  # what it said when it stopped (redacted by the child)


class StatusSink(Protocol):
    def write(
        self, tenant: str, state: str, exit: str | None = None, error: str | None = None
    ) -> None: ...

    def forget(self, tenant: str) -> None: ...


class StatusWriter:
    """The owner's side: an idempotent producer to the status topic."""

    def __init__(self, cfg: WorkerConfig, worker: str) -> None:
        self.topic = cfg.status_topic_name()
        self.worker = worker
        self._producer = create(
            Producer,
            {**cfg.kafka.client_options(), "enable.idempotence": True, "logger": KAFKA_LOGGER},
        )
        self._warned = False

    def write(
        self, tenant: str, state: str, exit: str | None = None, error: str | None = None
    ) -> None:
        status = TenantStatus(tenant, state, self.worker, time.time(), exit, error)
        self._send(tenant, json.dumps(asdict(status), ensure_ascii=False).encode())

    def forget(self, tenant: str) -> None:
        self._send(tenant, None)

    def _send(self, tenant: str, value: bytes | None) -> None:
        try:
            self._producer.produce(
                self.topic, key=tenant.encode(), value=value, on_delivery=self._delivered
            )
        except BufferError:
            log.warning("status of tenant %s not written: the producer's queue is full", tenant)
        self._producer.poll(0)

    def _delivered(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None and not self._warned:  # e.g. WRITE not granted: say it once
            self._warned = True
            log.warning("tenant states are not written to %s: %s", self.topic, err.str())

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)


def read_status(cfg: WorkerConfig, timeout_s: float = 10.0) -> dict[str, TenantStatus]:
    """Every tenant's latest status (none for a topic that does not exist yet)."""
    out: dict[str, TenantStatus] = {}
    try:
        messages = list(read_topic(cfg.kafka, cfg.status_topic_name(), timeout_s))
    except TerminalError:  # no worker has run yet
        return out
    for msg in messages:
        tenant = (msg.key() or b"").decode("utf-8", "replace")
        value = msg.value()
        if value is None:
            out.pop(tenant, None)
            continue
        try:
            data: dict[str, Any] = json.loads(value)
            out[tenant] = TenantStatus(**data)
        except (ValueError, TypeError):
            log.warning("status of tenant %s is not readable; ignored", tenant)
    return out
