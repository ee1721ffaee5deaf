"""Watermarks: how far each (tenant, entity) stream has been published.

They live in a compacted Kafka topic, keyed by tenant and entity, and are written in the same
transaction as the rows they cover. On start the topic is read to its end with read_committed,
so a watermark is only ever seen together with its rows. A watermark never moves backwards:
a regression is raised, never saved.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from poller.avro.schemas import SCHEMAS_DIR
from poller.batch import Position
from poller.config import KafkaConfig
from poller.errors import (
    BrokerUnavailableError,
    OpenTransactionError,
    SchemaMismatchError,
    WatermarkRegressionError,
)
from poller.kafka.acls import AclEntry, watermark_group
from poller.kafka.topic_end import end_offset, needed_ends
from poller.kafka.topics import committed_consumer

log = logging.getLogger(__name__)

_READ_BATCH = 5000  # messages per consume() while loading: one call, not one poll per record

_RAW = json.loads((SCHEMAS_DIR / "watermark.avsc").read_text())
_SCHEMA = fastavro.parse_schema(_RAW)
# Fields added since the first release, newest last. Every one is nullable with default null,
# so a record written before it existed is read with the old writer schema and gets null.
_ADDED = ("heartbeat_at", "position", "columns")
_OLDER_WRITERS = [
    fastavro.parse_schema(
        {**_RAW, "fields": [f for f in _RAW["fields"] if f["name"] not in _ADDED[i:]]}
    )
    for i in reversed(range(len(_ADDED)))
]


@dataclass(frozen=True)
class Watermark:
    tenant: str
    entity: str
    mode: str
    position: Position
    rows_total: int
    updated_at: dt.datetime
    heartbeat_at: dt.datetime | None = None  # database time of a heartbeat (UTC), see schema
    columns: list[str] | None = None  # cursor then tie-breaker column(s); None if not recorded


_OLD_KINDS = frozenset({"int", "str", "decimal", "datetime", "date"})  # the TypedValue enum


def _typed(value: object) -> dict[str, str] | None:
    """Keep the exact type the database returned so it binds back identically."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("boolean cursor values are not supported")
    if isinstance(value, int):
        return {"kind": "int", "text": str(value)}
    if isinstance(value, Decimal):
        return {"kind": "decimal", "text": str(value)}
    if isinstance(value, dt.datetime):
        return {"kind": "datetime", "text": value.isoformat()}
    if isinstance(value, dt.date):
        return {"kind": "date", "text": value.isoformat()}
    if isinstance(value, str):
        return {"kind": "str", "text": value}
    if isinstance(value, uuid.UUID):
        return {"kind": "uuid", "text": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"kind": "bytes", "text": bytes(value).hex()}
    raise SchemaMismatchError(
        f"a cursor or key value of type {type(value).__name__} ({value!r}) cannot be kept in "
        "a watermark: use integer, decimal, text, date/time, UUID or binary key columns"
    )


def _old_typed(value: object) -> dict[str, str] | None:
    """The first release's field: only the kinds its enum knows, else null."""
    typed = None if isinstance(value, tuple) else _typed(value)
    return typed if typed is not None and typed["kind"] in _OLD_KINDS else None


def _untyped(value: dict[str, str] | None) -> object:
    if value is None:
        return None
    kind, text = value["kind"], value["text"]
    if kind == "int":
        return int(text)
    if kind == "decimal":
        return Decimal(text)
    if kind == "datetime":
        return dt.datetime.fromisoformat(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "uuid":
        return uuid.UUID(text)
    if kind == "bytes":
        return bytes.fromhex(text)
    return text


def _exact(position: Position) -> dict[str, Any]:
    key = position.key
    keys = [] if key is None else list(key) if isinstance(key, tuple) else [key]
    return {"cursor": _typed(position.cursor), "key": [_typed(k) for k in keys]}


def _position(rec: Any) -> Position:
    exact = rec.get("position")
    if exact is None:
        return Position(_untyped(rec["cursor"]), _untyped(rec["key"]))
    keys = [_untyped(k) for k in exact["key"]]
    key = None if not keys else keys[0] if len(keys) == 1 else tuple(keys)
    return Position(_untyped(exact["cursor"]), key)


def key_bytes(tenant: str, entity: str) -> bytes:
    return json.dumps([tenant, entity], separators=(",", ":"), ensure_ascii=False).encode()


def encode(wm: Watermark) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf,
        _SCHEMA,
        {
            "tenant": wm.tenant,
            "entity": wm.entity,
            "mode": wm.mode,
            "cursor": _old_typed(wm.position.cursor),
            "key": _old_typed(wm.position.key),
            "rows_total": wm.rows_total,
            "updated_at": wm.updated_at,
            "heartbeat_at": wm.heartbeat_at,
            "position": _exact(wm.position),
            "columns": wm.columns,
        },
    )
    return buf.getvalue()


