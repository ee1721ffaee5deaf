"""What a record's value must be for a consumer to read it, and the digest verify compares.

A stock consumer needs the framing, not only the body: in the Confluent format the magic byte 0
and a schema id registered under the topic's value subject, whose schema decodes the body; in
single-object encoding C3 01 and the entity schema's fingerprint. A record framed the way the
stream writes today digests to its body (equal to the source row's digest when the row is the
same). A record under another registered version of the subject is decoded with that version,
resolved to today's schema and re-encoded, so only a real difference shows. Any other framing
(an id that does not exist, another subject's id, a body that does not decode) gets a digest
that matches no row: verify reports the key as different and `--repair` republishes it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fastavro

from poller.pipeline.stream import EntityStream

DIGEST_SIZE = 16
_UNREADABLE = b"\xff poller: framing a consumer cannot read \xff"


def body_digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=DIGEST_SIZE).digest()


@dataclass
class ValueCheck:
    header: bytes  # the framing the stream writes today
    reader: Any  # today's schema, fastavro-parsed
    # Other schema ids registered under the value subject (Confluent): prefix -> writer schema.
    history: Mapping[bytes, Any] = field(default_factory=dict)
    unreadable: int = 0  # records whose framing no consumer can read

    @classmethod
    def of(cls, stream: EntityStream) -> ValueCheck:
        if stream.wire is None:
            return cls(stream.schema.header, stream.schema.schema)
        current = stream.wire.value.schema_id
        history = {
            bytes((0,)) + i.to_bytes(4, "big"): fastavro.parse_schema(raw)
            for i, raw in stream.wire.value_history.items()
            if i != current
        }
        return cls(stream.wire.value_header, stream.schema.schema, history)

    def digest(self, payload: bytes) -> bytes:
        header = self.header
        if payload[: len(header)] == header:
            return body_digest(payload[len(header) :])
        writer = self.history.get(payload[:5]) if self.history else None
        if writer is not None:
            again = self._resolved(writer, payload[5:])
            if again is not None:
                return body_digest(again)
        self.unreadable += 1
        return body_digest(_UNREADABLE + payload)

    def _resolved(self, writer: Any, body: bytes) -> bytes | None:
        """The body of an older version, read as today's schema and written again."""
        buf = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(buf, writer, self.reader)
            if buf.tell() != len(body):
                return None
            out = io.BytesIO()
            fastavro.schemaless_writer(out, self.reader, record)
        except Exception:
            return None
        return out.getvalue()
