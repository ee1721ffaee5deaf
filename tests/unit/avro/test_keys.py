"""The canonical Avro key record: field names and types from the entity schema (never from the
source), identical for every tenant; its encoder checked against fastavro; the way back from a
key to the source's typed value."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from poller.avro.keys import (
    KeyField,
    build_key_encoder,
    key_fields,
    key_schema,
    source_value,
)
from poller.avro.registry import full_name, wire_prefix
from poller.avro.schemas import load_schema
from poller.errors import BadValueError, ConfigError


def read(schema: dict[str, Any], payload: bytes, prefix: bytes) -> Any:
    assert payload.startswith(prefix)
    buf = io.BytesIO(payload[len(prefix) :])
    record = fastavro.schemaless_reader(buf, fastavro.parse_schema(schema), None)
    assert buf.tell() == len(payload) - len(prefix), "bytes left after the record"
    return record


def canonical(entity: str, mapping: dict[str, str], key: list[str], kinds: list[str]) -> str:
    es = load_schema(entity)
    return json.dumps(key_schema(es, key_fields(entity, es, mapping, key, kinds)))


def test_tenants_with_differently_named_and_typed_keys_share_one_key_schema() -> None:
    """Item 7: retailer A keys customers by an integer `id`, retailer B by a text `CustNo`,
    retailer C by a BINARY(16) column its mapping never names: one schema for all three."""
    a = canonical("customers", {"local_id": "id"}, ["id"], ["int"])
    b = canonical("customers", {"local_id": '"CustNo"'}, ["CustNo"], ["string"])
    c = canonical("customers", {"local_id": "HEX(guid)"}, ["guid"], ["binary"])
    assert a == b == c
    schema = json.loads(a)
    assert full_name(schema) == "retail.loyalty.CustomerKey"
    assert [(f["name"], f["type"]) for f in schema["fields"]] == [
        ("tenant", "string"),
        ("local_id", "string"),
    ]


def test_composite_keys_use_the_schema_fields_in_schema_order() -> None:
    es = load_schema("receipt_lines")
    mapping = {"local_id": "line_no", "receipt_id": "cheque_id", "line_number": "n"}
    one = key_fields("receipt_lines", es, mapping, ["cheque_id", "line_no"], ["int", "string"])
    other = key_fields("receipt_lines", es, mapping, ["line_no", "cheque_id"], ["string", "int"])
    assert key_schema(es, one) == key_schema(es, other)
    assert [(k.field, k.column, k.type) for k in one] == [
        ("local_id", "line_no", "string"),
        ("receipt_id", "cheque_id", "string"),
    ]
    # A key column mapped to an int field keeps the field's (non-null) type.
    numbered = key_fields("receipt_lines", es, mapping, ["cheque_id", "n"], ["int", "int"])
    assert [(k.field, k.type) for k in numbered] == [
        ("receipt_id", "string"),
        ("line_number", "int"),
    ]
    encode = build_key_encoder(wire_prefix(3), "t", one, ["cheque_id", "line_no"])
    got = read(key_schema(es, one), encode((12, "a")), wire_prefix(3))
    assert got == {"tenant": "t", "local_id": "a", "receipt_id": "12"}


def test_unmapped_or_unfit_key_columns_are_config_errors() -> None:
    es = load_schema("receipt_lines")
    with pytest.raises(ConfigError, match="'x' is not mapped"):
        key_fields("receipt_lines", es, {"local_id": "id"}, ["id", "x"])
    with pytest.raises(ConfigError, match="string, long or int"):
        key_fields("receipt_lines", es, {"quantity": "q"}, ["q", "id"], None)


@pytest.mark.parametrize(
    "key", [0, 1, -1, 63, 64, 8191, 8192, 2**31, 2**42, 2**56 + 3, 2**63 - 1, -(2**63)]
)
def test_long_key_matches_fastavro(key: int) -> None:
    fields = [KeyField("n", "n", "long")]
    schema = {"type": "record", "name": "K", "fields": [
        {"name": "tenant", "type": "string"}, {"name": "n", "type": "long"}]}  # fmt: skip
    encode = build_key_encoder(wire_prefix(7), "acme-corp", fields, ["n"])
    assert read(schema, encode(key), wire_prefix(7)) == {"tenant": "acme-corp", "n": key}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (42, "42"),
        (-(2**70), str(-(2**70))),
        ("é" * 5000, "é" * 5000),  # past the inline path's 8 KiB
        (Decimal(42), "42"),
        ("Ä-1", "Ä-1"),
        (b"\x00\x11\x22\x33", "00112233"),
        (memoryview(b"\xff"), "ff"),
        (bytearray(b"\x01"), "01"),
        (uuid.UUID(int=5), str(uuid.UUID(int=5))),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6), "2024-01-02T03:04:05.000006"),
    ],
)
def test_string_keys_are_one_text_per_value_never_a_repr(value: object, text: str) -> None:
    """Item 8: a BINARY(16) key is its hex, not Python's b'...'."""
    es = load_schema("customers")
    fields = key_fields("customers", es, {"local_id": "id"}, ["id"])
    encode = build_key_encoder(b"", "t", fields, ["id"])
    assert read(key_schema(es, fields), encode(value), b"")["local_id"] == text


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int", 42),
        ("binary", b'\x00\x11"3D\xff'),
        ("decimal0", Decimal(42)),
        ("datetime", dt.datetime(2024, 1, 2, 3, 4, 5, 6)),
        ("date", dt.date(2024, 1, 2)),
        ("string", "007"),
        ("unknown", "x"),
    ],
)
def test_a_key_read_back_has_the_source_type(kind: str, value: object) -> None:
    es = load_schema("customers")
    fields = key_fields("customers", es, {"local_id": "id"}, ["id"], [kind])
    encode = build_key_encoder(b"", "t", fields, ["id"])
    text = read(key_schema(es, fields), encode(value), b"")["local_id"]
    back = source_value(kind, text)
    assert back == value and type(back) is type(value)
    assert encode(back) == encode(value)


def test_keys_are_deterministic_and_distinct_per_tenant() -> None:
    fields = [KeyField("id", "local_id", "string", "int")]
    a = build_key_encoder(wire_prefix(1), "a", fields, ["id"])
    b = build_key_encoder(wire_prefix(1), "b", fields, ["id"])
    assert a(5) == a(5) and a(5) != b(5) and a(5) != a(6)


@pytest.mark.parametrize(
    ("t", "value"), [("long", None), ("long", "12"), ("long", 1.5), ("long", True),
                     ("long", 2**63), ("int", 2**31), ("string", None), ("string", True),
                     ("string", 1.5)],
)  # fmt: skip
def test_a_key_that_does_not_fit_is_a_bad_value_naming_the_column(t: str, value: object) -> None:
    encode = build_key_encoder(b"", "t", [KeyField("the_key", "f", t)], ["the_key"])  # type: ignore[arg-type]
    with pytest.raises(BadValueError, match="the_key"):
        encode(value)
