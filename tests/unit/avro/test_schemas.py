"""The shipped .avsc files: conventions, types, fingerprints, docs/messages.md Entities in sync."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form

from poller.avro.schemas import (
    ENTITIES,
    MAGIC,
    SCHEMAS_DIR,
    entity_problems,
    load_all,
    load_schema,
    schema_fingerprint,
)
from poller.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
MONEY = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}
QTY = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 3}
TS = {"type": "long", "logicalType": "timestamp-micros"}
DATE = {"type": "int", "logicalType": "date"}


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    return data


def value_type(t: Any) -> Any:
    """The non-null branch of a ["null", T] union, else t."""
    return t[1] if isinstance(t, list) else t


def walk(node: Any) -> list[Any]:
    out = [node]
    if isinstance(node, dict):
        for v in node.values():
            out += walk(v)
    elif isinstance(node, list):
        for v in node:
            out += walk(v)
    return out


def test_schema_files_are_exactly_the_entities_and_the_watermark() -> None:
    assert SCHEMAS_DIR == ROOT / "schemas"
    names = sorted(p.stem for p in SCHEMAS_DIR.glob("*.avsc"))
    assert names == sorted([*ENTITIES, "watermark"])
    assert ENTITIES == (
        "customers", "receipts", "receipt_lines", "events",
        "products", "product_categories", "bonus_balances", "promo_codes",
    )  # fmt: skip


@pytest.mark.parametrize("name", [*ENTITIES, "watermark"])
def test_every_schema_parses_with_fastavro(name: str) -> None:
    schema = raw(name)
    assert schema["type"] == "record"
    assert schema["namespace"] == "retail.loyalty"
    fastavro.parse_schema(schema, named_schemas={})
    assert load_schema(name).field_names == tuple(f["name"] for f in schema["fields"])


@pytest.mark.parametrize("name", ENTITIES)
def test_entity_conventions(name: str) -> None:
    fields = raw(name)["fields"]
    assert fields[0] == {**fields[0], "name": "local_id", "type": "string"}
    assert fields[-1]["name"] == "updated_at"
    assert fields[-1]["type"] == ["null", TS]
    assert not [p for p in entity_problems(load_schema(name))]
    for f in fields:
        assert f.get("doc"), f"{name}.{f['name']} has no doc"
        t = f["type"]
        if isinstance(t, list):  # nullable: exactly ["null", T] with a null default
            assert len(t) == 2 and t[0] == "null" and t[1] != "null", f["name"]
            assert "default" in f and f["default"] is None, f["name"]
        else:
            assert "default" not in f, f["name"]
        vt = value_type(t)
        if f["name"].endswith("_id"):
            assert vt == "string", f"{name}.{f['name']}: references are strings"
        if isinstance(vt, dict) and vt.get("type") == "long":
            assert vt == TS, f["name"]
        if isinstance(vt, dict) and vt.get("type") == "int":
            assert vt == DATE, f["name"]
        if isinstance(vt, dict) and vt.get("logicalType") == "decimal":
            assert vt["type"] == "bytes" and vt["precision"] <= 18, f["name"]


@pytest.mark.parametrize("name", ENTITIES)
def test_no_float_or_double_anywhere(name: str) -> None:
    nodes = walk(raw(name))
    assert "float" not in nodes and "double" not in nodes
    assert not [n for n in nodes if isinstance(n, dict) and n.get("type") in ("float", "double")]


def test_customers_fields_follow_the_original_query() -> None:
    schema = raw("customers")
    assert [f["name"] for f in schema["fields"]] == [
        "local_id", "full_name", "first_name", "middle_name", "last_name", "email", "phone",
        "sex", "birth_date", "country", "area", "city", "zip", "register_date", "updated_at",
    ]  # fmt: skip
    types = {f["name"]: value_type(f["type"]) for f in schema["fields"]}
    assert types["birth_date"] == DATE
    assert types["register_date"] == TS
    assert types["zip"] == "string"  # leading zeros matter


def test_money_and_quantities_are_exact_decimals() -> None:
    def types(name: str) -> dict[str, Any]:
        return {f["name"]: value_type(f["type"]) for f in raw(name)["fields"]}

    receipts, lines, products = types("receipts"), types("receipt_lines"), types("products")
    for f in ("total_amount", "discount_amount", "bonus_accrued", "bonus_redeemed"):
        assert receipts[f] == MONEY, f
    assert receipts["purchased_at"] == TS
    assert lines["quantity"] == QTY
    for f in ("price", "amount", "discount_amount"):
        assert lines[f] == MONEY, f
    assert products["price"] == MONEY
    assert products["is_active"] == "boolean"
    assert types("bonus_balances")["balance"] == MONEY
    assert types("promo_codes")["is_used"] == "boolean"
    assert types("product_categories")["parent_id"] == "string"


def test_required_fields() -> None:
    schemas = load_all()
    assert schemas["customers"].required == {"local_id"}
    assert schemas["receipts"].required == {"local_id", "purchased_at", "total_amount"}
    assert schemas["receipt_lines"].required == {"local_id", "receipt_id", "quantity", "amount"}
    for es in schemas.values():
        assert "local_id" in es.required and "updated_at" not in es.required


def test_watermark_schema() -> None:
    es = load_schema("watermark")
    assert es.field_names[:7] == (
        "tenant", "entity", "mode", "cursor", "key", "rows_total", "updated_at"
    )  # fmt: skip
    # Fields added later are nullable with default null (FULL_TRANSITIVE evolution).
    for f in es.raw["fields"][7:]:
        assert f["type"][0] == "null" and f["default"] is None, f["name"]
    assert {"position", "columns"} <= set(es.field_names[7:])
    fields = {f["name"]: f["type"] for f in es.raw["fields"]}
    typed = fields["cursor"][1]
    assert fields["cursor"][0] == "null" and fields["key"] == ["null", "TypedValue"]
    assert typed["name"] == "TypedValue"
    assert typed["fields"][0]["type"]["symbols"] == ["int", "str", "decimal", "datetime", "date"]
    assert fields["rows_total"] == "long"
    assert fields["updated_at"] == TS
    assert es.required == {"tenant", "entity", "mode", "rows_total", "updated_at"}


# --- fingerprints ---------------------------------------------------------------------------

_EMPTY64 = 0xC15D213AA4D7A795


def rabin(data: bytes) -> bytes:
    """CRC-64-AVRO written out from the Avro specification, independent of fastavro."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    fp = _EMPTY64
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp.to_bytes(8, "little")


