"""Entity schemas: loading, fingerprints, and the field types the encoder supports.

A message is Avro single-object encoding: 0xC3 0x01, the schema's 8-byte CRC-64-AVRO
fingerprint (little-endian), then the Avro binary body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from poller.avro.values import FieldSpec, write_long
from poller.config.catalog import ENTITIES, default_schemas_dir, is_nullable
from poller.errors import ConfigError, SchemaMismatchError, TerminalError

MAGIC = b"\xc3\x01"
SCHEMAS_DIR = default_schemas_dir()

RowEncoder = Callable[[Sequence[object]], bytes]


class PayloadError(TerminalError):
    """A message is not single-object Avro of a known schema (used by decoding only)."""


@dataclass(frozen=True)
class EntitySchema:
    name: str
    schema: dict[str, Any] = field(compare=False, repr=False)  # fastavro-parsed
    raw: dict[str, Any] = field(compare=False, repr=False)  # the .avsc JSON as loaded
    field_names: tuple[str, ...]
    required: frozenset[str]
    fingerprint: bytes  # CRC-64-AVRO of the Parsing Canonical Form, little-endian

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def schema_fingerprint(raw: str | list[Any] | dict[str, Any]) -> bytes:
    """8-byte CRC-64-AVRO ("Rabin") fingerprint of the schema's Parsing Canonical Form."""
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))


def load_schema(name: str, schemas_dir: Path | str | None = None) -> EntitySchema:
    path = Path(schemas_dir if schemas_dir is not None else default_schemas_dir()) / f"{name}.avsc"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise ValueError("the top-level schema must be a record")
        parsed = fastavro.parse_schema(raw, named_schemas={})
        assert isinstance(parsed, dict)  # a record parses to a dict
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as e:
        raise ConfigError([str(e)], source=str(path)) from None
    fields = raw["fields"]
    return EntitySchema(
        name=name,
        schema=parsed,
        raw=raw,
        field_names=tuple(f["name"] for f in fields),
        required=frozenset(f["name"] for f in fields if not is_nullable(f["type"])),
        fingerprint=schema_fingerprint(raw),
    )


def load_all(schemas_dir: Path | str | None = None) -> dict[str, EntitySchema]:
    """The 8 entity schemas, checked for the conventions the poller relies on."""
    out: dict[str, EntitySchema] = {}
    for name in ENTITIES:
        es = load_schema(name, schemas_dir)
        problems = [f"{name}: {p}" for p in entity_problems(es)]
        if problems:
            raise ConfigError(problems, source=f"schema {name}.avsc")
        out[name] = es
    return out


def entity_problems(es: EntitySchema) -> list[str]:
    """Why an entity schema breaks the conventions (local_id first, updated_at last...)."""
    fields = es.raw["fields"]
    problems = []
    if fields[0]["name"] != "local_id" or fields[0]["type"] != "string":
        problems.append("the first field must be local_id of type string (required)")
    last = fields[-1]
    if last["name"] != "updated_at" or _field_spec(last) != FieldSpec(
        "updated_at", "timestamp", True, b"\x00", b"\x02"
    ):
        problems.append('the last field must be updated_at: ["null", timestamp-micros]')
    for f in fields:
        try:
            _field_spec(f)
        except SchemaMismatchError as e:
            problems.append(str(e))
    return problems


def _field_spec(f: Mapping[str, Any]) -> FieldSpec:
    """Classify a field's type; only the types the encoder knows are accepted."""
    t, name = f["type"], f["name"]
    null = branch = b""
    if isinstance(t, list):
        if len(t) != 2 or t.count("null") != 1:
            raise SchemaMismatchError(f'field {name!r}: only ["null", T] unions are supported')
        i = t.index("null")
        null, branch, t = write_long(i), write_long(1 - i), t[1 - i]
    kind, precision, scale = "", 0, 0
    if t in ("string", "long", "int", "boolean"):
        kind = t
    elif isinstance(t, dict):
        logical = (t.get("type"), t.get("logicalType"))
        if logical == ("long", "timestamp-micros"):
            kind = "timestamp"
        elif logical == ("int", "date"):
            kind = "date"
        elif logical == ("bytes", "decimal"):
            kind, precision, scale = "decimal", int(t["precision"]), int(t.get("scale", 0))
    if not kind:
        raise SchemaMismatchError(
            f"field {name!r}: type {json.dumps(t)} is not supported by the encoder (use string, "
            "long, int, boolean, decimal bytes, date or timestamp-micros; money is never float)"
        )
    return FieldSpec(name, kind, bool(null), null, branch, precision, scale)
