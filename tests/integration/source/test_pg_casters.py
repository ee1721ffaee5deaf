"""PostgreSQL batches are read with psycopg2's C date/timestamp casters, and only a batch that may
hold one of the driver's sentinels ('infinity' -> datetime.max) or a year it cannot read is read
again with the exact casters: the fast path never publishes a changed value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from poller.avro.values import Unrepresentable
from poller.batch import BEGINNING, Position
from poller.config import EntityConfig, SourceConfig
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine

pytestmark = pytest.mark.integration

FIELDS = ["id", "born", "seen", "seen_tz"]


@pytest.fixture
def reader(pg_url: str) -> Iterator[SourceReader]:
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE t (id bigint PRIMARY KEY, born date, seen timestamp, seen_tz timestamptz)"
        )
        # batch 1 (ids 1-3): ordinary values; batch 2 (4-6): the sentinels and a year 10000;
        # batch 3 (7-9): genuine extreme values that only look like sentinels.
        conn.exec_driver_sql(
            "INSERT INTO t VALUES "
            "(1, '1980-05-01', '2020-01-01 10:00:00.123456', '2024-01-01 00:00+00'), "
            "(2, NULL, NULL, NULL), "
            "(3, '2001-02-03', '2021-03-28 02:30', '2021-03-28 01:30+00'), "
            "(4, 'infinity', 'infinity', 'infinity'), "
            "(5, '-infinity', '-infinity', '-infinity'), "
            "(6, '10000-01-01', '10000-01-01 00:00', '2000-01-01 00:00+00'), "
            "(7, '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00'), "
            "(8, '0001-01-01', '0001-01-01 00:00', '0001-01-01 00:00+00'), "
            "(9, '2000-01-01', '2000-01-01 00:00', '2000-01-01 00:00+00')"
        )
    admin.dispose()
    src = SourceConfig(url=pg_url)
    engine = make_engine(src)
    ent = EntityConfig.model_validate(
        {
            "table": "t",
            "fields": {f: f for f in FIELDS},
            "key": "id",
            "batching": {"mode": "id", "column": "id"},
            "batch_size": 3,
        }
    )
    yield SourceReader(engine, EntityQuery(ent, src, None, FIELDS, engine.dialect), ent, src)
    engine.dispose()


def _unrepresentable(value: object, text: str) -> bool:
    return type(value) is Unrepresentable and value == text


def test_only_a_batch_with_sentinels_is_read_again(reader: SourceReader) -> None:
    first = reader.fetch(BEGINNING)
    assert reader.exact_rereads == 0  # ordinary values: the C casters' result is kept
    assert first.rows[0][1:4] == (
        dt.date(1980, 5, 1),
        dt.datetime(2020, 1, 1, 10, 0, 0, 123456),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )
    assert first.rows[1][1:4] == (None, None, None)

    second = reader.fetch(Position(3, 3))
    assert reader.exact_rereads == 1
    inf, minus, y10k = second.rows
    assert all(_unrepresentable(v, "infinity") for v in inf[1:4])
    assert all(_unrepresentable(v, "-infinity") for v in minus[1:4])
    assert _unrepresentable(y10k[1], "10000-01-01")
    assert isinstance(y10k[2], Unrepresentable)
    assert y10k[3] == dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

    third = reader.fetch(Position(6, 6))
    assert reader.exact_rereads == 2  # looked like sentinels: read again, and kept as they are
    high, low, _ = third.rows
    assert high[1:4] == (
        dt.date(9999, 12, 31),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    )
    assert low[1:3] == (dt.date(1, 1, 1), dt.datetime(1, 1, 1))
    assert not any(isinstance(v, Unrepresentable) for v in (*high, *low))


def test_a_year_the_driver_cannot_read_alone_triggers_the_exact_read(
    reader: SourceReader,
) -> None:
    batch = reader.fetch(Position(5, 5))  # ids 6-8: year 10000 first, no sentinel before it
    assert reader.exact_rereads == 1
    assert [r[0] for r in batch.rows] == [6, 7, 8]
    assert _unrepresentable(batch.rows[0][1], "10000-01-01")
    assert batch.last is not None and batch.last.cursor == 8
