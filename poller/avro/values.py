"""Avro binary primitives and the strict value rules for each field kind.

`poller.avro` generates a fast encoder per schema for the common Python types; every other
value goes through the per-field functions built here, which either encode it exactly or raise
`BadValueError`. Nothing here ever rounds, truncates or guesses a time zone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from poller.errors import BadValueError

EPOCH = datetime(1970, 1, 1)  # naive on purpose: naive minus naive is exact integer arithmetic
ONE_MICRO = timedelta(microseconds=1)
EPOCH_ORDINAL = EPOCH.toordinal()
INT_RANGE = (-(1 << 31), (1 << 31) - 1)
LONG_RANGE = (-(1 << 63), (1 << 63) - 1)

# Varint tables: FINAL[n] is the complete varint of n < 2**14; CONT[n] is the two 7-bit
# groups of n < 2**14 with the continuation bit set on both. Chaining them encodes any
# 56-bit number (every timestamp between 1970-01-26 and year 3111) in one join.
FINAL: tuple[bytes, ...] = tuple(
    bytes((n,)) if n < 0x80 else bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(1 << 14)
)
CONT: tuple[bytes, ...] = tuple(bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(1 << 14))
_M14 = 0x3FFF


def write_long(v: int) -> bytes:
    """Zig-zag varint of a 64-bit signed int (the caller checked the range)."""
    n = v << 1 if v >= 0 else (~v << 1) | 1
    if n < 0x4000:
        return FINAL[n]
    if n < 0x10000000:
        return CONT[n & _M14] + FINAL[n >> 14]
    if n < 0x40000000000:
        return b"".join((CONT[n & _M14], CONT[(n >> 14) & _M14], FINAL[n >> 28]))
    if n < 0x100000000000000:
        return b"".join(
            (CONT[n & _M14], CONT[(n >> 14) & _M14], CONT[(n >> 28) & _M14], FINAL[n >> 42])
        )
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_prefixes(branch: bytes, count: int = 1024) -> tuple[bytes, ...]:
    """branch + varint length, for the `count` shortest strings (the usual ones)."""
    return tuple(branch + write_long(n) for n in range(count))


@dataclass(frozen=True)
class FieldSpec:
    """What the encoder needs to know about one field, derived from the schema only."""

    name: str
    kind: str  # string | long | int | boolean | decimal | date | timestamp
    nullable: bool
    null_branch: bytes = b""  # union index of "null" as a varint (nullable fields)
    value_branch: bytes = b""  # union index of the value type ("" when not a union)
    precision: int = 0
    scale: int = 0


Encoder = Callable[[object], bytes]


class Unrepresentable(str):
    """Source text the driver cannot turn into a Python value without changing it (PostgreSQL
    'infinity', a year outside 1..9999). Kept as its text, so it is a bad row in any field
    (never published as some other value) and, as a cursor, binds back as the same literal."""

    reason: str

    def __new__(cls, text: str, reason: str) -> Unrepresentable:
        obj = super().__new__(cls, text)
        obj.reason = reason
        return obj


# --- text -----------------------------------------------------------------------------------


def to_text(field: str, v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        raise BadValueError(field, v, "a boolean where text belongs; render it in the source query")
    if isinstance(v, int):
        try:
            return int.__repr__(v)  # decimal digits even for int subclasses such as IntEnum
        except ValueError as e:  # beyond sys.get_int_max_str_digits()
            raise BadValueError(field, v, f"integer too long to render as text: {e}") from None
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, float):
        reason = "a float where text belongs; cast to a character type in the source query"
    elif isinstance(v, bytes | bytearray | memoryview):
        reason = "bytes where text belongs; convert to a character type in the source query"
    elif isinstance(v, Decimal):
        reason = "a Decimal where text belongs (1.5 or 1.50?); cast to text in the source query"
    else:
        reason = "cannot be stored in a string field"
    raise BadValueError(field, v, reason)


def _string_body(field: str) -> Encoder:
    def enc(v: object) -> bytes:
        text = to_text(field, v)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as e:
            reason = f"text is not valid Unicode ({e.reason} at {e.start})"
            raise BadValueError(field, v, reason) from None
        return write_long(len(data)) + data

    return enc


# --- integers and booleans ------------------------------------------------------------------


def to_integer(field: str, v: object, bits: int) -> int:
    lo, hi = INT_RANGE if bits == 32 else LONG_RANGE
    if isinstance(v, bool):
        raise BadValueError(field, v, "a boolean where an integer belongs")
    if isinstance(v, int):
        n = int(v)
    elif isinstance(v, Decimal):
        if not v.is_finite():
            raise BadValueError(field, v, f"{v} is not a finite number")
        fractional = f"{v} has a fractional part; integers are never rounded"
        # The two guards spare as_integer_ratio a huge power of ten (1E+999999999, 1E-999999999).
        if v and v.adjusted() > 20:
            raise BadValueError(field, v, f"{v} is out of range for a {bits}-bit integer")
        if v and v.adjusted() < 0:
            raise BadValueError(field, v, fractional)
        n, den = v.as_integer_ratio()
        if den != 1:
            raise BadValueError(field, v, fractional)
    elif isinstance(v, str):
        raise BadValueError(
            field, v, "text where a number belongs; cast to an integer type in the source query"
        )
    elif isinstance(v, float):
        raise BadValueError(
            field, v, "a float where an integer belongs; cast to an integer in the source query"
        )
    else:
        raise BadValueError(field, v, "cannot be stored in an integer field")
    if not lo <= n <= hi:
        raise BadValueError(field, v, f"{n} is out of range for a {bits}-bit integer")
    return n


def to_bool(field: str, v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v in (0, 1):
        return v == 1  # MySQL TINYINT(1)
    if isinstance(v, int):
        reason = f"{v} is not a boolean; only 0 and 1 are read as false and true"
    else:
        reason = "cannot be stored in a boolean field (expected bool, or 0/1)"
    raise BadValueError(field, v, reason)


# --- decimals -------------------------------------------------------------------------------

_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_FLOAT_REASON = "float cannot be stored exactly; cast to DECIMAL/TEXT in the source query"


DecimalEncoder = Callable[[Decimal, object], bytes]


def decimal_encoders(field: str, precision: int, scale: int) -> tuple[DecimalEncoder, Encoder]:
    """Encoders of the `bytes` decimal body (varint length + minimal two's-complement, as
    Java's BigInteger.toByteArray): one for a Decimal (the hot path; `original` is the value
    to name in errors) and one for any value (Decimal, int, or text as SQLite returns it)."""
    factor: int = 10**scale
    limit: int = 10**precision
    max_adjusted = precision - scale  # |v| < 10**max_adjusted, i.e. at most p unscaled digits
    too_long = f"needs more than {precision} digits (decimal({precision},{scale}))"
    too_fine = f"has more than {scale} fractional digits; values are never rounded"
    lengths = tuple(write_long(n) for n in range(64))

    def encode_unscaled(u: int) -> bytes:
        size = ((u if u >= 0 else ~u).bit_length() + 8) >> 3  # room for the sign bit
        return lengths[size] + u.to_bytes(size, "big", signed=True)

    def from_decimal(v: Decimal, original: object) -> bytes:
        if not v.is_finite():
            raise BadValueError(field, original, f"{v} is not a finite number")
        if not v:
            return b"\x02\x00"
        # Both guards run before as_integer_ratio, which would build 10**exponent.
        adjusted = v.adjusted()
        if adjusted >= max_adjusted:
            raise BadValueError(field, original, f"{v} {too_long}")
        if adjusted < -scale:
            raise BadValueError(field, original, f"{v} {too_fine}")
        num, den = v.as_integer_ratio()
        u = num * factor
        if den != 1:
            u, rest = divmod(u, den)
            if rest:
                raise BadValueError(field, original, f"{v} {too_fine}")
        size = ((u if u >= 0 else ~u).bit_length() + 8) >> 3  # encode_unscaled, inlined
        return lengths[size] + u.to_bytes(size, "big", signed=True)

    def enc(v: object) -> bytes:
        if isinstance(v, Decimal):
            return from_decimal(v, v)
        if isinstance(v, bool):
            raise BadValueError(field, v, "a boolean where a decimal belongs")
        if isinstance(v, int):
            u = v * factor
            if not -limit < u < limit:
                raise BadValueError(field, v, f"{v} {too_long}")
            return encode_unscaled(u)
        if isinstance(v, str):
            if not _DECIMAL_TEXT.fullmatch(v):
                raise BadValueError(field, v, f"text {v[:40]!r} is not a decimal number")
            return from_decimal(Decimal(v), v)
        if isinstance(v, float):
            raise BadValueError(field, v, _FLOAT_REASON)
        raise BadValueError(field, v, "cannot be stored in a decimal field")

    return from_decimal, enc


# --- dates and timestamps -------------------------------------------------------------------

_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
# Extended ISO-8601 date and time; a time part is mandatory. Group 1 is the fraction.
_TIMESTAMP_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,](\d+))?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Etc/Universal",
                        "Zulu", "Etc/Zulu", "GMT", "Etc/GMT"})  # fmt: skip


def fixed_offset_micros(tz: tzinfo) -> int | None:
    """The zone's constant UTC offset in microseconds, or None if it has rules (DST)."""
    if isinstance(tz, timezone):
        off = tz.utcoffset(None)
        return off // ONE_MICRO
    if isinstance(tz, ZoneInfo) and tz.key in _UTC_NAMES:
        return 0
    return None


