"""Without the extension (or with POLLER_NATIVE=0) every entity takes the Python path, and the
log says why once."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from poller.avro.schemas import load_schema
from poller.batch import Position
from poller.config import EntityConfig
from poller.ops.entity_metrics import TenantMetrics
from poller.ops.metrics import Metrics
from poller.pipeline import native
from poller.pipeline.stream import EntityStream
from poller.source import native_pg


class _Reader:
    native: object = None


def _meters() -> TenantMetrics:
    return TenantMetrics(Metrics(), "acme", ["customers"])


def _stream() -> EntityStream:
    ent = EntityConfig(
        table="customers",
        fields={"local_id": "id", "updated_at": "updated_at"},
        key="id",
        batching={"mode": "id", "column": "id"},
    )
    return EntityStream("customers", ent, load_schema("customers"), "t", "acme", dt.UTC, Position())


def test_poller_native_0_turns_the_path_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("POLLER_NATIVE", "0")
    assert not native_pg.available()
    reader = _Reader()
    with caplog.at_level(logging.INFO):
        native.attach({"customers": _stream()}, {"customers": reader}, "postgresql",  # type: ignore[dict-item]
                      "psycopg2", _meters())  # fmt: skip
    assert reader.native is None
    assert "native PostgreSQL path is off (POLLER_NATIVE=0)" in caplog.text


def test_other_databases_never_take_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLLER_NATIVE", raising=False)
    reader = _Reader()
    native.attach({"customers": _stream()}, {"customers": reader}, "mysql", "pymysql", _meters())  # type: ignore[dict-item]
    assert reader.native is None


def test_the_spec_frames_messages_like_the_stream() -> None:
    stream = _stream()
    spec = native.native_spec(stream)
    assert spec.header == stream.schema.header
    assert spec.key_head == b'["acme",'
    assert not spec.avro_key and not spec.time_mode
    assert [f.name for f in spec.fields] == list(stream.schema.field_names)


def test_zone_tables_follow_zoneinfo() -> None:
    from zoneinfo import ZoneInfo

    table, (lo, hi) = native_pg.zone_table(ZoneInfo("Europe/Berlin"))
    epoch = dt.datetime(1970, 1, 1)
    tz = ZoneInfo("Europe/Berlin")
    for wall in (dt.datetime(2021, 3, 28, 2, 30), dt.datetime(2021, 10, 31, 2, 30),
                 dt.datetime(1945, 5, 24, 1, 0), dt.datetime(2099, 7, 1)):  # fmt: skip
        us = (wall - epoch) // dt.timedelta(microseconds=1)
        assert lo <= us < hi
        offset = [o for start, o in table if start <= us][-1]
        assert offset == tz.utcoffset(wall) // dt.timedelta(microseconds=1)
    fixed, _ = native_pg.zone_table(ZoneInfo("UTC"))
    assert fixed == [(-(1 << 63), 0)]
