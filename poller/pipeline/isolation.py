"""Failure isolation between the entities of one tenant.

An entity whose reads fail with a transient database error (statement timeout, lock wait, a
revoked grant, a lost connection) backs off on its own, with the same capped exponential
backoff as the tenant-wide retries, while the other entities keep flowing. Its state is named
in the logs, in `poller_entity_consecutive_failures` and in `/readyz`, until it reads again.
"""

from __future__ import annotations

import datetime as dt
import logging

from poller.config import RetryConfig
from poller.errors import SourceError, TerminalError
from poller.ops.entity_metrics import TenantMetrics
from poller.ops.logs import redact
from poller.ops.metrics import Health

log = logging.getLogger(__name__)


class EntityBackoff:
    def __init__(
        self, tenant: str, retry: RetryConfig, meters: TenantMetrics, health: Health
    ) -> None:
        self.tenant = tenant
        self.retry = retry
        self.meters = meters
        self.health = health
        self._failures: dict[str, int] = {}

    def failures(self, entity: str) -> int:
        return self._failures.get(entity, 0)

    def failed(self, entity: str, exc: SourceError, progressed: bool) -> float:
        """Count a failed drain of `entity`; returns how long it waits before the next try.
        `progressed`: it committed batches before failing, so the backoff starts over."""
        failures = 1 if progressed else self.failures(entity) + 1
        r = self.retry
        if r.max_attempts and failures > r.max_attempts:
            raise TerminalError(
                f"entity {entity!r}: giving up after {failures - 1} retries: {exc}"
            ) from exc
        self._failures[entity] = failures
        delay = float(min(r.max_backoff_s, r.initial_backoff_s * 2 ** (failures - 1)))
        kind = type(exc).__name__
        self.meters.entity(entity).read_failed(kind, failures)
        since = self.health.stuck.get(entity, {}).get("since")
        info: dict[str, object] = {
            "error": redact(f"{kind}: {exc}"),
            "failures": failures,
            "since": since or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "retry_in_s": delay,
        }
        # A new dict each time: the HTTP thread reads it without a lock.
        self.health.stuck = {**self.health.stuck, entity: info}
        log.warning(
            "%s: %s; retry %d in %.1fs from the last committed watermark "
            "(entity %s waits; the other entities go on)",
            kind,
            exc,
            failures,
            delay,
            entity,
            extra={"tenant": self.tenant, "entity": entity},
        )
        return delay

    def succeeded(self, entity: str) -> None:
        failures = self._failures.pop(entity, 0)
        if not failures:
            return
        self.meters.entity(entity).reads_again()
        self.health.stuck = {k: v for k, v in self.health.stuck.items() if k != entity}
        log.info(
            "entity %s reads again after %d failed attempt(s)",
            entity,
            failures,
            extra={"tenant": self.tenant, "entity": entity},
        )
