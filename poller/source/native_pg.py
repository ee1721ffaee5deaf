"""The optional native PostgreSQL path: a batch is read as `COPY (<the batch SELECT>) TO STDOUT
(FORMAT BINARY)` and turned into Avro messages by the `poller_native` extension (native/, Rust),
without building a Python object per value.

The SELECT is the one the Python path runs (same compiled statement, same parameters). COPY takes
no bind parameters, so the parameters are quoted into it by psycopg2's `cursor.mogrify`: the same
client-side literal quoting (libpq's escaping) psycopg2 applies to every statement it sends.

The extension encodes only what it encodes exactly as the Python path would; for anything else
the batch (or, for a type pair or setting it does not handle, the whole entity) goes through the
Python path, with one log line and a `reason` label on poller_native_fallbacks_total. Set
POLLER_NATIVE=0 to turn the path off.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from poller.avro.values import FieldSpec
from poller.batch import Encoded, Position
from poller.source.query import RowLayout

log = logging.getLogger(__name__)

try:  # the accelerator is optional: built by `make venv` where a Rust toolchain exists
    import poller_native as _native
except ImportError:  # pragma: no cover - depends on the installation
    _native = None

# Types whose binary form the position decoder below reads (psycopg2's Python value, exactly).
_POSITION_OIDS = frozenset({20, 21, 23, 25, 1043, 1042, 2950, 1082, 1114, 1184})
_TIME_CURSOR_OIDS = frozenset({1082, 1114, 1184})
_PG_EPOCH = dt.datetime(2000, 1, 1)
_PG_EPOCH_DATE = dt.date(2000, 1, 1)
_UTC_SESSION = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Etc/Universal",
                          "Zulu", "Etc/Zulu", "GMT", "Etc/GMT", "GMT0", "Etc/GMT0"})  # fmt: skip
# A zone with rules is given to the extension as a table of its offsets over these years; a
# value outside them takes the Python path.
_ZONE_YEARS = (1900, 2100)
_SAMPLE = dt.timedelta(hours=6)  # zone changes are at least this far apart


Callback = Callable[[], None]


def available() -> bool:
    """The extension is installed and not turned off (POLLER_NATIVE=0)."""
    return _native is not None and os.environ.get("POLLER_NATIVE", "1") != "0"


def why_off() -> str:
    if _native is None:
        return "the poller_native extension is not installed; `make venv` builds it with cargo"
    return "POLLER_NATIVE=0"


@dataclass(frozen=True)
class NativeSpec:
    """What the pipeline tells the reader about an entity's messages (decided at start)."""

    header: bytes  # the value's header: single-object or the Confluent wire prefix
    fields: Sequence[FieldSpec]
    tz: dt.tzinfo  # naive timestamps are wall-clock time here
    key_head: bytes  # JSON keys: b'["<tenant>",'; Avro keys: wire prefix + tenant
    avro_key: bool
    max_value: int  # a longer value may be a bad row: the Python path decides
    time_mode: bool  # messages carry the cursor's time
    layout: RowLayout
    # Avro keys: the canonical key field's type (poller.avro.keys), which the bytes follow
    key_type: str | None = None


_INT_OIDS = (20, 21, 23)  # int8, int2, int4
_TEXT_OIDS = (25, 1043, 1042, 2950)  # text, varchar, bpchar, uuid


def _key_mode(key_oid: int, spec: NativeSpec) -> str:
    """How the extension writes the key, exactly as poller.avro.keys / the JSON key would."""
    if not spec.avro_key:
        if key_oid in _INT_OIDS:
            return "json_int"
        if key_oid in _TEXT_OIDS:
            return "json_text"
    elif spec.key_type == "long" and key_oid in _INT_OIDS:
        return "avro_long"
    elif spec.key_type == "int" and key_oid in (21, 23):  # an int8 may overflow the field
        return "avro_long"  # int and long share Avro's zig-zag varint
    elif spec.key_type == "string" and key_oid in _INT_OIDS:
        return "avro_int_string"
    elif spec.key_type == "string" and key_oid in _TEXT_OIDS:
        return "avro_string"
    raise Unsupported(f"a message key of type oid {key_oid} in a {spec.key_type} key field")


