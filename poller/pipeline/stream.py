"""One entity of one tenant: where its stream stands, and how one batch of its rows becomes
Kafka messages plus a watermark, inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
import json
import logging
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from confluent_kafka import KafkaException

from poller.avro.encoder import build_encoder
from poller.avro.keys import int_text_head
from poller.avro.schemas import EntitySchema
from poller.avro.values import FINAL
from poller.batch import Batch, Position
from poller.config import AppConfig, EntityConfig, Mode
from poller.errors import BadRowError, BadValueError
from poller.kafka.publisher import TransactionalPublisher, classify
from poller.kafka.watermark import Watermark, check_forward, encode, key_bytes
from poller.pipeline.sizes import NO_LIMIT, check_size, fit_dead_letter
from poller.pipeline.wire import EntityWire
from poller.source.deletes import deleted_matcher
from poller.source.query import RowLayout

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def epoch_ms(value: object, tz: dt.tzinfo) -> int:
    """Kafka message time of a cursor value; 0 lets the producer stamp it."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return 0
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=tz)
        return (aware - _EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(value, dt.date):
        return epoch_ms(dt.datetime(value.year, value.month, value.day), tz)
    return 0


def cursor_number(value: object, tz: dt.tzinfo) -> float | None:
    """The watermark as a number for the gauge: an id, or Unix seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    ms = epoch_ms(value, tz)
    return ms / 1000 if ms else None


def _jsonable(v: object) -> object:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, bytes | bytearray | memoryview):  # psycopg2 reads bytea as memoryview
        return bytes(v).hex()
    return str(v)


@dataclass
class EntityStream:
    name: str
    cfg: EntityConfig
    schema: EntitySchema
    topic: str
    tenant: str
    tz: dt.tzinfo
    position: Position
    rows_total: int = 0
    caught_up: bool = False
    next_poll_at: float = 0.0
    wire: EntityWire | None = None  # Confluent framing; None: single-object, JSON keys
    max_value_bytes: int = NO_LIMIT  # larger rows are bad rows (the topic's max.message.bytes)
    compression: str = "none"  # the producer's, to size a row the way the broker sees it
    dead_letter_max_bytes: int = NO_LIMIT
    # The key columns' database kinds, in key order, when known (verify, reconcile): how a key
    # read back from a topic becomes the source's typed value (poller.avro.keys.source_value).
    key_kinds: tuple[str, ...] = ()
    message_headers: bool = True  # kafka.message_headers
    encoder: Callable[[Sequence[object]], bytes] = field(init=False)
    n_fields: int = field(init=False)
    is_deleted: Callable[[object], bool] | None = field(init=False)  # soft deletes configured

    def __post_init__(self) -> None:
        header = None if self.wire is None else self.wire.value_header
        self.encoder = build_encoder(self.schema, self.tz, header)
        self.is_deleted = deleted_matcher(self.cfg.deletes) if self.cfg.deletes else None
        self.n_fields = len(self.schema.field_names)
        self.headers: list[tuple[str, str | bytes | None]] | None = [
            ("tenant", self.tenant.encode()),
            ("entity", self.name.encode()),
            ("schema", self.schema.fingerprint_hex.encode()),
        ]
        if not self.message_headers:
            self.headers = None
        self.key_prefix = "[" + json.dumps(self.tenant, ensure_ascii=False) + ","
        # Confluent keys of integers in a string key field are rendered inline in the batch
        # loop, like the JSON keys (a call per row less; the bytes of wire.encode_key).
        self.int_key_head = (
            None
            if self.wire is None
            else int_text_head(self.wire.key.prefix, self.tenant, self.wire.key_fields)
        )
        self.layout = RowLayout(
            self.n_fields,
            len(self.cfg.tiebreak_columns),
            0 if self.cfg.key_is_tiebreak else len(self.cfg.key_columns),
            self.cfg.deletes is not None,
        )

    def message_key(self, key: object) -> bytes:
        """The key of the entity topic's message: the Avro key record (Confluent format), else
        `json_key`. Either is deterministic, as compaction needs."""
        if self.wire is not None:
            return self.wire.encode_key(key)
        return self.json_key(key)

    def json_key(self, key: object) -> bytes:
        """`["<tenant>",<key>]` as compact JSON: unambiguous, stable for compaction."""
        if type(key) is int:
            return f"{self.key_prefix}{key}]".encode()
        parts = key if isinstance(key, tuple) else (key,)  # a composite key: one item per column
        body = ",".join(json.dumps(_jsonable(p), ensure_ascii=False) for p in parts)
        return (self.key_prefix + body + "]").encode()

    def watermark(self, position: Position, rows_total: int) -> Watermark:
        return Watermark(
            self.tenant,
            self.name,
            self.cfg.batching.mode.value,
            position,
            rows_total,
            dt.datetime.now(dt.UTC),
            columns=[self.cfg.batching.column, *self.cfg.tiebreak_columns],
        )


@dataclass(frozen=True)
class BatchOutcome:
    """What went into the open transaction: the caller commits, then applies it."""

    published: int
    dead_lettered: int
    position: Position
    error: BadRowError | None = None


def publish_batch(
    stream: EntityStream,
    batch: Batch,
    publisher: TransactionalPublisher,
    watermark_topic: str,
    dead_letter_topic: str,
) -> BatchOutcome:
    """Send the batch's rows and its watermark into the open transaction.

    On a bad row under policy `fail`, only the rows before it and a watermark just before it
    are sent, and the outcome carries the error: the watermark never passes that row.
    """
    assert batch.last is not None
    check_forward(stream.position, batch.last, f"{stream.tenant}/{stream.name}")
    if batch.encoded is not None:
        return _publish_encoded(stream, batch, publisher, watermark_topic)
    # The loop below is the poller's hot path (~1M rows/s of Python work at best): everything
    # it touches is a local, the message key of an integer is formatted inline, and produce()
    # is called directly; the publisher's send() only handles a full local queue.
    n = stream.n_fields
    encode_row = stream.encoder
    produce, send = publisher.produce_fast, publisher.send
    # JSON keys of integers are formatted inline; Avro keys come from the generated encoder.
    json_keys = stream.wire is None
    key_of = stream.json_key if stream.wire is None else stream.wire.encode_key
    prefix, int_head = stream.key_prefix, stream.int_key_head
    topic, headers, tz = stream.topic, stream.headers, stream.tz
    time_mode = stream.cfg.batching.mode is not Mode.ID
    layout = stream.layout
    key_at = layout.key_at
    composite = layout.n_key > 1
    # The soft-delete column follows the key; such a row becomes a tombstone (null value).
    deleted_at = layout.deleted_at if stream.is_deleted is not None else None
    is_deleted = stream.is_deleted or bool
    dead = 0
    rows = batch.rows
    max_value = stream.max_value_bytes
    value: bytes | None
    for i, row in enumerate(rows):
        if deleted_at is not None and is_deleted(row[deleted_at]):
            value = None
        else:
            try:
                value = encode_row(row[:n])
                if len(value) > max_value:
                    check_size(value, topic, max_value, stream.compression)
            except BadValueError as exc:
                key = layout.message_key(row)
                if stream.cfg.on_bad_row == "fail":
                    prev = stream.position if i == 0 else layout.position(rows[i - 1])
                    if i:
                        _send_watermark(stream, prev, i, publisher, watermark_topic)
                    error = BadRowError(stream.tenant, stream.name, key, exc)
                    return BatchOutcome(i - dead, dead, prev, error)
                dl_key = stream.json_key(key)
                letter = fit_dead_letter(
                    _dead_letter(stream, row, key, exc), stream.dead_letter_max_bytes
                )
                send(dead_letter_topic, dl_key, letter, headers)
                dead += 1
                continue
        k = layout.message_key(row) if composite else row[key_at]
        if type(k) is not int:
            kb = key_of(k)
        elif json_keys:
            kb = f"{prefix}{k}]".encode()
        elif int_head is not None:  # < 4300 digits (Python's limit): one varint lookup
            digits = b"%d" % k
            kb = int_head + FINAL[len(digits) << 1] + digits
        else:
            kb = key_of(k)
        ts = epoch_ms(row[n], tz) if time_mode else 0
        try:
            produce(topic, value, kb, headers=headers, timestamp=ts)
        except BufferError:
            send(topic, kb, value, headers, ts)
        except KafkaException as exc:
            raise classify(exc, f"produce to {topic} (key {k!r})") from exc
    publisher.poll()
    published = len(rows) - dead
    _send_watermark(stream, batch.last, published + dead, publisher, watermark_topic)
    return BatchOutcome(published, dead, batch.last)


def _publish_encoded(
    stream: EntityStream, batch: Batch, publisher: TransactionalPublisher, watermark_topic: str
) -> BatchOutcome:
    """The native path's batch: messages already encoded (no bad row: such a batch was read
    through the Python path instead); same produce calls, same watermark."""
    assert batch.encoded is not None and batch.last is not None
    enc = batch.encoded
    produce, send = publisher.produce_fast, publisher.send
    topic, headers = stream.topic, stream.headers
    stamps = enc.stamps if enc.stamps is not None else [0] * len(enc.values)
    for value, kb, ts in zip(enc.values, enc.keys, stamps, strict=True):
        try:
            produce(topic, value, kb, headers=headers, timestamp=ts)
        except BufferError:
            send(topic, kb, value, headers, ts)
        except KafkaException as exc:
            raise classify(exc, f"produce to {topic} (key {kb!r})") from exc
    publisher.poll()
    n = len(enc.values)
    _send_watermark(stream, batch.last, n, publisher, watermark_topic)
    return BatchOutcome(n, 0, batch.last)


def _send_watermark(
    stream: EntityStream,
    position: Position,
    rows: int,
    publisher: TransactionalPublisher,
    topic: str,
) -> None:
    wm = stream.watermark(position, stream.rows_total + rows)
    publisher.send(topic, key_bytes(stream.tenant, stream.name), encode(wm))


def _dead_letter(
    stream: EntityStream, row: Sequence[Any], key: object, exc: BadValueError
) -> bytes:
    fields = stream.schema.field_names
    record = {
        "tenant": stream.tenant,
        "entity": stream.name,
        "key": _jsonable(key),
        "field": exc.field,
        "value_type": exc.value_type,
        "error": exc.reason,
        "row": {f: _jsonable(row[i]) for i, f in enumerate(fields)},
        "cursor": _jsonable(row[len(fields)]),
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }
    return json.dumps(record, ensure_ascii=False).encode()


def make_streams(
    cfg: AppConfig,
    schemas: dict[str, EntitySchema],
    positions: dict[str, Watermark],
    start_positions: dict[str, Position],
    wires: Mapping[str, EntityWire] | None = None,
) -> dict[str, EntityStream]:
    tz = zoneinfo.ZoneInfo(cfg.source.timezone)
    streams = {}
    for name, ent in cfg.enabled_entities().items():
        wm = positions.get(name)
        streams[name] = EntityStream(
            name=name,
            cfg=ent,
            schema=schemas[name],
            topic=cfg.kafka.topic_for(name, cfg.tenant),
            tenant=cfg.tenant,
            tz=tz,
            position=wm.position if wm else start_positions[name],
            rows_total=wm.rows_total if wm else 0,
            wire=(wires or {}).get(name),
            message_headers=cfg.kafka.message_headers,
        )
    return streams
