"""The message key of an entity: one canonical Avro key record per entity, and the way back from
a key to the source's own typed value.

Every tenant of a shared topic registers the same key schema under `<topic>-key`: the record
`<Entity>Key {tenant, <canonical fields>}` whose fields are the entity schema's fields the key
columns map to (`fields: {local_id: id}` makes the key field `local_id`), in the schema's order,
with the schema's type (its non-null branch). The source's column names and database types
never reach the key schema, so retailers whose key columns are named or typed differently share
a subject (docs/keys.md).

A value becomes its key field's type exactly and deterministically (compaction needs one key per
row): integers stay integers in `long`/`int` fields; in a `string` field an integer is its
decimal digits, bytes are lowercase hex, a date/time its ISO text, a UUID its canonical text.
`source_value` is the way back, with the column's database kind, so a key read from a topic binds
to SQL as the type the source compares (item: a BINARY(16) key stays bytes).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from poller.avro.schemas import EntitySchema
from poller.avro.values import CONT, FINAL, INT_RANGE, LONG_RANGE, write_long
from poller.errors import BadValueError, ConfigError

KeyType = Literal["long", "int", "string"]
_KEY_TYPES: tuple[str, ...] = ("long", "int", "string")
_QUOTES = re.compile(r'^[`"\[]?(.*?)[`"\]]?$')
_INTEGER = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class KeyField:
    """One key column and the canonical field it is published as."""

    column: str  # the source key column
    field: str  # the entity schema's field: the key record's field name
    type: KeyType  # the field's Avro type (non-null branch)
    kind: str = "unknown"  # the column's database kind (poller.source.query.column_kind)


def _bare(expr: str) -> str:
    m = _QUOTES.match(expr.strip())
    return (m.group(1) if m else expr).strip().lower()


def _field_type(schema: EntitySchema, name: str) -> object:
    t = next(f["type"] for f in schema.raw["fields"] if f["name"] == name)
    if isinstance(t, list):
        t = next(b for b in t if b != "null")
    return t


def key_fields(
    entity: str,
    schema: EntitySchema,
    mapping: Mapping[str, str],
    key_columns: Sequence[str],
    kinds: Sequence[str] | None = None,
) -> list[KeyField]:
    """The canonical key fields of an entity, in the schema's field order (so two tenants that
    list composite key columns in another order still share one key schema).

    A key column is published as the first schema field mapped to exactly that column; a single
    key column that no field maps to is the entity's `local_id` (the source's own id)."""
    kinds = list(kinds) if kinds is not None else ["unknown"] * len(key_columns)
    order = {name: i for i, name in enumerate(schema.field_names)}
    problems: list[str] = []
    chosen: list[KeyField] = []
    for column, kind in zip(key_columns, kinds, strict=True):
        names = [f for f in schema.field_names if _bare(mapping.get(f, "")) == _bare(column)]
        if not names and len(key_columns) == 1:
            names = ["local_id"]
        if not names:
            problems.append(
                f"entities.{entity}.key: column {column!r} is not mapped to any field of the "
                f"{entity} schema; the message key names canonical fields (docs/keys.md), so "
                f"map it (fields: {{<field>: {column}}})"
            )
            continue
        t = _field_type(schema, names[0])
        if t not in _KEY_TYPES:
            problems.append(
                f"entities.{entity}.key: column {column!r} maps to field {names[0]!r} of type "
                f"{t}; a key field must be a string, long or int field"
            )
            continue
        chosen.append(KeyField(column, names[0], t, kind))  # type: ignore[arg-type]
    taken = [k.field for k in chosen]
    if len(set(taken)) != len(taken):
        problems.append(
            f"entities.{entity}.key: two key columns map to one field ({', '.join(taken)})"
        )
    if problems:
        raise ConfigError(problems)
    return sorted(chosen, key=lambda k: order[k.field])


def key_schema(value: EntitySchema, fields: Sequence[KeyField]) -> dict[str, Any]:
    """The key record of an entity: the tenant, then the canonical key fields. Depends on the
    entity schema and which fields the key is, never on the source."""
    raw = value.raw
    record: dict[str, Any] = {
        "type": "record",
        "name": f"{raw['name']}Key",
        "doc": f"Message key of {_full_name(raw)}: the tenant and the row's key fields.",
        "fields": [{"name": "tenant", "type": "string", "doc": "The tenant the row belongs to."}]
        + [{"name": k.field, "type": k.type, "doc": f"The row's {k.field}."} for k in fields],
    }
    if raw.get("namespace"):
        record["namespace"] = raw["namespace"]
    return record


def _full_name(schema: Mapping[str, Any]) -> str:
    ns, name = schema.get("namespace"), str(schema["name"])
    return name if "." in name or not ns else f"{ns}.{name}"


# --- values -> key fields ---------------------------------------------------------------------


def key_text(column: str, v: object) -> str:
    """The text of a key value in a `string` key field: one text per value, never a repr."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None or isinstance(v, float):
        raise BadValueError(column, v, "a key column of text holds a NULL, boolean or float")
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise BadValueError(column, v, "the key is not a finite number")
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dt.date | dt.time):  # datetime is a date
        return v.isoformat()
    raise BadValueError(column, v, "a key value that has no text form")