@dataclass(frozen=True)
class NativeBatch:
    rows: int
    encoded: Encoded
    last: Position | None


class Unsupported(Exception):
    """The entity cannot take the native path (the message says why)."""


class NativeReader:
    """Reads one entity's batches through COPY BINARY and the extension."""

    def __init__(
        self,
        spec: NativeSpec,
        what: str,
        on_fallback: Callable[[str], None],
        on_native: Callback | None = None,
        give_up_after: int = 3,
    ) -> None:
        assert _native is not None
        self._spec = spec
        self._what = what
        self._on_fallback = on_fallback
        self._on_native = on_native
        self._transcoders: dict[tuple[int, ...], Any] = {}
        self._logged: set[str] = set()
        self.disabled: str | None = None  # why the entity takes the Python path for good
        # Batches in a row handed to the Python path before the entity stays there (each one
        # was read twice); bad rows now and then do not get there.
        self._give_up_after = give_up_after
        self._in_a_row = 0

    def read(self, dbapi_conn: Any, sql: str, params: Any) -> NativeBatch | None:
        """The batch, or None when the Python path must read it (counted and logged)."""
        if self.disabled is not None:
            self._on_fallback("unsupported")
            return None
        cur = dbapi_conn.cursor()
        try:
            stmt = cur.mogrify(sql, params)  # the driver's own literal quoting
            # The column types, read in the batch's transaction: its ACCESS SHARE lock keeps
            # them until the COPY has run.
            cur.execute(b"SELECT * FROM (" + stmt + b") AS poller_types LIMIT 0")
            oids = tuple(int(d.type_code) for d in cur.description)
            transcoder = self._transcoder(oids, dbapi_conn)
            if transcoder is None:
                return None
            out = io.BytesIO()
            cur.copy_expert(b"COPY (" + stmt + b") TO STDOUT (FORMAT BINARY)", out)
        finally:
            cur.close()
        result = transcoder.transcode(out.getvalue())
        if len(result) == 2:
            self._fallback(str(result[0]), f"row {result[1] + 1} of a batch")
            self._in_a_row += 1
            if self._in_a_row >= self._give_up_after:
                self.disabled = f"{self._in_a_row} batches in a row needed it"
                log.info("%s: the Python path reads it from now on (%s)", self._what, self.disabled)
            return None
        self._in_a_row = 0
        values, keys, stamps, last_raw, rows = result
        last = None
        if rows:
            lay = self._spec.layout
            n, m = lay.n_fields, lay.n_tiebreak
            decoded = [_decode(oids[n + i], raw) for i, raw in enumerate(last_raw)]
            last = Position(decoded[0], decoded[1] if m == 1 else tuple(decoded[1 : 1 + m]))
        if self._on_native is not None:
            self._on_native()
        return NativeBatch(rows, Encoded(values, keys, stamps), last)

    def _transcoder(self, oids: tuple[int, ...], dbapi_conn: Any) -> Any:
        found = self._transcoders.get(oids)
        if found is None:
            try:
                found = self._transcoders[oids] = self._build(oids, dbapi_conn)
            except Unsupported as exc:
                self.disabled = str(exc)
                self._fallback("unsupported", str(exc))
                return None
        return found

    def _build(self, oids: tuple[int, ...], dbapi_conn: Any) -> Any:
        spec, lay = self._spec, self._spec.layout
        if lay.has_deleted:
            raise Unsupported("soft deletes are handled by the Python path")
        if lay.n_key != 1:
            raise Unsupported("a composite message key is handled by the Python path")
        if dbapi_conn.encoding not in ("UTF8", "UNICODE"):
            raise Unsupported(f"client encoding {dbapi_conn.encoding} (needs UTF8)")
        cursor_oids = oids[lay.n_fields : lay.n_fields + 1 + lay.n_tiebreak]
        if not set(cursor_oids) <= _POSITION_OIDS:
            raise Unsupported(f"cursor/tie-breaker types {cursor_oids} are not decoded natively")
        if 1184 in cursor_oids:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT current_setting('TimeZone')")
                session_zone = cur.fetchone()[0]
            if session_zone not in _UTC_SESSION:
                raise Unsupported(f"a timestamptz cursor in session time zone {session_zone}")
        if spec.time_mode and oids[lay.n_fields] not in _TIME_CURSOR_OIDS:
            raise Unsupported(f"time mode over a column of type oid {oids[lay.n_fields]}")
        key_mode = _key_mode(oids[lay.key_at], spec)
        starts, zone_range = zone_table(spec.tz)
        fields = [
            (oids[i], f.kind, f.nullable, f.null_branch, f.value_branch, f.precision, f.scale)
            for i, f in enumerate(spec.fields)
        ]
        try:
            return _native.Transcoder(
                spec.header,
                fields,
                list(oids),
                starts,
                zone_range,
                (key_mode, lay.key_at, spec.key_head),
                lay.cursor_at if spec.time_mode else None,
                list(range(lay.n_fields, lay.n_fields + 1 + lay.n_tiebreak)),
                spec.max_value,
            )
        except ValueError as exc:
            raise Unsupported(f"the extension does not handle {exc}") from None

    def _fallback(self, reason: str, detail: str) -> None:
        self._on_fallback(reason)
        if reason not in self._logged:  # once per reason, not once per batch
            self._logged.add(reason)
            log.info("%s: the Python path reads this (%s: %s)", self._what, reason, detail)


