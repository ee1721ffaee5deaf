"""Decoding single-object messages, and fastavro encoding for low-volume records."""

from __future__ import annotations

import io
from collections.abc import Mapping

import fastavro

from poller.avro.schemas import MAGIC, EntitySchema, PayloadError, load_all

# --- decoding and low-volume records --------------------------------------------------------


class Decoder:
    """Decodes single-object messages of the entity schemas (or of the schemas given)."""

    def __init__(self, schemas: Mapping[str, EntitySchema] | None = None) -> None:
        self._by_fingerprint = {s.fingerprint: s for s in (schemas or load_all()).values()}

    def decode(self, payload: bytes) -> tuple[str, dict[str, object]]:
        if len(payload) < 10 or payload[:2] != MAGIC:
            raise PayloadError(
                f"not Avro single-object encoding (starts {bytes(payload[:2]).hex() or 'empty'},"
                " expected c301)"
            )
        es = self._by_fingerprint.get(bytes(payload[2:10]))
        if es is None:
            known = ", ".join(
                f"{s.name}={s.fingerprint_hex}" for s in self._by_fingerprint.values()
            )
            raise PayloadError(
                f"unknown schema fingerprint {bytes(payload[2:10]).hex()} (known: {known}); "
                "the message was written with another schema version"
            )
        return es.name, _read_body(es, payload[10:])


def _read_body(es: EntitySchema, body: bytes) -> dict[str, object]:
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, es.schema, None)
    except (EOFError, ValueError, IndexError) as e:
        raise PayloadError(f"{es.name}: corrupt Avro body: {e}") from None
    if buf.tell() != len(body):
        raise PayloadError(f"{es.name}: {len(body) - buf.tell()} bytes after the Avro body")
    if not isinstance(record, dict):  # pragma: no cover - every schema here is a record
        raise PayloadError(f"{es.name}: the body is not a record")
    return record


def encode_record(schema: EntitySchema, record: Mapping[str, object]) -> bytes:
    """Single-object encoding via fastavro, for low-volume records such as the watermark."""
    buf = io.BytesIO()
    buf.write(schema.header)
    fastavro.schemaless_writer(buf, schema.schema, record, strict=True, strict_allow_default=True)
    return buf.getvalue()


def decode_record(schema: EntitySchema, payload: bytes) -> dict[str, object]:
    """Inverse of encode_record; the header must carry this schema's fingerprint."""
    if payload[:10] != schema.header:
        raise PayloadError(
            f"expected a {schema.name} message (header {schema.header.hex()}), "
            f"got header {bytes(payload[:10]).hex()}"
        )
    return _read_body(schema, payload[10:])
