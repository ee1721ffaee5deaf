"""The ceilings the poller is measured against, each a single component on its own: the raw
driver's streaming fetch, a plain (non-transactional) producer, and the Avro encoders."""

from __future__ import annotations

import contextlib
import io
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fastavro
import psycopg2
import pymysql
import pymysql.cursors
import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from sqlalchemy.engine import make_url

from poller.avro.encoder import build_encoder
from poller.avro.schemas import EntitySchema
from poller.batch import BEGINNING, Position
from poller.config import AppConfig
from poller.errors import SchemaMismatchError
from poller.kafka.publisher import PRODUCER_DEFAULTS
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, make_engine

FETCH_CHUNK = 10_000


def entity_query(cfg: AppConfig, schema: EntitySchema, engine: sa.Engine) -> EntityQuery:
    return EntityQuery(
        cfg.entities["customers"], cfg.source, cfg.tenant, schema.field_names, engine.dialect
    )


def full_select(query: EntityQuery, engine: sa.Engine) -> tuple[str, Any]:
    """The poller's first-batch SELECT without its LIMIT: SQL text and driver parameters (a
    list for a positional paramstyle: mysqlclient's)."""
    stmt, params = query.batch(BEGINNING, None)
    compiled = stmt.limit(None).compile(dialect=engine.dialect)
    values = {**compiled.params, **params}
    if compiled.positiontup is not None:
        return str(compiled), [values[name] for name in compiled.positiontup]
    return str(compiled), values


def raw_fetch(url: str, sql: str, params: Any) -> tuple[int, float]:
    """Stream the SELECT through the bare driver's server-side cursor: (rows, seconds). The
    URL's driver: MariaDB's `mysql://` is mysqlclient when installed, as in the poller."""
    u = make_url(url)
    kw: dict[str, Any] = {"host": u.host, "port": u.port, "user": u.username,
                          "password": u.password}  # fmt: skip
    conn: Any
    if u.get_backend_name() == "postgresql":
        conn = psycopg2.connect(dbname=u.database, **kw)
        cur = conn.cursor(name="bench_fetch")  # named cursor = server-side
    elif u.get_driver_name() == "mysqldb":
        import MySQLdb.cursors  # the optional mysqlclient

        conn = MySQLdb.connect(database=u.database, charset="utf8mb4", **kw)
        cur = conn.cursor(MySQLdb.cursors.SSCursor)
    else:
        conn = pymysql.connect(database=u.database, charset="utf8mb4", **kw)
        cur = conn.cursor(pymysql.cursors.SSCursor)
    try:
        t0 = time.perf_counter()
        cur.execute(sql, params)
        n = 0
        while chunk := cur.fetchmany(FETCH_CHUNK):
            n += len(chunk)
        elapsed = time.perf_counter() - t0
        cur.close()
    finally:
        conn.close()
    return n, elapsed


def raw_copy(url: str, sql: str, params: dict[str, Any]) -> tuple[int, float, int]:
    """The same SELECT as `COPY (...) TO STDOUT (FORMAT BINARY)` into memory, as the native
    path reads a batch (the bytes only, nothing parsed): (rows, seconds, bytes)."""
    u = make_url(url)
    conn = psycopg2.connect(dbname=u.database, host=u.host, port=u.port, user=u.username,
                            password=u.password)  # fmt: skip
    try:
        cur = conn.cursor()
        stmt = cur.mogrify(sql, params)
        t0 = time.perf_counter()
        sink = io.BytesIO()
        cur.copy_expert(b"COPY (" + stmt + b") TO STDOUT (FORMAT BINARY)", sink)
        elapsed = time.perf_counter() - t0
        n = cur.rowcount
        cur.close()
    finally:
        conn.close()
    return n, elapsed, sink.tell()


def reader_fetch(
    cfg: AppConfig, schema: EntitySchema, limit: int | None = None, keep: int = 0
) -> tuple[int, float, list[Sequence[object]]]:
    """Read the table through the poller's own SourceReader (keyset batches, one thread):
    (rows, seconds, the first `keep` rows)."""
    engine = make_engine(cfg.source)
    try:
        reader = SourceReader(
            engine, entity_query(cfg, schema, engine), cfg.entities["customers"], cfg.source
        )
        kept: list[Sequence[object]] = []
        n, pos, size = 0, BEGINNING, cfg.entities["customers"].batch_size
        t0 = time.perf_counter()
        while True:
            batch = reader.fetch(pos)
            n += len(batch.rows)
            if len(kept) < keep:
                kept.extend(batch.rows[: keep - len(kept)])
            if len(batch.rows) < size or batch.last is None or (limit and n >= limit):
                break
            pos = Position(batch.last.cursor, batch.last.key)
        return n, time.perf_counter() - t0, kept
    finally:
        engine.dispose()


