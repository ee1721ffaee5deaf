"""What verify needs to know about the message format, in one place: which tenant and source
key a topic message key names, and where the Avro body of a value starts.

Keys: compact JSON `["<tenant>",<key>...]` (single_object format) or the Confluent framing of
an Avro key record `{tenant, <key columns>}`; either way the stream's own `message_key` makes
the bytes a source row must have. Values: Avro single-object encoding (C3 01 + 8-byte
fingerprint) or the Confluent wire format (00 + 4-byte schema id); digests are taken of the
body after the header, so a row compares equal whichever header its message carries.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import fastavro

from poller.pipeline.stream import EntityStream

SINGLE_OBJECT = b"\xc3\x01"
DIGEST_SIZE = 16


class KeyReader:
    """read(raw key) -> (tenant, key) with the key as the source has it (a tuple for a
    composite key), or None for a key the poller does not write."""

    def __init__(self, stream: EntityStream) -> None:
        self.n_key = len(stream.cfg.key_columns)
        self.json_prefix = stream.key_prefix.encode()  # `["<tenant>",`
        self._avro: Any = None
        self._names: list[str] = []
        if stream.wire is not None:
            schema = stream.wire.key_schema
            self._avro = fastavro.parse_schema(schema)
            self._names = [f["name"] for f in schema["fields"][1:]]

    def read(self, raw: bytes) -> tuple[str, object] | None:
        if self._avro is not None:
            return self._read_avro(raw)
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
        return decoded[0], decoded[1] if self.n_key == 1 else tuple(decoded[1:])

    def _read_avro(self, raw: bytes) -> tuple[str, object] | None:
        if raw[:1] != b"\x00" or len(raw) < 6:
            return None
        try:
            rec = fastavro.schemaless_reader(io.BytesIO(raw[5:]), self._avro, None)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError):
            return None
        if not isinstance(rec, dict) or not isinstance(rec.get("tenant"), str):
            return None
        values = tuple(rec.get(n) for n in self._names)
        return rec["tenant"], values[0] if self.n_key == 1 else values

    def int_key(self, raw: bytes) -> int | None:
        """The integer key of a JSON key of this tenant, without a JSON parse (the common
        case); None when the key is anything else."""
        p = self.json_prefix
        if self._avro is not None or not raw.startswith(p) or not raw.endswith(b"]"):
            return None
        body = raw[len(p) : -1]
        if not body or not (body.isdigit() or (body[:1] == b"-" and body[1:].isdigit())):
            return None
        return int(body)


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
