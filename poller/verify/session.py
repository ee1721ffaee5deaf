"""One verify (and optional repair) of one entity: watermark, topic snapshot, source merge,
the first differences with the fields that differ."""

from __future__ import annotations

import io
import tempfile
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import fastavro
import sqlalchemy as sa

from poller.avro.schemas import load_schema
from poller.batch import Position
from poller.config import AppConfig
from poller.kafka.publisher import TransactionalPublisher
from poller.kafka.watermark import Watermark
from poller.pipeline.stream import EntityStream
from poller.pipeline.wire import register_entities
from poller.source.keys import key_kinds
from poller.source.query import EntityQuery
from poller.verify.compare import DIFFERENT, KINDS, Counts, Difference, Merge
from poller.verify.keys import avro_body
from poller.verify.native_source import NativePages
from poller.verify.repair import RepairCounts, Repairer
from poller.verify.source_side import VerifySource
from poller.verify.topic_side import TopicSnapshot, fetch_values, open_spill


def entity_streams(cfg: AppConfig, engine: sa.Engine, names: list[str]) -> dict[str, EntityStream]:
    """The entities' streams as the poller builds them: encoder, message keys, headers, and in
    the Confluent format the registered schemas' framing (looked up or registered as `run`
    does)."""
    schemas = {n: load_schema(n) for n in names}
    queries = {
        n: EntityQuery(cfg.entities[n], cfg.source, cfg.tenant, schemas[n].field_names,
                       engine.dialect, name=n)
        for n in names
    }  # fmt: skip
    wires = register_entities(cfg, schemas, engine, queries, with_history=True)
    tz = zoneinfo.ZoneInfo(cfg.source.timezone)
    kinds: dict[str, tuple[str, ...]] = {}  # the key columns' database kinds, in key order
    for n in names:
        wire = wires.get(n)
        if wire is not None:
            by_column = {f.column: f.kind for f in wire.key_fields}
            kinds[n] = tuple(by_column[c] for c in cfg.entities[n].key_columns)
        else:
            kinds[n] = tuple(key_kinds(engine, queries[n]))
    return {
        n: EntityStream(
            name=n,
            cfg=cfg.entities[n],
            schema=schemas[n],
            topic=cfg.kafka.topic_for(n, cfg.tenant),
            tenant=cfg.tenant,
            tz=tz,
            position=Position(),
            wire=wires.get(n),
            key_kinds=kinds[n],
        )
        for n in names
    }


class Progress:
    """Progress callbacks of a verify; this one shows nothing."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def phase(self, entity: str, what: str, total: int | None) -> None:
        """A new phase starts (`total` units, None when unknown)."""

    def update(self, done: int) -> None:
        """`done` units of the current phase are complete."""

    def advance(self, n: int) -> None:
        """`n` more units of the current phase are complete."""


@dataclass
class FieldDiff:
    field: str
    source: object
    topic: object


@dataclass
class EntityReport:
    entity: str
    topic: str
    watermark: Position | None
    counts: Counts
    samples: dict[str, list[Difference]] = field(default_factory=dict)
    fields: dict[bytes, list[FieldDiff]] = field(default_factory=dict)  # by raw key
    repair: RepairCounts | None = None
    seconds: float = 0.0

    @property
    def equal(self) -> bool:
        return self.counts.differences == 0


def verify_entity(
    cfg: AppConfig,
    stream: EntityStream,
    engine: sa.Engine,
    watermark: Watermark | None,
    *,
    sample: int = 10,
    publisher: TransactionalPublisher | None = None,
    rows_per_s: float | None = None,
    progress: Progress | None = None,
    spill_dir: Path | None = None,
) -> EntityReport:
    """Compare one entity's source rows with its topic; repair when a publisher is given."""
    t0 = time.monotonic()
    prog = progress or Progress()
    name = stream.name
    entity = cfg.entities[name]
    position = watermark.position if watermark is not None else None
    query = EntityQuery(
        entity, cfg.source, cfg.tenant, stream.schema.field_names, engine.dialect, name=name
    )
    source = VerifySource(engine, query, entity, cfg.source, position)
    report = EntityReport(name, stream.topic, position, Counts())
    report.samples = {k: [] for k in KINDS}
    repairer: Repairer | None = None
    if publisher is not None:
        repairer = Repairer(stream, entity, source, publisher, rows_per_s)

    def sink(d: Difference) -> None:
        kept = report.samples[d.kind]
        if len(kept) < sample:
            kept.append(d)
        if repairer is not None:
            repairer.offer(d.key, d.raw_key)

    with tempfile.TemporaryDirectory(prefix="poller-verify-", dir=spill_dir) as tmp:
        topic_db = open_spill(Path(tmp))
        source_db = open_spill(Path(tmp))
        try:
            snapshot = TopicSnapshot(topic_db, stream)
            snapshot.load(cfg.kafka, on_progress=_topic_progress(prog, name))
            native = NativePages.of(stream, engine.dialect.name, engine.dialect.driver,
                                    source.composite)  # fmt: skip
            merge = Merge(stream, sink, report.counts, native)
            prog.phase(name, "comparing with the source", snapshot.count() or None)
            merge.run(source, snapshot, source_db, prog.advance)
            if repairer is not None:
                prog.phase(name, "repairing", report.counts.differences)
                repairer.on_chunk = lambda c: prog.update(c.checked)
                repairer.flush()
                report.repair = repairer.counts
        finally:
            topic_db.close()
            source_db.close()
    if report.samples[DIFFERENT]:
        report.fields = _field_diffs(cfg, stream, source, report.samples[DIFFERENT])
    report.seconds = time.monotonic() - t0
    return report


def _topic_progress(prog: Progress, name: str) -> Callable[[int, int], None]:
    started = False

    def on(done: int, total: int) -> None:
        nonlocal started
        if not started:
            prog.phase(name, "reading the topic", total)
            started = True
        prog.update(done)

    return on


def _field_diffs(
    cfg: AppConfig, stream: EntityStream, source: VerifySource, diffs: list[Difference]
) -> dict[bytes, list[FieldDiff]]:
    """Which fields differ, for the listed keys: the source rows read again, the topic's
    records fetched by offset, both bodies decoded with the entity's schema."""
    schema = stream.schema.schema
    rows = source.rows_by_keys([d.key for d in diffs])
    by_raw = {stream.message_key(source.key(r)): r for r in rows}
    wanted = [(d.partition, d.offset or 0) for d in diffs if d.partition is not None]
    values = fetch_values(cfg.kafka, stream.topic, wanted, tenant=cfg.tenant)
    out: dict[bytes, list[FieldDiff]] = {}
    for d in diffs:
        row = by_raw.get(d.raw_key)
        value = values.get((d.partition, d.offset or 0)) if d.partition is not None else None
        if row is None or value is None:
            continue
        try:
            ours = _decode(schema, stream.encoder(row[: source.n_fields]))
            theirs = _decode(schema, value)
        except Exception:  # e.g. a record of another schema version: digest differs, no detail
            continue
        out[d.raw_key] = [
            FieldDiff(f, ours.get(f), theirs.get(f))
            for f in stream.schema.field_names
            if ours.get(f) != theirs.get(f)
        ]
    return out


def _decode(schema: dict[str, Any], payload: bytes) -> dict[str, object]:
    record = fastavro.schemaless_reader(io.BytesIO(avro_body(payload)), schema, None)
    assert isinstance(record, dict)
    return record