def to_days(field: str, v: object) -> int:
    if isinstance(v, datetime):
        # Oracle returns DATE columns as datetime; midnight carries no time, so nothing is lost.
        if v.utcoffset() is not None:
            raise BadValueError(field, v, "a time-zone aware datetime where a date belongs")
        if v.hour or v.minute or v.second or v.microsecond:
            raise BadValueError(
                field, v, "a datetime with a time of day where a date belongs; cast to DATE"
            )
        return v.toordinal() - EPOCH_ORDINAL
    if isinstance(v, date):
        return v.toordinal() - EPOCH_ORDINAL
    if isinstance(v, str):
        try:
            if not _DATE_TEXT.fullmatch(v):
                raise ValueError("not YYYY-MM-DD")
            return date.fromisoformat(v).toordinal() - EPOCH_ORDINAL
        except ValueError as e:
            raise BadValueError(field, v, f"text {v[:40]!r} is not a valid date ({e})") from None
    raise BadValueError(field, v, "cannot be stored in a date field (expected date or YYYY-MM-DD)")


def parse_timestamp(field: str, v: str) -> datetime:
    m = _TIMESTAMP_TEXT.fullmatch(v)
    if m is None:
        if _DATE_TEXT.fullmatch(v):
            raise BadValueError(field, v, "a date without a time where a timestamp belongs")
        raise BadValueError(field, v, f"text {v[:40]!r} is not an ISO-8601 timestamp")
    fraction = m.group(1)
    if fraction and fraction[6:].strip("0"):
        # fromisoformat would silently drop the digits beyond microseconds
        raise BadValueError(field, v, "finer than a microsecond; the digits would be lost")
    try:
        return datetime.fromisoformat(v)
    except ValueError as e:
        raise BadValueError(field, v, f"text {v[:40]!r} is not a valid timestamp ({e})") from None