def _read(payload: bytes) -> Any:
    """The record with the current schema, else with each older writer schema (newest first):
    a schemaless payload does not say which one wrote it, so the one that reads it exactly wins."""
    for writer in [_SCHEMA, *_OLDER_WRITERS]:
        buf = io.BytesIO(payload)
        try:
            rec = fastavro.schemaless_reader(buf, writer, _SCHEMA)
        except (EOFError, ValueError, IndexError, KeyError):
            continue
        if buf.tell() == len(payload):
            return rec
    raise ValueError(f"not a watermark record of any known schema version ({payload[:40]!r})")


def decode(payload: bytes) -> Watermark:
    rec: Any = _read(payload)
    return Watermark(
        tenant=rec["tenant"],
        entity=rec["entity"],
        mode=rec["mode"],
        position=_position(rec),
        rows_total=rec["rows_total"],
        updated_at=rec["updated_at"],
        heartbeat_at=rec.get("heartbeat_at"),
        columns=rec.get("columns"),
    )


_ORDERED = (int, Decimal, dt.datetime, dt.date)


def _comparable(a: object, b: object) -> bool:
    # String, bytes and uuid order is the database's collation or byte order, not Python's;
    # only compare numbers and times of one type (and both naive or both aware).
    if a is None or b is None or type(a) is not type(b) or not isinstance(a, _ORDERED):
        return False
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return (a.tzinfo is None) == (b.tzinfo is None)
    return not isinstance(a, bool)


def check_forward(old: Position, new: Position, where: str) -> None:
    """Raise if `new` is behind `old`. Equal cursors compare by key where that is meaningful."""
    if not _comparable(old.cursor, new.cursor):
        return
    oc: Any = old.cursor
    nc: Any = new.cursor
    ok: Any = old.key
    nk: Any = new.key
    behind = nc < oc or (nc == oc and _comparable(ok, nk) and nk < ok)
    if behind:
        raise WatermarkRegressionError(
            f"{where}: new watermark {new} is behind the stored {old}; not saved. The source's "
            "cursor column went backwards (restored backup? clock change?). Inspect the data, "
            "then move the watermark on purpose with `poller watermarks reset`."
        )


def live_key(key: tuple[str, ...]) -> bool:
    """A live watermark's key, `[tenant, entity]` (the others are backfill states)."""
    return len(key) == 2


def load(
    kafka: KafkaConfig, topic: str, tenant: str, timeout_s: float = 60.0, missing_ok: bool = False
) -> dict[str, Watermark]:
    """Read the watermark topic to its end; return this tenant's latest watermark per entity."""
    records = read_records(kafka, topic, tenant, timeout_s, missing_ok, live_key).records
    return {key[1]: decode(value) for key, value in records.items() if live_key(key)}


@dataclass(frozen=True)
class Records:
    """A tenant's part of the watermark topic: the latest committed value per key, and the
    keys whose newest records the read did not wait for (written by transactions that were
    open, or whose commit markers were on their way, when the read began)."""

    records: dict[tuple[str, ...], bytes]
    unsettled: frozenset[tuple[str, ...]]


def every_key(key: tuple[str, ...]) -> bool:
    """Wait for the newest committed record of every key of the tenant."""
    return True


def no_key(key: tuple[str, ...]) -> bool:
    """Wait for no key: the state as committed before the oldest open transaction, with the
    keys written beyond it named unsettled."""
    return False


