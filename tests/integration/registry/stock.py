"""What a downstream user runs: confluent-kafka's stock Consumer, SchemaRegistryClient and
AvroDeserializer, with no poller code at all; and the expected records computed straight from
the source rows with SQLAlchemy and the Avro rules (not with the poller's converters)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from sqlalchemy.pool import NullPool

from tests.integration.topics import read_to_end

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
Decoded = tuple[dict[str, Any], dict[str, Any] | None]  # (key record, value record or None)


def read_with_stock_consumer(
    bootstrap: str, registry_url: str, topics: Iterable[str], timeout_s: float = 30.0
) -> dict[str, list[Decoded]]:
    """Every committed message of the topics, key and value decoded by AvroDeserializer."""
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    return {
        topic: [
            (
                deserialize(msg.key(), SerializationContext(topic, MessageField.KEY)),
                deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE)),
            )
            for msg in messages
        ]
        for topic, messages in read_to_end(bootstrap, topics, timeout_s, group="stock").items()
    }


def avro_fields(entity: str) -> dict[str, tuple[str, bool]]:
    """field -> (kind, nullable) read from the .avsc itself."""
    raw = json.loads((SCHEMAS / f"{entity}.avsc").read_text(encoding="utf-8"))
    out = {}
    for f in raw["fields"]:
        t = f["type"]
        nullable = isinstance(t, list)
        if nullable:
            t = next(x for x in t if x != "null")
        kind = t.get("logicalType") or t["type"] if isinstance(t, dict) else t
        out[f["name"]] = (kind, nullable)
    return out


def as_avro(kind: str, v: object) -> object:
    """A source value as AvroDeserializer returns it (the source's naive times are UTC)."""
    if v is None:
        return None
    if kind == "string":
        return v if isinstance(v, str) else str(v)
    if kind in ("long", "int"):
        assert not isinstance(v, float), v
        return int(v)  # type: ignore[call-overload]
    if kind == "boolean":
        return bool(v)
    if kind == "decimal":
        return Decimal(str(v))
    if kind == "date":
        return v.date() if isinstance(v, dt.datetime) else v
    if kind == "timestamp-micros":
        if isinstance(v, dt.datetime):
            return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)
        assert isinstance(v, dt.date), v
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)
    raise AssertionError(f"unexpected Avro kind {kind}")


def expected_records(
    url: str, entity: str, ent: Mapping[str, Any], tenant: str
) -> dict[object, dict[str, object]]:
    """key -> the record the topic must hold, from the mapping's columns and expressions."""
    fields = avro_fields(entity)
    cols = [sa.literal_column(expr).label(f) for f, expr in ent["fields"].items()]
    table = sa.table(ent["table"], sa.column(ent["key"]), sa.column("user_id"))
    stmt = sa.select(table.c[ent["key"]].label("_key"), *cols).select_from(table)
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt.where(table.c.user_id == tenant)).mappings().all()
    finally:
        engine.dispose()
    out = {}
    for row in rows:
        record = {f: None for f in fields}  # unmapped fields are null
        for f in ent["fields"]:
            record[f] = as_avro(fields[f][0], row[f])
        out[row["_key"]] = record
    return out
