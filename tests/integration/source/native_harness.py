"""Runs one entity's batches through both PostgreSQL paths (psycopg2 rows + the generated encoder,
and COPY BINARY + the poller_native extension) and compares what each would produce.

The native tests need the extension; with POLLER_NATIVE=0 (the CI run without it) they are
skipped on purpose, and without it installed (and POLLER_NATIVE not 0) they fail: `make venv`
builds it wherever cargo exists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import fastavro
import pytest
import sqlalchemy as sa

from poller.avro.keys import KeyField, build_key_encoder
from poller.avro.registry import Registered
from poller.avro.schemas import EntitySchema, schema_fingerprint
from poller.batch import BEGINNING, Batch, Position
from poller.config import EntityConfig, SourceConfig
from poller.config.catalog import is_nullable as _is_nullable
from poller.errors import BadValueError
from poller.pipeline.native import native_spec
from poller.pipeline.sizes import NO_LIMIT, check_size
from poller.pipeline.stream import EntityStream, epoch_ms
from poller.pipeline.wire import EntityWire
from poller.source import native_pg
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine

TENANT = "acme"


def require_native() -> None:
    """The native tests need the extension; a run without it leaves their files out (Makefile),
    so reaching here without it is a failure, never a skip."""
    if not native_pg.available():
        pytest.fail("the poller_native extension is not installed (make venv builds it)")


def schema_of(name: str, fields: Sequence[tuple[str, Any]]) -> EntitySchema:
    raw = {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}
    return EntitySchema(
        name=name,
        schema=fastavro.parse_schema(raw, named_schemas={}),
        raw=raw,
        field_names=tuple(n for n, _ in fields),
        required=frozenset(n for n, t in fields if not _is_nullable(t)),
        fingerprint=schema_fingerprint(raw),
    )


@dataclass
class Row:
    """One row as the Python path would publish it: None value and key when it is a bad row."""

    value: bytes | None
    key: bytes | None
    stamp: int
    bad: str | None = None


@dataclass
class Compared:
    python: list[Row]
    native_used: bool  # the extension encoded the batch (else it handed it to the Python path)
    last: Position | None
    fallbacks: list[str] = field(default_factory=list)


class TwoPaths:
    """The same entity read by a plain reader and by one with the native path attached."""

    def __init__(
        self,
        url: str,
        schema: EntitySchema,
        entity: dict[str, Any],
        *,
        timezone: str = "UTC",
        tenant: str = TENANT,
        tenant_column: str | None = None,
        confluent: bool = False,
        max_value: int = NO_LIMIT,
    ) -> None:
        self.ent = EntityConfig.model_validate(entity)
        self.src = SourceConfig(url=url, timezone=timezone, tenant_column=tenant_column)
        self.engine = make_engine(self.src)
        wire = None
        if confluent:
            key_type = "long" if entity.get("key_type", "long") == "long" else "string"
            kfields = (KeyField(self.ent.key_columns[0], "local_id", key_type),)  # type: ignore[arg-type]
            wire = EntityWire(
                Registered("v", 7),
                Registered("k", 8),
                {},
                build_key_encoder(Registered("k", 8).prefix, tenant, kfields, self.ent.key_columns),
                kfields,
            )
        self.stream = EntityStream(
            schema.name, self.ent, schema, "topic", tenant, ZoneInfo(timezone), BEGINNING, wire=wire
        )
        self.stream.max_value_bytes = max_value
        self.python = self._reader(schema, tenant)
        self.native = self._reader(schema, tenant)
        self.fallbacks: list[str] = []
        self.native.native = native_pg.NativeReader(
            native_spec(self.stream), "test", self.fallbacks.append, give_up_after=1 << 30
        )

    def _reader(self, schema: EntitySchema, tenant: str) -> SourceReader:
        query = EntityQuery(self.ent, self.src, tenant, schema.field_names, self.engine.dialect)
        return SourceReader(self.engine, query, self.ent, self.src)

    def close(self) -> None:
        self.engine.dispose()

    def python_rows(self, batch: Batch) -> list[Row]:
        s = self.stream
        out = []
        for row in batch.rows:
            stamp = epoch_ms(row[s.n_fields], s.tz) if s.cfg.batching.mode.value != "id" else 0
            key = s.message_key(s.layout.message_key(row))
            try:
                value = s.encoder(row[: s.n_fields])
                if len(value) > s.max_value_bytes:
                    check_size(value, s.topic, s.max_value_bytes, s.compression)
            except BadValueError as exc:
                out.append(Row(None, None, stamp, f"{exc.field}: {exc.reason}"))
                continue
            out.append(Row(value, key, stamp))
        return out

    def compare(self, position: Position) -> Compared:
        """Both paths' reading of the batch after `position`; asserts what must hold."""
        before = len(self.fallbacks)
        py = self.python.fetch(position)
        nat = self.native.fetch(position)
        rows = self.python_rows(py)
        fallbacks = self.fallbacks[before:]
        assert len(nat.rows) == len(py.rows)
        if nat.encoded is None:
            assert fallbacks, "the native reader returned rows without saying why"
            assert repr(nat.last) == repr(py.last)  # the Python path read it
            return Compared(rows, False, py.last, fallbacks)
        bad = [r.bad for r in rows if r.bad is not None]
        assert not bad, f"the native path encoded a batch with bad rows: {bad}"
        assert nat.encoded.values == [r.value for r in rows]
        assert nat.encoded.keys == [r.key for r in rows]
        assert (nat.encoded.stamps or [0] * len(rows)) == [r.stamp for r in rows]
        assert repr(nat.last) == repr(py.last)  # same value, type and UTC offset
        return Compared(rows, True, nat.last, fallbacks)

    def compare_all(self) -> list[Compared]:
        """Every batch from the beginning, each compared."""
        out: list[Compared] = []
        position = BEGINNING
        while True:
            c = self.compare(position)
            out.append(c)
            if len(c.python) < self.ent.batch_size or c.last is None:
                return out
            position = c.last


@contextmanager
def two_paths(*args: Any, **kwargs: Any) -> Iterator[TwoPaths]:
    paths = TwoPaths(*args, **kwargs)
    try:
        yield paths
    finally:
        paths.close()


def run_sql(
    url: str, *statements: str, rows: Sequence[dict[str, Any]] = (), insert: str = ""
) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for stmt in statements:
                conn.exec_driver_sql(stmt)
            if rows:
                conn.execute(sa.text(insert), list(rows))
    finally:
        engine.dispose()


UTC = dt.UTC