def _string(s: str) -> bytes:
    b = s.encode()
    return write_long(len(b)) + b


def _key_part(k: KeyField) -> Callable[[object], bytes]:
    lo, hi = INT_RANGE if k.type == "int" else LONG_RANGE
    column = k.column

    def as_number(v: object) -> bytes:
        if isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value():
            v = int(v)
        if type(v) is bool or not isinstance(v, int) or not lo <= v <= hi:
            raise BadValueError(column, v, f"a key of {k.type} field {k.field} holds {v!r}")
        return write_long(v)

    def as_string(v: object) -> bytes:
        return _string(key_text(column, v))

    return as_string if k.type == "string" else as_number


def key_head(prefix: bytes, tenant: str) -> bytes:
    """The bytes every key of a tenant's entity starts with: the framing, then the tenant."""
    return prefix + _string(tenant)


def int_text_head(prefix: bytes, tenant: str, fields: Sequence[KeyField]) -> bytes | None:
    """For a single `string` key field: the head after which an integer key is its decimal
    digits as an Avro string (`FINAL[len(digits) << 1] + digits`), so the batch loop can render
    it inline as `text_key` does; None for any other key."""
    if len(fields) == 1 and fields[0].type == "string":
        return key_head(prefix, tenant)
    return None


def build_key_encoder(
    prefix: bytes, tenant: str, fields: Sequence[KeyField], key_columns: Sequence[str]
) -> Callable[[Any], bytes]:
    """key(k) -> prefix + Avro key record; k is the key value, or the values of the key
    columns in `key_columns` order for a composite key (the record holds them in canonical
    order). Deterministic: one row's key always gives the same bytes (compaction)."""
    head = key_head(prefix, tenant)
    parts = [_key_part(f) for f in fields]
    if len(parts) > 1:
        at = [list(key_columns).index(f.column) for f in fields]

        def composite(ks: Sequence[object]) -> bytes:
            if len(ks) != len(at):
                raise BadValueError(",".join(key_columns), ks, "a composite key of other size")
            return head + b"".join(p(ks[i]) for p, i in zip(parts, at, strict=True))

        return composite
    part = parts[0]
    if fields[0].type == "long":
        # The hot loop's common case, with write_long's zig-zag varint inlined (one call less
        # per row); other values, and |k| >= 2**41, take the checked path.
        def long_key(k: object) -> bytes:
            if type(k) is int:
                n = k << 1 if k >= 0 else (~k << 1) | 1
                if n < 0x4000:
                    return head + FINAL[n]
                if n < 0x10000000:
                    return head + CONT[n & 0x3FFF] + FINAL[n >> 14]
                if n < 0x40000000000:
                    return head + CONT[n & 0x3FFF] + CONT[(n >> 14) & 0x3FFF] + FINAL[n >> 28]
            return head + part(k)

        return long_key

    if fields[0].type == "string":
        # The common case again: an integer or text key rendered inline (the length varint of
        # a text under 8 KiB is one table lookup); anything else takes the checked path.
        def text_key(k: object) -> bytes:
            if type(k) is int:
                b = b"%d" % k
            elif type(k) is str:
                b = k.encode()
            else:
                return head + part(k)
            n = len(b)
            return head + FINAL[n << 1] + b if n < 0x2000 else head + part(k)

        return text_key

    def key(k: object) -> bytes:
        return head + part(k)

    return key


# --- key fields -> source values --------------------------------------------------------------


def source_value(kind: str, v: object) -> object:
    """A key value as read back from a message key (Avro field or JSON item), as the source
    column holds it: what binds to SQL and equals the row's own key. A value that cannot be
    that kind is returned unchanged (it then matches no row, as it should not)."""
    try:
        if isinstance(v, str):
            if kind == "int" and _INTEGER.match(v):
                return int(v)
            if kind in ("decimal0", "decimal?", "decimal"):
                return Decimal(v)
            if kind == "binary":
                return bytes.fromhex(v)
            if kind == "datetime":
                return dt.datetime.fromisoformat(v)
            if kind == "date":
                return dt.date.fromisoformat(v)
            if kind == "time":
                return dt.time.fromisoformat(v)
        elif type(v) is int and kind in ("decimal0", "decimal?"):
            return Decimal(v)
    except (ValueError, InvalidOperation):
        return v
    return v
