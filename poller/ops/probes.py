"""Readiness probes: can the database and Kafka be reached right now?"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

import sqlalchemy as sa
from confluent_kafka.admin import AdminClient

from poller.config import AppConfig
from poller.kafka.clients import create

log = logging.getLogger(__name__)


class _DebugLog:
    """librdkafka's log callback target for the probe client: its per-connect-attempt lines
    go through logging (JSON, redacted) at DEBUG, not raw to stderr at every /readyz while
    Kafka is down. The outcome is in /readyz and the run loop's own log lines."""

    def log(self, _level: int, msg: str, *args: object) -> None:
        log.debug(msg, *args)


def probes(
    cfg: AppConfig,
    engine: sa.Engine,
    slot: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> dict[str, Callable[[], bool]]:
    """`slot`: the source's query slot (source.max_concurrent_queries); the probe's query counts
    against the cap like any other."""
    admin = create(AdminClient, {**cfg.kafka.client_options(), "logger": _DebugLog()})

    def database() -> bool:
        with slot(), engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1))).scalar()
        return True

    def kafka() -> bool:
        try:
            admin.list_topics(timeout=3)
        finally:
            admin.poll(0)  # serve the queued log lines
        return True

    return {"database": database, "kafka": kafka}
