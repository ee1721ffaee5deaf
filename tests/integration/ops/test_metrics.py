"""The counters match the source: rows read, published, dead-lettered, batches."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.ops.harness import (
    ENTITIES,
    Proc,
    Source,
    delete_topics,
    scrape,
    start_poller,
    tail,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_counters_match_the_source(
    tmp_path: Path, source: Source, kafka_bootstrap: str, procs: list[Proc]
) -> None:
    """Once caught up, every source row was counted once (published or dead-lettered), and
    idle polls count nothing."""
    _tenant, _port, prefix, base, poller = start_poller(
        tmp_path, source, kafka_bootstrap, procs, "obs-count"
    )
    engine = sa.create_engine(source.admin_url, poolclass=NullPool)
    with engine.connect() as c:
        rows = {
            e: c.execute(sa.select(sa.func.count()).select_from(sa.table(e))).scalar_one()
            for e in ENTITIES
        }
    engine.dispose()
    try:
        wait_for(
            "every entity to be caught up",
            lambda: all(
                scrape(base).get(("poller_rows_published_total", e), 0)
                + scrape(base).get(("poller_rows_dead_lettered_total", e), 0)
                >= rows[e]
                for e in ENTITIES
            ),
            90,
            lambda: tail(poller.log_path),
        )
        time.sleep(3)  # three more polls of every entity (poll_interval_s 1)
        m = scrape(base)
    finally:
        poller.stop()
        delete_topics(kafka_bootstrap, prefix)
    counted = {
        e: m[("poller_rows_published_total", e)] + m[("poller_rows_dead_lettered_total", e)]
        for e in ENTITIES
    }
    read = {e: m[("poller_rows_read_total", e)] for e in ENTITIES}
    assert m[("poller_rows_dead_lettered_total", "product_categories")] == 1
    assert counted == rows, f"published + dead-lettered {counted} != source rows {rows}"
    assert read == rows, f"rows read {read} != source rows {rows}"
