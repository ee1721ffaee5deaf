"""Verify's value check (item 10b): a record digests to its body only when framed the way a
consumer reads it; a record under an older version of the value subject is resolved to today's
schema; any other framing never equals a source row."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from poller.avro.registry import wire_prefix
from poller.verify.keys import digest
from poller.verify.values import ValueCheck

V2: dict[str, Any] = {
    "type": "record",
    "name": "R",
    "fields": [
        {"name": "local_id", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
V1: dict[str, Any] = {"type": "record", "name": "R", "fields": [V2["fields"][0]]}


def body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def test_only_a_framing_a_consumer_reads_digests_to_the_body() -> None:
    today = body(V2, {"local_id": "7", "note": None})
    ours = wire_prefix(20) + today
    check = ValueCheck(wire_prefix(20), fastavro.parse_schema(V2),
                       {wire_prefix(10): fastavro.parse_schema(V1)})  # fmt: skip
    assert check.digest(ours) == digest(ours)
    # An older version of the subject: read with it, resolved to today's schema: equal.
    assert check.digest(wire_prefix(10) + body(V1, {"local_id": "7"})) == digest(ours)
    # An id that does not exist, another subject's id, single-object framing: never equal.
    for framed in (wire_prefix(999) + today, wire_prefix(21) + today, b"\xc3\x01" + today):
        assert check.digest(framed) != digest(ours)
    # An older id whose schema does not decode the body.
    assert check.digest(wire_prefix(10) + b"\x99") != digest(ours)
    assert check.unreadable == 4