def _decode(oid: int, raw: bytes | None) -> object:
    """One position value from its binary form, as psycopg2 returns it."""
    if raw is None:
        return None
    if oid in (20, 21, 23):
        return int.from_bytes(raw, "big", signed=True)
    if oid == 2950:
        return str(uuid.UUID(bytes=bytes(raw)))
    if oid == 1082:
        return _PG_EPOCH_DATE + dt.timedelta(days=int.from_bytes(raw, "big", signed=True))
    if oid in (1114, 1184):
        value = _PG_EPOCH + dt.timedelta(microseconds=int.from_bytes(raw, "big", signed=True))
        return value if oid == 1114 else value.replace(tzinfo=dt.UTC)
    return bytes(raw).decode()


@functools.lru_cache(maxsize=16)
def zone_table(tz: dt.tzinfo) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """tz's UTC offset for every naive wall time (fold=0, as the encoder asks it), as sorted
    (wall microseconds since 1970 from which an offset applies, offset microseconds), and the
    range of wall times the table covers."""
    epoch = dt.datetime(1970, 1, 1)

    def micros(wall: dt.datetime) -> int:
        return (wall - epoch) // dt.timedelta(microseconds=1)

    def offset(wall: dt.datetime) -> int:
        off = tz.utcoffset(wall)
        assert off is not None
        return off // dt.timedelta(microseconds=1)

    lo, hi = dt.datetime(_ZONE_YEARS[0], 1, 1), dt.datetime(_ZONE_YEARS[1], 1, 1)
    if _fixed(tz):
        return [(-(1 << 63), offset(lo))], (-(1 << 63), (1 << 63) - 1)
    table = [(micros(lo), offset(lo))]
    wall, current = lo, offset(lo)
    while wall < hi:
        step = min(wall + _SAMPLE, hi)
        if offset(step) != current:  # the change is in (wall, step]: find its microsecond
            a, b = wall, step
            while b - a > dt.timedelta(microseconds=1):
                mid = a + (b - a) // 2
                a, b = (mid, b) if offset(mid) == current else (a, mid)
            current = offset(b)
            table.append((micros(b), current))
        wall = step
    return table, (micros(lo), micros(hi))


def _fixed(tz: dt.tzinfo) -> bool:
    """A zone without rules: datetime.timezone, or a zoneinfo zone with no transitions."""
    if isinstance(tz, dt.timezone):
        return True
    key = getattr(tz, "key", None)
    return key in _UTC_SESSION or (isinstance(key, str) and key.startswith("Etc/GMT"))