def signed(fp: bytes) -> int:
    return int.from_bytes(fp, "little", signed=True)


@pytest.mark.parametrize(
    ("schema", "java_long"),
    [  # from the Avro project's share/test/data/schema-tests.txt
        ("int", 8247732601305521295),
        ("string", -8142146995180207161),
        ("null", 7195948357588979594),
        ({"type": "record", "name": "foo", "fields": []}, -4824392279771201922),
    ],
)
def test_fingerprint_known_vectors(schema: Any, java_long: int) -> None:
    assert signed(schema_fingerprint(schema)) == java_long
    assert signed(rabin(to_parsing_canonical_form(schema).encode())) == java_long


def test_fingerprint_of_int_in_single_object_byte_order() -> None:
    assert schema_fingerprint("int") == bytes.fromhex("8f5c393f1ad57572")


@pytest.mark.parametrize("name", [*ENTITIES, "watermark"])
def test_entity_fingerprint_and_header(name: str) -> None:
    es = load_schema(name)
    canonical = to_parsing_canonical_form(es.raw)
    assert '"doc"' not in canonical and canonical.startswith('{"name":"retail.loyalty.')
    assert es.fingerprint == rabin(canonical.encode())
    assert es.header == MAGIC + es.fingerprint and len(es.header) == 10
    assert es.fingerprint_hex == es.fingerprint.hex()


def test_fingerprints_are_distinct() -> None:
    assert len({es.fingerprint for es in load_all().values()}) == len(ENTITIES)


# --- loading from elsewhere -----------------------------------------------------------------


def copy_schemas(dst: Path) -> None:
    for p in SCHEMAS_DIR.glob("*.avsc"):
        (dst / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")


def test_env_overrides_the_schemas_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_schemas(tmp_path)
    schema = raw("customers")
    schema["fields"].insert(1, {"name": "extra", "type": ["null", "string"], "default": None})
    (tmp_path / "customers.avsc").write_text(json.dumps(schema), encoding="utf-8")
    monkeypatch.setenv("POLLER_SCHEMAS_DIR", str(tmp_path))
    assert load_schema("customers").field_names[1] == "extra"
    assert load_all()["customers"].fingerprint != load_schema("customers", SCHEMAS_DIR).fingerprint


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: f.pop(0), "first field must be local_id"),
        (lambda f: f.pop(), "last field must be updated_at"),
        (lambda f: f.insert(1, {"name": "x", "type": "double"}), "'x': type \"double\""),
        (lambda f: f.insert(1, {"name": "y", "type": ["null", "int", "string"]}), "'y'"),
    ],
)
def test_load_all_rejects_a_broken_entity_schema(tmp_path: Path, change: Any, problem: str) -> None:
    copy_schemas(tmp_path)
    schema = raw("events")
    change(schema["fields"])
    (tmp_path / "events.avsc").write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_all(tmp_path)


def test_load_schema_reports_a_missing_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"customers\.avsc"):
        load_schema("customers", tmp_path)
    (tmp_path / "bad.avsc").write_text('{"type": "record", "name": "x", "fields": [{"name"}]}')
    with pytest.raises(ConfigError, match=r"bad\.avsc"):
        load_schema("bad", tmp_path)


# --- README: Entities -------------------------------------------------------------------------


def test_entities_doc_lists_every_field_in_schema_order() -> None:
    page = (ROOT / "docs" / "messages.md").read_text(encoding="utf-8")
    doc = page.split("\n## Entities\n", 1)[1].split("\n## ", 1)[0]
    sections = re.split(r"^### ", doc, flags=re.M)[1:]
    tables = {s.split()[0].strip("`"): s for s in sections}
    assert list(tables)[: len(ENTITIES)] == list(ENTITIES)
    for name in ENTITIES:
        rows = re.findall(r"^\| `(\w+)` \| (.+?) \| (yes|no) \|", tables[name], flags=re.M)
        es = load_schema(name)
        assert [r[0] for r in rows] == list(es.field_names), name
        assert {r[0] for r in rows if r[2] == "no"} == es.required, name
