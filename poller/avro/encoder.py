"""The hot-path row encoder: generated Python code, specialised per schema at build time.

fastavro's schemaless_writer is too slow for the throughput target once every field is a
nullable union, so each schema gets its own encode(row) function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from poller.avro.schemas import EntitySchema, RowEncoder, _field_spec
from poller.avro.values import (
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
from poller.errors import ConfigError, SchemaMismatchError

# --- the generated encoder ------------------------------------------------------------------

_STRING_TABLE = 1024  # strings shorter than this take their length prefix from a table


def build_encoder(schema: EntitySchema, tz: tzinfo, header: bytes | None = None) -> RowEncoder:
    """Return encode(row) -> header + Avro body, for rows in schema field order. The header is
    the schema's single-object header unless given (the Confluent wire prefix, for one).

    Naive datetimes are wall-clock time in `tz` (never the process's local zone). The code is
    generated from the schema only: no data and no schema text (names, docs) reaches `exec`.
    """
    if tz.utcoffset(datetime(2000, 1, 1)) is None:
        raise ConfigError([f"time zone {tz!r} has no UTC offset"], source="time zone")
    specs = [_field_spec(f) for f in schema.raw["fields"]]
    slow = [field_encoder(s, tz) for s in specs]
    header = schema.header if header is None else header
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
