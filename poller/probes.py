"""Readiness probes: can the database and Kafka be reached right now?"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from confluent_kafka.admin import AdminClient

from poller.config import AppConfig


def probes(cfg: AppConfig, engine: sa.Engine) -> dict[str, Callable[[], bool]]:
    admin = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers})

    def database() -> bool:
        with engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1))).scalar()
        return True

    def kafka() -> bool:
        admin.list_topics(timeout=3)
        return True

    return {"database": database, "kafka": kafka}
