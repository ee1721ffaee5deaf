"""Entity schemas, the hot-path row encoder, and a decoder for Avro single-object messages.

Every Kafka message is Avro single-object encoding: 0xC3 0x01, the schema's 8-byte CRC-64-AVRO
fingerprint (little-endian), then the Avro binary body. The encoder is generated Python code,
specialised per schema at build time: fastavro's schemaless_writer is too slow for the
throughput target once every field is a nullable union.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from poller.avro_types import (
    CONT,
    EPOCH,
    EPOCH_ORDINAL,
    FINAL,
    INT_RANGE,
    LONG_RANGE,
    FieldSpec,
    decimal_encoders,
    field_encoder,
    fixed_offset_micros,
    length_prefixes,
    write_long,
)
from poller.errors import ConfigError, SchemaMismatchError, TerminalError

ENTITIES: tuple[str, ...] = (
    "customers",
    "receipts",
    "receipt_lines",
    "events",
    "products",
    "product_categories",
    "bonus_balances",
    "promo_codes",
)
MAGIC = b"\xc3\x01"
_DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


def default_schemas_dir() -> Path:
    """POLLER_SCHEMAS_DIR if set, else the repository's schemas/ (read at call time)."""
    env = os.environ.get("POLLER_SCHEMAS_DIR")
    return Path(env) if env else _DEFAULT_SCHEMAS_DIR


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
        required=frozenset(f["name"] for f in fields if not _is_nullable(f["type"])),
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


def _is_nullable(t: object) -> bool:
    return isinstance(t, list) and "null" in t


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


# --- the generated encoder ------------------------------------------------------------------

_STRING_TABLE = 1024  # strings shorter than this take their length prefix from a table


def build_encoder(schema: EntitySchema, tz: tzinfo) -> RowEncoder:
    """Return encode(row) -> header + Avro body, for rows in schema field order.

    Naive datetimes are wall-clock time in `tz` (never the process's local zone). The code is
    generated from the schema only: no data and no schema text (names, docs) reaches `exec`.
    """
    if tz.utcoffset(datetime(2000, 1, 1)) is None:
        raise ConfigError([f"time zone {tz!r} has no UTC offset"], source="time zone")
    specs = [_field_spec(f) for f in schema.raw["fields"]]
    slow = [field_encoder(s, tz) for s in specs]
    header = schema.header
    fixed_offset = fixed_offset_micros(tz)

    def encode_slowly(row: Sequence[object]) -> bytes:
        return b"".join((header, *(enc(v) for enc, v in zip(slow, row, strict=True))))

    ns: dict[str, Any] = {
        "_join": b"".join, "_str": str, "_int": int, "_Decimal": Decimal, "_date": date,
        "_datetime": datetime, "_EPOCH": EPOCH, "_C": CONT, "_F": FINAL, "_TZ": tz,
        "_wl": write_long,
        "_H": header, "_slow_row": encode_slowly, "_arity": _arity_error(schema),
    }  # fmt: skip
    n = len(specs)
    values = "".join(f"v{i}, " for i in range(n))
    body: list[str] = []
    parts = ["_H"]
    for i, spec in enumerate(specs):
        ns[f"_s{i}"] = slow[i]
        fast, is_string = _fast_path(spec, i, ns, fixed_offset)
        p, d = f"p{i}", f"d{i}"
        two_parts = spec.nullable or is_string
        parts += [p, d] if two_parts else [d]
        body.append(fast[0])
        body += fast[1:]
        if spec.nullable:
            body += [f"elif v{i} is None:", f"    {p} = {spec.null_branch!r}", f'    {d} = b""']
        body.append("else:")
        body += (
            [f"    {p} = _s{i}(v{i})", f'    {d} = b""']
            if two_parts
            else [f"    {d} = _s{i}(v{i})"]
        )
    src = [
        "def encode(row):",
        "    try:",
        f"        {values}= row",
        "    except (TypeError, ValueError):",
        "        raise _arity(row) from None",
        "    try:",
        *(f"        {line}" for line in body),
        "    except UnicodeEncodeError:",  # a lone surrogate; the slow path names the field
        "        return _slow_row(row)",
        f"    return _join(({', '.join(parts)}))",
    ]
    code = compile("\n".join(src), f"<avro encoder {schema.name}>", "exec")
    exec(code, ns)  # source built from the schema's types only, see docstring
    encode: RowEncoder = ns["encode"]
    return encode


def _fast_path(
    spec: FieldSpec, i: int, ns: dict[str, Any], offset: int | None
) -> tuple[list[str], bool]:
    """Source lines for the common Python type of the field; sets p{i} (if any) and d{i}."""
    v, p, d = f"v{i}", f"p{i}", f"d{i}"
    pre = [f"    {p} = {spec.value_branch!r}"] if spec.nullable else []
    if spec.kind == "string":
        table = f"_L{spec.value_branch.hex()}"  # shared by the fields with the same branch
        ns.setdefault(table, length_prefixes(spec.value_branch, _STRING_TABLE))
        ns[f"_B{i}"] = spec.value_branch
        return [
            f"if type({v}) is _str:",
            f"    {d} = {v}.encode()",
            "    try:",
            f"        {p} = {table}[len({d})]",
            "    except IndexError:",
            f"        {p} = _B{i} + _wl(len({d}))",
        ], True
    if spec.kind in ("long", "int"):
        lo, hi = INT_RANGE if spec.kind == "int" else LONG_RANGE
        return [
            f"if type({v}) is _int and {lo} <= {v} <= {hi}:",
            *pre,
            f"    {d} = _wl({v})",
        ], False
    if spec.kind == "boolean":
        return [
            f"if {v} is True or {v} is False:",
            *pre,
            f"    {d} = b'\\x01' if {v} else b'\\x00'",
        ], False
    if spec.kind == "decimal":
        ns[f"_dec{i}"] = decimal_encoders(spec.name, spec.precision, spec.scale)[0]
        return [f"if type({v}) is _Decimal:", *pre, f"    {d} = _dec{i}({v}, {v})"], False
    if spec.kind == "date":
        return [
            f"if type({v}) is _date:",
            *pre,
            f"    {d} = _wl({v}.toordinal() - {EPOCH_ORDINAL})",
        ], False
    # timestamp: naive datetimes are the common case; everything else takes the slow path
    # Exact integer micros from the timedelta's parts; the varint of a zig-zagged value in
    # [2**42, 2**56) (1970-01-26 .. year 3111) is inlined as four table lookups.
    delta = f"{v} - _EPOCH" + (" - _TZ.utcoffset(" + v + ")" if offset is None else "")
    shift = f" - {offset}" if offset else ""
    return [
        f"if type({v}) is _datetime and {v}.tzinfo is None:",
        *pre,
        f"    t = {delta}",
        f"    n = ((t.days * 86400 + t.seconds) * 1000000 + t.microseconds{shift}) << 1",
        "    if 0x40000000000 <= n < 0x100000000000000:",
        f"        {d} = _C[n & 16383] + _C[(n >> 14) & 16383] + _C[(n >> 28) & 16383]"
        " + _F[n >> 42]",
        "    else:",
        f"        {d} = _wl(n >> 1)",
    ], False


def _arity_error(schema: EntitySchema) -> Callable[[object], SchemaMismatchError]:
    def make(row: object) -> SchemaMismatchError:
        got = len(row) if isinstance(row, Sequence) else type(row).__name__
        return SchemaMismatchError(
            f"entity {schema.name!r}: a row must be a sequence of {len(schema.field_names)} "
            f"values in schema order, got {got}"
        )

    return make


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