def read_records(
    kafka: KafkaConfig,
    topic: str,
    tenant: str,
    timeout_s: float = 60.0,
    missing_ok: bool = False,
    wait_for: Callable[[tuple[str, ...]], bool] = every_key,
    settle_s: float | None = None,
) -> Records:
    """This tenant's latest value per key of the watermark topic, read to its end: key
    `[tenant, entity]` is a live watermark, `[tenant, entity, "backfill"]` a backfill's state.
    A tombstone removes its key.

    "Its end" is where every committed record of the tenant's keys that match `wait_for` has
    been read (topic_end.py): records of those keys written beyond the last stable offset
    (behind another tenant's open transaction, or behind commit markers still on their way)
    are waited for until their transactions end. Other keys' newest records there are not
    waited for (an abandoned backfill transaction of this tenant would hold the read until
    it times out); they are named in `unsettled`, for a caller that must look again once it
    has fenced their writer. A read that waited `settle_s` (default `timeout_s`) without
    progress raises OpenTransactionError.
    """
    consumer = committed_consumer(kafka, watermark_group(tenant))
    found: dict[tuple[str, ...], bytes] = {}
    unsettled: frozenset[tuple[str, ...]] = frozenset()
    mine = f"[{json.dumps(tenant, ensure_ascii=False)},".encode()  # see key_bytes

    def ours(raw: bytes | None) -> tuple[str, ...] | None:
        if raw is None or not raw.startswith(mine):
            return None
        return tuple(str(p) for p in json.loads(raw))

    def needed(raw: bytes | None) -> bool:
        key = ours(raw)
        return key is not None and wait_for(key)

    try:
        try:
            meta = consumer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            from poller.kafka.access import reach

            reach(kafka, 5.0)  # a refused login or certificate: named, exit 5
            raise BrokerUnavailableError(f"cannot list topic {topic}: {exc}") from exc
        tmeta = meta.topics.get(topic)
        missing = tmeta is None or (
            tmeta.error is not None and tmeta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        )
        # Only a reader may take "no topic" as "nothing stored": the run loop creates the topic
        # first, and reading a missing one as empty would restart every entity from the start.
        if missing and missing_ok:
            return Records(found, unsettled)
        if tmeta is not None and tmeta.error is not None:
            _raise_denied(kafka, tmeta.error, topic, tenant)
        if tmeta is None or tmeta.error is not None:
            raise BrokerUnavailableError(
                f"watermark topic {topic} not available: {tmeta and tmeta.error}"
            )
        stable = {p: end_offset(consumer, topic, p, timeout_s) for p in tmeta.partitions}
        targets, tail = needed_ends(
            kafka, topic, stable, watermark_group(tenant), timeout_s, needed
        )
        unsettled = frozenset(k for raw in tail if (k := ours(raw)) is not None)
        ends = {p: end for p, end in targets.items() if end > 0}
        if not ends:
            return Records(found, unsettled)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        pending = dict(ends)
        at = {p: -1 for p in ends}
        # The deadline is for a read that stopped moving (an open transaction holds the last
        # stable offset back), not for a long one: every step forward extends it, so a large
        # fleet's topic is read whole however long that takes.
        settle = timeout_s if settle_s is None else settle_s
        deadline = time.monotonic() + settle
        while pending:
            for msg in consumer.consume(num_messages=_READ_BATCH, timeout=0.5):
                if (err := msg.error()) is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        _raise_denied(kafka, err, topic, tenant)
                        raise BrokerUnavailableError(f"reading {topic}: {err.str()}")
                    continue
                key = ours(msg.key())
                if key is not None:
                    value = msg.value()
                    if value is None:
                        found.pop(key, None)
                    else:
                        found[key] = value
            for tp in consumer.position([TopicPartition(topic, p) for p in list(pending)]):
                if tp.offset > at[tp.partition]:
                    at[tp.partition] = tp.offset
                    deadline = time.monotonic() + settle
                if tp.offset >= 0 and tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
            if pending and time.monotonic() > deadline:
                raise OpenTransactionError(
                    f"reading {topic} to its end made no progress for {settle:.0f}s "
                    f"(partitions {sorted(pending)}); an open transaction holds back a "
                    "watermark of this tenant; retry after transaction.timeout.ms"
                )
    finally:
        consumer.close()
    return Records(found, unsettled)


def _raise_denied(kafka: KafkaConfig, err: KafkaError, topic: str, tenant: str) -> None:
    """A missing ACL of the watermark reader is terminal and named (exit 5), not retried."""
    from poller.kafka.access import denied

    if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise denied(kafka, AclEntry("run", "TOPIC", topic, "LITERAL", "READ"), err.str())
    if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
        group = AclEntry("run", "GROUP", watermark_group(tenant), "LITERAL", "DESCRIBE")
        raise denied(kafka, group, err.str())