@dataclass
class EncodeResult:
    ours_rows_per_s: list[float]  # one per repeat
    fastavro_rows_per_s: list[float]
    avg_payload_bytes: float
    payloads: list[bytes]
    keys: list[bytes]
    rows_passed: str  # "full" (reader rows as is) or "sliced" (fields only)


def _rate(fn: Callable[[], object], rows: int) -> float:
    t0 = time.perf_counter()
    fn()
    return rows / (time.perf_counter() - t0)


def encode(
    schema: EntitySchema, rows: Sequence[Sequence[object]], tenant: str, repeat: int
) -> EncodeResult:
    """Poller's generated encoder vs fastavro.schemaless_writer over the same rows.

    The encoder gets the reader's rows as the poller passes them: whole if it accepts them,
    else sliced to the fields in the timed loop (as publish_batch does). fastavro is timed on
    ready-made dicts (building them is not counted), timestamps made UTC-aware for it.
    """
    if not rows:
        raise RuntimeError("no rows to encode: the reader fetch failed")
    enc = build_encoder(schema, UTC)
    n = len(schema.field_names)
    try:
        enc(rows[0])
        passed = "full"

        def ours() -> None:
            for r in rows:
                enc(r)

    except SchemaMismatchError:  # the stream slices each row (as publish_batch does)
        passed = "sliced"

        def ours() -> None:
            for r in rows:
                enc(r[:n])

    records = [
        {
            f: (v.replace(tzinfo=UTC) if isinstance(v, datetime) else v)
            for f, v in zip(schema.field_names, r, strict=False)
        }
        for r in rows
    ]
    for rec in records:  # the schema's local_id is a string; the source's id a bigint
        rec["local_id"] = str(rec["local_id"])
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        mine.append(_rate(ours, len(rows)))

        def fast() -> None:
            for rec in records:
                buf = io.BytesIO()
                buf.write(schema.header)
                fastavro.schemaless_writer(buf, schema.schema, rec)
                buf.getvalue()

        theirs.append(_rate(fast, len(records)))
    payloads = [enc(r if passed == "full" else r[:n]) for r in rows]
    prefix = '["' + tenant + '",'
    keys = [f"{prefix}{r[0]}]".encode() for r in rows]
    avg = sum(map(len, payloads)) / len(payloads)
    return EncodeResult(mine, theirs, avg, payloads, keys, passed)


def new_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    fut = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=1,
                config={"cleanup.policy": "compact"},
            )
        ]
    )
    fut[name].result(30)


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    for fut in admin.delete_topics(list(names), operation_timeout=30).values():
        with contextlib.suppress(Exception):  # cleanup only; a leftover topic is harmless
            fut.result(60)


def raw_produce(
    bootstrap: str,
    schema: EntitySchema,
    tenant: str,
    payloads: Sequence[bytes],
    keys: Sequence[bytes],
    n: int,
    txn_every: int = 0,
) -> float:
    """n messages (payloads cycled) through a producer with the poller's settings and headers;
    seconds until all are acked. No transactions (nor idempotence) unless `txn_every` > 0:
    then one transaction per `txn_every` messages, as the poller commits per batch."""
    topic = f"bench-raw-{uuid.uuid4().hex[:10]}"
    new_topic(bootstrap, topic)
    conf: dict[str, Any] = {**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap}
    if txn_every:
        conf |= {"transactional.id": topic, "enable.idempotence": True}
    p = Producer(conf)
    headers: list[tuple[str, str | bytes | None]] = [
        ("tenant", tenant.encode()),
        ("entity", b"customers"),
        ("schema", schema.fingerprint_hex.encode()),
    ]
    produce, m = p.produce, len(payloads)
    try:
        if txn_every:
            p.init_transactions(30)
        p.poll(0)
        t0 = time.perf_counter()
        for i in range(n):
            j = i % m
            if txn_every and not i % txn_every:
                if i:
                    p.commit_transaction(60)
                p.begin_transaction()
            try:
                produce(topic, payloads[j], keys[j], headers=headers)
            except BufferError:
                p.poll(0.05)
                produce(topic, payloads[j], keys[j], headers=headers)
            if not i % 10_000:
                p.poll(0)
        if txn_every:
            p.commit_transaction(60)
        left = p.flush(120)
        elapsed = time.perf_counter() - t0
        if left:
            raise RuntimeError(f"raw producer: {left} messages not delivered")
        return elapsed
    finally:
        delete_topics(bootstrap, [topic])
