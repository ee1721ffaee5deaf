"""Heartbeats against the real services: an idle entity rewrites its watermark record with the
database's current time, without moving it, and the metrics follow."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest

from poller.config import KafkaConfig, parse_config
from poller.kafka.watermark import Watermark, load
from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller
from tests.integration.pipeline.helpers import (
    PEOPLE_DDL,
    TENANT,
    config,
    db_url,
    execute,
    kafka_section,
    people_entity,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_an_idle_entity_heartbeats_with_the_database_time(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    prefix: str,
    kafka_bootstrap: str,
) -> None:
    url = db_url(backend, request, tmp_path)
    execute(url, *PEOPLE_DDL)
    execute(
        url,
        "INSERT INTO people VALUES (1, :t, 'A', NULL, :at), (2, :t, 'B', NULL, :at)",
        params={"t": TENANT, "at": dt.datetime(2024, 1, 1, 9, 0)},
    )
    entities = {
        "customers": people_entity("timestamp", 100, poll_interval_s=0.1, heartbeat_interval_s=0.5),
        # id mode too: the heartbeat asks the database for its time in every mode
        "product_categories": {
            "table": "people",
            "key": "id",
            "fields": {"local_id": "id", "name": "f_name"},
            "batching": {"mode": "id", "column": "id"},
            "poll_interval_s": 0.1,
            "heartbeat_interval_s": 0.5,
        },
    }
    # Naive timestamps in Moscow time: a heartbeat that took the database's local time for
    # UTC would be three hours off.
    cfg = config(url, TENANT, kafka_bootstrap, prefix, entities, tenant_column="user_id",
                 timezone="Europe/Moscow")  # fmt: skip
    metrics, stop = Metrics(), threading.Event()
    poller = Poller(parse_config(cfg), metrics, None, stop)
    started = time.time()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            poller.run()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def beats(after: dt.datetime | None) -> dict[str, Watermark] | None:
        k = KafkaConfig(**kafka_section(kafka_bootstrap, prefix))
        if failed:
            pytest.fail(f"the poller stopped: {failed[0]!r}")
        stored = load(k, k.watermark_topic_name(TENANT), TENANT, timeout_s=15, missing_ok=True)
        ok = len(stored) == 2 and all(
            w.heartbeat_at is not None and (after is None or w.heartbeat_at > after)
            for w in stored.values()
        )
        return stored if ok else None

    try:
        first = wait_until(lambda: beats(None), 60, "a heartbeat of both entities", 0.2)
        latest = max(w.heartbeat_at for w in first.values() if w.heartbeat_at is not None)
        second = wait_until(lambda: beats(latest), 60, "the next heartbeats", 0.2)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()

    now = dt.datetime.now(dt.UTC)
    for name, wm in second.items():
        assert wm.heartbeat_at is not None and wm.heartbeat_at.tzinfo is not None
        assert abs((now - wm.heartbeat_at).total_seconds()) < 60, (name, wm.heartbeat_at, now)
        assert wm.rows_total == 2, wm  # the watermark itself does not move
        labels = {"tenant": TENANT, "entity": name}
        caught_up = metrics.registry.get_sample_value("poller_caught_up_timestamp_seconds", labels)
        assert caught_up is not None and caught_up >= wm.heartbeat_at.timestamp() - 1e-6
        beat = metrics.registry.get_sample_value("poller_heartbeat_timestamp_seconds", labels)
        assert beat is not None and beat > started
    # MariaDB's TIMESTAMP holds an instant (written at 09:00 UTC) and reads it in the session's
    # zone, source.timezone: 12:00 in Moscow. PostgreSQL's timestamp is wall-clock text.
    wall = 12 if backend == "mariadb" else 9
    assert second["customers"].position.cursor == dt.datetime(2024, 1, 1, wall, 0)
    assert (second["product_categories"].position.cursor, first["customers"].position.key) == (
        2,
        2,
    )
