"""Zone-aware cursors on the real PostgreSQL: the upper bound is an instant, never wall-clock
time (which is ambiguous in the autumn's repeated hour)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from poller.batch import BEGINNING
from poller.config import EntityConfig, SourceConfig
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine

pytestmark = pytest.mark.integration

UTC = dt.UTC


def test_upper_bound_on_timestamptz_is_an_instant_in_the_repeated_hour(pg_url: str) -> None:
    """Europe/Berlin repeats 02:00-03:00 on 2024-10-27 (00:00-01:00 UTC and 01:00-02:00 UTC).
    With the database's now at 00:30 UTC (02:30 CEST, the first time round) the bound must
    exclude a row stamped 00:45 UTC; as naive 02:30 PostgreSQL reads it as CET, 01:30 UTC: an
    hour in the future, and rows still being written would be passed."""
    writer = sa.create_engine(pg_url, poolclass=NullPool)
    with writer.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE t (id integer PRIMARY KEY, updated_at timestamptz NOT NULL)")
        )
        stamps = [
            dt.datetime(2024, 10, 27, h, m, tzinfo=UTC) for h, m in ((0, 15), (0, 45), (1, 20))
        ]
        conn.execute(
            sa.text("INSERT INTO t VALUES (:id, :ts)"),
            [{"id": i, "ts": ts} for i, ts in enumerate(stamps, 1)],
        )
    writer.dispose()
    src = SourceConfig(url=pg_url, timezone="Europe/Berlin")
    ent = EntityConfig.model_validate(
        {"table": "t", "key": "id", "fields": {"local_id": "id"}, "settle_delay_s": 0,
         "batching": {"mode": "timestamp", "column": "updated_at"}}
    )  # fmt: skip
    engine = make_engine(src)
    try:
        query = EntityQuery(ent, src, "acme", ["local_id"], engine.dialect, name="t")
        reader = SourceReader(engine, query, ent, src)
        assert reader.cursor_type().aware
        with engine.connect() as conn:
            upper, _, _ = reader._bounds.time_bound(
                conn, dt.datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
            )
            assert isinstance(upper, dt.datetime) and upper.tzinfo is not None
            stmt, params = query.batch(BEGINNING, upper)
            ids = [row[0] for row in conn.execute(stmt, params)]
        assert ids == [1]
    finally:
        engine.dispose()
