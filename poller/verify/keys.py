"""What verify needs to know about the message format, in one place: which tenant and source
key a topic message key names, and where the Avro body of a value starts.

Keys: compact JSON `["<tenant>",<key>...]` (single_object format) or the Confluent framing of
an Avro key record `{tenant, <key columns>}`; either way the stream's own `message_key` makes
the bytes a source row must have. Values: Avro single-object encoding (C3 01 + 8-byte
fingerprint) or the Confluent wire format (00 + 4-byte schema id); digests are taken of the
body after the header, so a row compares equal whichever header its message carries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastavro

from poller.avro.keys import source_value
from poller.errors import BadValueError
from poller.pipeline.stream import EntityStream

SINGLE_OBJECT = b"\xc3\x01"
DIGEST_SIZE = 16


class KeyReader:
    """read(raw key) -> (tenant, key, canonical) with the key as the source has it (a tuple in
    key column order for a composite key, each value of its column's type), or None for a key
    the poller does not write. `canonical`: the raw key is exactly the bytes the stream writes
    for that key today (same framing, same key schema); a key of the tenant that is not (an
    older key format, a wrong schema id) is reported and repaired, never matched."""

    def __init__(self, stream: EntityStream) -> None:
        self.stream = stream
        columns = stream.cfg.key_columns
        self.n_key = len(columns)
        self.json_prefix = stream.key_prefix.encode()  # `["<tenant>",`
        self._avro: Any = None
        self._names: list[str] = []
        self._key_prefix = b""
        kinds = list(stream.key_kinds) or ["unknown"] * self.n_key
        # Older key schemas of the key subject, by framing: their keys are read (and reported,
        # never matched) instead of being taken for another tenant's.
        self._older: dict[bytes, Any] = {}
        if stream.wire is not None:
            schema = stream.wire.key_schema
            self._avro = fastavro.parse_schema(schema)
            self._key_prefix = stream.wire.key.prefix
            self._older = {
                bytes((0,)) + i.to_bytes(4, "big"): fastavro.parse_schema(raw)
                for i, raw in stream.wire.key_history.items()
                if i != stream.wire.key.schema_id
            }
            by_column = {f.column: f for f in stream.wire.key_fields}
            self._names = (
                [by_column[c].field for c in columns]
                if by_column
                else [f["name"] for f in schema["fields"][1:]]
            )
            if by_column:
                kinds = [by_column[c].kind for c in columns]
        self._kinds = kinds

    def read(self, raw: bytes) -> tuple[str, object, bool] | None:
        found = self._read_avro(raw) if self._avro is not None else self._read_json(raw)
        if found is None:
            return None
        tenant, values = found
        typed = tuple(source_value(k, v) for k, v in zip(self._kinds, values, strict=True))
        key = typed[0] if self.n_key == 1 else typed
        if tenant != self.stream.tenant:
            return tenant, key, False
        try:
            canonical = self.stream.message_key(key) == raw
        except BadValueError:
            canonical = False
        return tenant, key, canonical

    def _read_json(self, raw: bytes) -> tuple[str, list[object]] | None:
        try:
            decoded = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if (
            not isinstance(decoded, list)
            or len(decoded) != 1 + self.n_key
            or not isinstance(decoded[0], str)
            or any(v is None or isinstance(v, bool | float | list | dict) for v in decoded[1:])
        ):
            return None
        return decoded[0], decoded[1:]

    def _read_avro(self, raw: bytes) -> tuple[str, list[object]] | None:
        if raw[:1] != b"\x00" or len(raw) < 6:
            return None
        older = self._older.get(raw[:5]) if raw[:5] != self._key_prefix else None
        try:
            rec = fastavro.schemaless_reader(io.BytesIO(raw[5:]), older or self._avro, None)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError):
            return None
        if not isinstance(rec, dict) or not isinstance(rec.get("tenant"), str):
            return None
        if older is not None:  # an older key record: the key columns after the tenant
            values = [v for n, v in rec.items() if n != "tenant"]
            return (rec["tenant"], values) if len(values) == self.n_key else None
        return rec["tenant"], [rec.get(n) for n in self._names]

    def int_key(self, raw: bytes) -> int | None:
        """The integer key of a JSON key of this tenant, without a JSON parse (the common
        case); None when the key is anything else."""
        p = self.json_prefix
        if self._avro is not None or not raw.startswith(p) or not raw.endswith(b"]"):
            return None
        body = raw[len(p) : -1]
        if not body or not (body.isdigit() or (body[:1] == b"-" and body[1:].isdigit())):
            return None
        if (body[:1] == b"0" and body != b"0") or body[:2] == b"-0":
            return None  # not the way the poller writes an integer: take the checked path
        return int(body)


# --- typed key text: the spill's form of a key, read back with its type -----------------------

_TAGS: tuple[tuple[str, type], ...] = (
    ("b", bool),  # before int: a bool is an int
    ("i", int),
    ("s", str),
    ("x", bytes),
    ("d", Decimal),
    ("t", dt.datetime),  # before date: a datetime is a date
    ("D", dt.date),
    ("T", dt.time),
    ("u", uuid.UUID),
)


def _tagged(v: object) -> list[object]:
    if isinstance(v, bytearray | memoryview):
        v = bytes(v)
    for tag, t in _TAGS:
        if isinstance(v, t):
            if tag == "x":
                return [tag, v.hex()]  # type: ignore[attr-defined]
            if tag in ("b", "i", "s"):
                return [tag, v]
            if tag in ("t", "D", "T"):
                return [tag, v.isoformat()]  # type: ignore[attr-defined]
            return [tag, str(v)]
    raise TypeError(f"a key value of type {type(v).__name__} cannot be spilled")


_FROM_TEXT: dict[str, Callable[[str], object]] = {
    "x": bytes.fromhex,
    "d": Decimal,
    "t": dt.datetime.fromisoformat,
    "D": dt.date.fromisoformat,
    "T": dt.time.fromisoformat,
    "u": uuid.UUID,
}


def _untagged(item: list[Any]) -> object:
    tag, v = item
    parse = _FROM_TEXT.get(tag)
    return v if parse is None else parse(v)


def key_text(key: object) -> str:
    """A key as JSON text for the spill, each value tagged with its type (bytes stay bytes,
    a Decimal a Decimal): `key_of_text` gives back an equal key of the same types."""
    if isinstance(key, tuple):
        return json.dumps([_tagged(v) for v in key], ensure_ascii=False)
    return json.dumps(_tagged(key), ensure_ascii=False)


def key_of_text(text: str) -> object:
    value = json.loads(text)
    if value and isinstance(value[0], list):
        return tuple(_untagged(v) for v in value)
    return _untagged(value)


def avro_body(payload: bytes) -> bytes:
    """The Avro binary body of a value, without its format header."""
    if payload[:2] == SINGLE_OBJECT:
        return payload[10:]
    if payload[:1] == b"\x00" and len(payload) >= 5:
        return payload[5:]
    return payload


def digest(payload: bytes) -> bytes:
    """A fixed-size digest of a value's Avro body: equal rows, equal digests."""
    return hashlib.blake2b(avro_body(payload), digest_size=DIGEST_SIZE).digest()