def to_micros(field: str, v: object, tz: tzinfo) -> int:
    """Microseconds since the epoch (UTC); a naive value is wall-clock time in `tz`."""
    if isinstance(v, str):
        v = parse_timestamp(field, v)
    if isinstance(v, datetime):
        wall = v.replace(tzinfo=None)
        off = v.utcoffset()
        if off is None:
            off = tz.utcoffset(wall)  # honours wall.fold; drivers always give fold=0
            if off is None:
                raise BadValueError(field, v, f"time zone {tz!r} gives no UTC offset")
        return (wall - EPOCH - off) // ONE_MICRO
    if isinstance(v, date):
        raise BadValueError(
            field,
            v,
            "a date (no time of day) where a timestamp belongs; cast it to a "
            "timestamp in the source query or map it to a date field",
        )
    raise BadValueError(field, v, "cannot be stored in a timestamp field (expected datetime)")


# --- per-field encoders (the complete path; the generated code calls these for rare types) -


def field_encoder(spec: FieldSpec, tz: tzinfo) -> Encoder:
    """Encoder of one field's full binary form (union branch included) for any value."""
    name = spec.name
    body: Encoder
    if spec.kind == "string":
        body = _string_body(name)
    elif spec.kind in ("long", "int"):
        bits = 32 if spec.kind == "int" else 64
        body = lambda v: write_long(to_integer(name, v, bits))  # noqa: E731
    elif spec.kind == "boolean":
        body = lambda v: b"\x01" if to_bool(name, v) else b"\x00"  # noqa: E731
    elif spec.kind == "decimal":
        body = decimal_encoders(name, spec.precision, spec.scale)[1]
    elif spec.kind == "date":
        body = lambda v: write_long(to_days(name, v))  # noqa: E731
    elif spec.kind == "timestamp":
        body = lambda v: write_long(to_micros(name, v, tz))  # noqa: E731
    else:  # pragma: no cover - FieldSpec is only built for the kinds above
        raise AssertionError(spec.kind)
    body = _refusing_unrepresentable(name, body)
    null, branch = spec.null_branch, spec.value_branch

    if not spec.nullable:

        def required(v: object) -> bytes:
            if v is None:
                raise BadValueError(name, v, "NULL in required field")
            return body(v)

        return required

    def nullable(v: object) -> bytes:
        return null if v is None else branch + body(v)

    return nullable


def _refusing_unrepresentable(name: str, body: Encoder) -> Encoder:
    # Only the slow path gets here (an Unrepresentable is never exactly a str or datetime).
    def enc(v: object) -> bytes:
        if type(v) is Unrepresentable:
            raise BadValueError(name, v, v.reason)
        return body(v)

    return enc
