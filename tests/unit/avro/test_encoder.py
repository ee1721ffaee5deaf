"""The generated row encoder against fastavro, the value rules, and the decoder."""

from __future__ import annotations

import io
import json
import random
import re
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import IntEnum
from typing import Any
from zoneinfo import ZoneInfo

import fastavro
import pytest

from poller.avro.decoder import Decoder, decode_record, encode_record
from poller.avro.encoder import build_encoder
from poller.avro.schemas import ENTITIES, EntitySchema, PayloadError, load_all, load_schema
from poller.errors import BadValueError, ConfigError, SchemaMismatchError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ZONES: list[tzinfo] = [UTC, BERLIN, NEW_YORK]
TS = {"type": "long", "logicalType": "timestamp-micros"}
DATE = {"type": "int", "logicalType": "date"}


def dec(p: int, s: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}


# Every field kind, required and nullable, and a union with "null" second.
SINK = {
    "type": "record", "name": "Sink", "namespace": "test",
    "fields": [
        {"name": "local_id", "type": "string"},
        {"name": "s", "type": ["null", "string"], "default": None},
        {"name": "s_null_second", "type": ["string", "null"]},
        {"name": "l", "type": "long"},
        {"name": "ln", "type": ["null", "long"], "default": None},
        {"name": "i", "type": "int"},
        {"name": "in_null_second", "type": ["int", "null"]},
        {"name": "b", "type": "boolean"},
        {"name": "bn", "type": ["null", "boolean"], "default": None},
        {"name": "money", "type": dec(18, 2)},
        {"name": "wide", "type": ["null", dec(38, 10)], "default": None},
        {"name": "whole", "type": dec(5, 0)},
        {"name": "qty", "type": ["null", dec(18, 3)], "default": None},
        {"name": "day", "type": DATE},
        {"name": "dayn", "type": ["null", DATE], "default": None},
        {"name": "ts", "type": TS},
        {"name": "tsn", "type": ["null", TS], "default": None},
        {"name": "updated_at", "type": ["null", TS], "default": None},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> EntitySchema:
    d = tmp_path_factory.mktemp("schemas")
    (d / "sink.avsc").write_text(json.dumps(SINK), encoding="utf-8")
    return load_schema("sink", d)


@pytest.fixture(scope="module")
def schemas(sink: EntitySchema) -> dict[str, EntitySchema]:
    return {**load_all(), "sink": sink}


# --- random valid values and what they must decode to ---------------------------------------

TEXTS = [
    "", "a", "Иван Петрович Сидоров", "Екатеринбург, ул. Ленина 5", "😀🎉 emoji 👨‍👩‍👧",
    "中文字符", "e\u0301 combining", "tab\tnew\nline", "nul\x00byte", "quote ' \" \\",
    "x" * 1023, "я" * 600, "🙂" * 300, "z" * 5000,
]  # fmt: skip


def kind_of(t: Any) -> tuple[str, bool, Any]:
    nullable = isinstance(t, list)
    if nullable:
        t = next(x for x in t if x != "null")
    if isinstance(t, str):
        return t, nullable, t
    return t.get("logicalType", t["type"]), nullable, t


def transitions(tz: tzinfo) -> list[datetime]:
    """UTC instants of DST changes (none for UTC)."""
    if tz is BERLIN:
        return [datetime(2024, 3, 31, 1, tzinfo=UTC), datetime(2024, 10, 27, 1, tzinfo=UTC),
                datetime(1996, 10, 27, 1, tzinfo=UTC)]  # fmt: skip
    if tz is NEW_YORK:
        return [datetime(2024, 3, 10, 7, tzinfo=UTC), datetime(2024, 11, 3, 6, tzinfo=UTC),
                datetime(2007, 3, 11, 7, tzinfo=UTC)]  # fmt: skip
    return []


def to_utc(naive: datetime, tz: tzinfo) -> datetime:
    """The oracle: Python's own aware conversion (fold=0 for ambiguous or skipped times)."""
    return naive.replace(tzinfo=tz).astimezone(UTC)


def gen_timestamp(rng: random.Random, tz: tzinfo) -> tuple[object, datetime]:
    r = rng.random()
    epoch = datetime(1970, 1, 1)
    if r < 0.3:
        v = datetime(1900, 1, 1) + timedelta(microseconds=rng.randrange(200 * 365 * 86400 * 10**6))
        return v, to_utc(v, tz)
    if r < 0.5 and transitions(tz):  # wall-clock times around a DST change, incl. gap/overlap
        t = rng.choice(transitions(tz)) + timedelta(minutes=rng.randint(-150, 150))
        v = t.astimezone(tz).replace(tzinfo=None)
        v = v.replace(second=rng.randrange(60), microsecond=rng.randrange(10**6))
        return v, to_utc(v, tz)
    if r < 0.6:  # aware, any zone: the encoder's tz must not matter
        off = rng.choice([timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)),
                          BERLIN, NEW_YORK, UTC])  # fmt: skip
        base = datetime(2000, 1, 1) + timedelta(seconds=rng.randrange(40 * 365 * 86400))
        v = base.replace(tzinfo=off, microsecond=rng.randrange(10**6))
        return v, v.astimezone(UTC)
    if r < 0.7:  # ISO-8601 text as SQLite returns it
        v = datetime(2020, 1, 1) + timedelta(microseconds=rng.randrange(5 * 365 * 86400 * 10**6))
        if rng.random() < 0.5:
            return v.isoformat(sep=rng.choice(" T")), to_utc(v, tz)
        aware = v.replace(tzinfo=timezone(timedelta(hours=rng.randint(-12, 14))))
        return aware.isoformat(), aware.astimezone(UTC)
    if r < 0.85:  # around the epoch and the varint-length boundaries of the inlined path
        micros = rng.choice([0, -1, 1, 2**41 - 1, 2**41, 2**55 - 1, 2**55, -(2**41), 86400 * 10**6])
        v = epoch + timedelta(microseconds=micros + rng.randint(-2, 2))
        return v, to_utc(v, tz)
    if tz is UTC:  # the extremes only where UTC stays inside datetime's range
        v = rng.choice([datetime.min, datetime.max, datetime(1, 1, 1, 0, 0, 1)])
        return v, v.replace(tzinfo=UTC)
    v = rng.choice([datetime(1, 1, 2), datetime(9999, 12, 30, 23, 59, 59, 999999)])
    return v, to_utc(v, tz)


def gen_decimal(rng: random.Random, p: int, s: int) -> tuple[object, Decimal]:
    r = rng.random()
    if r < 0.15:
        u = rng.choice([10**p - 1, -(10**p - 1), 1, -1, 0, -128, -32768, -(2**63), 2**63 - 1])
        u = u if abs(u) < 10**p else 10**p - 1
    else:
        u = rng.randrange(10 ** rng.randint(1, p))
        u = -u if rng.random() < 0.5 else u
    exact = Decimal(f"{u}E-{s}")
    form = rng.random()
    if form < 0.5:
        value: object = exact
    elif form < 0.65:
        z = rng.randint(1, 4)  # trailing zeros beyond the scale are fine: 12.340 at scale 2
        value = Decimal(f"{u * 10**z}E-{s + z}")
    elif form < 0.8:
        value = str(exact)
    elif u % 10**s == 0 and abs(u // 10**s) < 10**p:
        value = u // 10**s  # an int
    else:
        value = exact
    return value, exact


def gen_value(rng: random.Random, t: Any, tz: tzinfo) -> tuple[object, object]:
    kind, nullable, full = kind_of(t)
    if nullable and rng.random() < 0.2:
        return None, None
    if kind == "string":
        r = rng.random()
        if r < 0.1:
            n = rng.choice([0, 7, -1, 2**63, -(2**70)])
            return n, str(n)
        if r < 0.15:
            u = uuid.UUID(int=rng.getrandbits(128))
            return u, str(u)
        if r < 0.2:
            return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(40))), None
        v = rng.choice(TEXTS)
        return v, v
    if kind in ("long", "int"):
        bits = 64 if kind == "long" else 32
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        n = rng.choice([0, -1, 1, 63, -64, 64, 8191, -8192, 8192, lo, hi, rng.randint(lo, hi)])
        return (Decimal(n) if rng.random() < 0.1 else n), n
    if kind == "boolean":
        flag = rng.choice([True, False, 0, 1])  # MySQL TINYINT(1) gives 0/1
        return flag, bool(flag)
    if kind == "decimal":
        return gen_decimal(rng, full["precision"], full.get("scale", 0))
    if kind == "date":
        d = date.fromordinal(rng.choice([1, date.max.toordinal(), 719163, 719162,
                                         rng.randint(1, date.max.toordinal())]))  # fmt: skip
        form = rng.random()
        if form < 0.2:
            return d.isoformat(), d
        if form < 0.3:
            return datetime(d.year, d.month, d.day), d  # Oracle DATE at midnight
        return d, d
    if kind == "timestamp-micros":
        return gen_timestamp(rng, tz)
    raise AssertionError(kind)


def random_rows(
    es: EntitySchema, tz: tzinfo, seed: int, n: int
) -> Iterator[tuple[list[object], dict[str, object]]]:
    rng = random.Random(seed)
    for _ in range(n):
        row, expected = [], {}
        for f in es.raw["fields"]:
            v, want = gen_value(rng, f["type"], tz)
            if want is None and v is not None:  # random text: the value itself
                want = v
            row.append(v)
            expected[f["name"]] = want
        yield row, expected


def fastavro_body(es: EntitySchema, record: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, es.schema, record)
    return buf.getvalue()


def fastavro_pads(record: dict[str, object]) -> bool:
    """fastavro writes -2**(8k-1) unscaled with a needless 0xFF byte; we write it minimally."""
    for v in record.values():
        if isinstance(v, Decimal) and v < 0:
            u = -int(v.scaleb(-v.as_tuple().exponent))  # type: ignore[operator]
            if u & (u - 1) == 0 and u.bit_length() % 8 == 0:
                return True
    return False


@pytest.mark.parametrize("tz", ZONES, ids=lambda z: str(z))
@pytest.mark.parametrize("name", [*ENTITIES, "sink"])
def test_random_rows_round_trip_and_match_fastavro(
    name: str, tz: tzinfo, schemas: dict[str, EntitySchema]
) -> None:
    es = schemas[name]
    encode = build_encoder(es, tz)
    decoder = Decoder(schemas)
    padded = 0
    for row, expected in random_rows(es, tz, seed=zlib.crc32(f"{name} {tz}".encode()), n=600):
        msg = encode(row)
        assert msg[:10] == es.header
        got_name, got = decoder.decode(msg)
        assert got_name == name
        assert got == expected, (row, got, expected)
        if fastavro_pads(expected):
            padded += 1
        else:
            assert msg[10:] == fastavro_body(es, expected), (row, expected)
    assert padded < 600


def test_the_seeded_rows_cover_the_hard_cases(sink: EntitySchema) -> None:
    """Guards the generator: the property test above must see the values it claims to."""
    seen: set[str] = set()
    for tz in ZONES:
        for row, expected in random_rows(sink, tz, seed=1, n=600):
            for v, want in zip(row, expected.values(), strict=True):
                if v is None:
                    seen.add("null")
                if isinstance(v, str) and "😀" in v:
                    seen.add("emoji")
                if isinstance(v, str) and "Иван" in v:
                    seen.add("cyrillic")
                if isinstance(want, Decimal) and want == Decimal("-9999999999999999.99"):
                    seen.add("decimal min")
                if isinstance(want, date) and want in (date.min, date.max):
                    seen.add("date limits")
                if (
                    isinstance(v, datetime)
                    and v.tzinfo is None
                    and tz is BERLIN
                    and 1900 < v.year < 2100
                    and to_utc(v, tz) != to_utc(v.replace(fold=1), tz)
                ):
                    seen.add("dst gap or overlap")
    assert seen >= {"null", "emoji", "cyrillic", "decimal min", "date limits",
                    "dst gap or overlap"}  # fmt: skip


# --- exact values -------------------------------------------------------------------------


def sink_row(sink: EntitySchema, **values: object) -> list[object]:
    base: dict[str, object] = {
        "local_id": "1", "s_null_second": "x", "l": 0, "i": 0, "b": False,
        "money": Decimal(0), "whole": 0, "day": date(2000, 1, 1), "ts": datetime(2000, 1, 1),
    }  # fmt: skip
    base.update(values)
    return [base.get(f) for f in sink.field_names]


def decoded(sink: EntitySchema, tz: tzinfo, **values: object) -> dict[str, object]:
    msg = build_encoder(sink, tz)(sink_row(sink, **values))
    return Decoder({"sink": sink}).decode(msg)[1]


@pytest.mark.parametrize(
    ("tz", "wall", "utc"),
    [
        (BERLIN, datetime(2024, 3, 31, 2, 30), datetime(2024, 3, 31, 1, 30)),  # gap, fold=0
        (BERLIN, datetime(2024, 10, 27, 2, 30), datetime(2024, 10, 27, 0, 30)),  # overlap
        (BERLIN, datetime(2024, 10, 27, 3, 0), datetime(2024, 10, 27, 2, 0)),
        (BERLIN, datetime(2024, 7, 1, 12, 0), datetime(2024, 7, 1, 10, 0)),
        (NEW_YORK, datetime(2024, 11, 3, 1, 30), datetime(2024, 11, 3, 5, 30)),  # overlap
        (NEW_YORK, datetime(2024, 3, 10, 2, 30), datetime(2024, 3, 10, 7, 30)),  # gap
        (NEW_YORK, datetime(2024, 1, 15, 9, 0, 0, 1), datetime(2024, 1, 15, 14, 0, 0, 1)),
        (timezone(timedelta(hours=3)), datetime(2024, 1, 1, 3), datetime(2024, 1, 1)),
        (ZoneInfo("Etc/UTC"), datetime(2024, 1, 1, 3), datetime(2024, 1, 1, 3)),
    ],
)
def test_naive_timestamps_are_wall_time_in_the_given_zone(
    sink: EntitySchema, tz: tzinfo, wall: datetime, utc: datetime
) -> None:
    got = decoded(sink, tz, ts=wall, tsn=wall.isoformat(sep=" "))
    assert got["ts"] == got["tsn"] == utc.replace(tzinfo=UTC)


def test_the_process_time_zone_is_never_used(
    sink: EntitySchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        got = decoded(sink, UTC, ts=datetime(2024, 1, 1, 12), tsn="2024-01-01 12:00:00")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert got["ts"] == got["tsn"] == datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_exact_values(sink: EntitySchema) -> None:
    got = decoded(
        sink, UTC, money=Decimal("12.340"), qty="-0.001", whole=Decimal("1.2E+3"),
        wide=Decimal("-1234567890123456789012345678.0123456789"), l=-(2**63), ln=Decimal("7"),
        bn=1, s=12345678901234567890, s_null_second=uuid.UUID(int=1), day="2024-02-29",
        ts="2024-01-01T10:00:00.1234560+02:00", dayn=datetime(2024, 2, 29),
    )  # fmt: skip
    assert got["money"] == Decimal("12.34") and got["qty"] == Decimal("-0.001")
    assert got["whole"] == 1200 and got["l"] == -(2**63) and got["ln"] == 7
    assert got["wide"] == Decimal("-1234567890123456789012345678.0123456789")
    assert got["bn"] is True
    assert got["s"] == "12345678901234567890"
    assert got["s_null_second"] == "00000000-0000-0000-0000-000000000001"
    assert got["day"] == got["dayn"] == date(2024, 2, 29)
    assert got["ts"] == datetime(2024, 1, 1, 8, 0, 0, 123456, tzinfo=UTC)


def test_int_subclasses_and_str_subclasses_take_the_general_path(sink: EntitySchema) -> None:
    class Color(IntEnum):
        RED = 3

    class Text(str):
        pass

    got = decoded(sink, UTC, l=Color.RED, s=Color.RED, s_null_second=Text("t"))
    assert got["l"] == 3 and got["s"] == "3" and got["s_null_second"] == "t"


def test_decimals_are_minimal_twos_complement(sink: EntitySchema) -> None:
    es = load_schema("receipts")
    encode = build_encoder(es, UTC)
    row: list[object] = ["r1", None, None, None, datetime(2024, 1, 1), Decimal("-1.28")]
    msg = encode(row + [None] * (len(es.field_names) - len(row)))
    body = msg[10:]
    # local_id "r1", 3 nulls, timestamp, then the decimal: length 1, 0x80 (Java's
    # BigInteger.toByteArray form); fastavro would write length 2, 0xFF 0x80.
    amount = body[3 + 3 + 8 :]
    assert amount[:2] == b"\x02\x80"
    assert Decoder().decode(msg)[1]["total_amount"] == Decimal("-1.28")


# --- rejections ---------------------------------------------------------------------------

FLOAT_REASON = "float cannot be stored exactly; cast to DECIMAL/TEXT in the source query"

REJECTIONS: list[tuple[str, object, str]] = [
    ("local_id", None, "NULL in required field"),
    ("money", None, "NULL in required field"),
    ("ts", None, "NULL in required field"),
    ("s", 1.5, "a float where text belongs"),
    ("s", b"abc", "bytes where text belongs"),
    ("s", Decimal("1.50"), "a Decimal where text belongs"),
    ("s", True, "a boolean where text belongs"),
    ("s", "lone \ud800 surrogate", "not valid Unicode"),
    ("local_id", "\udfff", "not valid Unicode"),
    ("s", object(), "cannot be stored in a string field"),
    ("l", "12", "text where a number belongs"),
    ("l", 1.0, "a float where an integer belongs"),
    ("l", True, "a boolean where an integer belongs"),
    ("l", Decimal("1.5"), "has a fractional part"),
    ("l", Decimal("NaN"), "not a finite number"),
    ("l", Decimal("1E+30"), "out of range"),
    ("l", Decimal("1E-999999999"), "has a fractional part"),
    ("ln", Decimal("1E+999999999"), "out of range for a 64-bit integer"),
    ("l", 2**63, "out of range for a 64-bit integer"),
    ("ln", -(2**63) - 1, "out of range for a 64-bit integer"),
    ("i", 2**31, "out of range for a 32-bit integer"),
    ("in_null_second", -(2**31) - 1, "out of range for a 32-bit integer"),
    ("b", 2, "only 0 and 1"),
    ("bn", "true", "cannot be stored in a boolean field"),
    ("bn", 1.0, "cannot be stored in a boolean field"),
    ("money", 1.5, FLOAT_REASON),
    ("qty", 0.1, FLOAT_REASON),
    ("money", Decimal("NaN"), "not a finite number"),
    ("money", Decimal("sNaN"), "not a finite number"),
    ("money", Decimal("Infinity"), "not a finite number"),
    ("money", Decimal("-Infinity"), "not a finite number"),
    ("money", "NaN", "not a decimal number"),
    ("money", Decimal("12.345"), "more than 2 fractional digits; values are never rounded"),
    ("money", "12.345", "more than 2 fractional digits"),
    ("money", Decimal("0.001"), "more than 2 fractional digits"),
    ("money", Decimal("1E-999999999"), "more than 2 fractional digits"),
    ("qty", Decimal("1.0001"), "more than 3 fractional digits"),
    ("money", Decimal("10000000000000000"), "needs more than 18 digits"),
    ("money", Decimal("-10000000000000000.00"), "needs more than 18 digits"),
    ("money", 10**16, "needs more than 18 digits"),
    ("money", Decimal("1E+999999999"), "needs more than 18 digits"),
    ("whole", Decimal("0.5"), "more than 0 fractional digits"),
    ("whole", 100000, "needs more than 5 digits"),
    ("money", "abc", "not a decimal number"),
    ("money", " 1.5", "not a decimal number"),
    ("money", "1_000", "not a decimal number"),
    ("money", True, "a boolean where a decimal belongs"),
    ("money", date(2024, 1, 1), "cannot be stored in a decimal field"),
    ("day", datetime(2024, 1, 1, 0, 0, 1), "a datetime with a time of day where a date belongs"),
    ("day", datetime(2024, 1, 1, tzinfo=UTC), "time-zone aware datetime"),
    ("day", "2023-02-30", "not a valid date"),
    ("dayn", "0000-00-00", "not a valid date"),
    ("day", "2023-1-1", "not a valid date"),
    ("day", "20230101", "not a valid date"),
    ("day", "2023-01-01 00:00:00", "not a valid date"),
    ("day", 19000, "cannot be stored in a date field"),
    ("ts", date(2024, 1, 1), "a date (no time of day) where a timestamp belongs"),
    ("tsn", "2024-01-01", "a date without a time where a timestamp belongs"),
    ("ts", "0000-00-00 00:00:00", "not a valid timestamp"),
    ("ts", "2023-02-30 10:00:00", "not a valid timestamp"),
    ("ts", "2023-01-01 24:00:00", "not a valid timestamp"),
    ("ts", "2023-01-01 10:00:00.1234567", "finer than a microsecond"),
    ("ts", "1 Jan 2023", "not an ISO-8601 timestamp"),
    ("ts", 1700000000, "cannot be stored in a timestamp field"),
    ("updated_at", 1.7e9, "cannot be stored in a timestamp field"),
]


@pytest.mark.parametrize("tz", [UTC, BERLIN], ids=str)
@pytest.mark.parametrize(("field", "value", "reason"), REJECTIONS)
def test_bad_values_are_rejected_naming_the_field(
    sink: EntitySchema, tz: tzinfo, field: str, value: object, reason: str
) -> None:
    encode = build_encoder(sink, tz)
    with pytest.raises(BadValueError) as info:
        encode(sink_row(sink, **{field: value}))
    assert info.value.field == field
    assert reason in info.value.reason
    assert f"field {field!r} ({type(value).__name__})" in str(info.value)


def test_bad_values_in_real_entities(schemas: dict[str, EntitySchema]) -> None:
    lines = build_encoder(schemas["receipt_lines"], UTC)
    with pytest.raises(BadValueError, match=re.escape("'quantity' (float): " + FLOAT_REASON)):
        lines(["1", "r1", 1, "p", 1.5, None, Decimal("1.00"), None, None])
    with pytest.raises(
        BadValueError, match=re.escape("'receipt_id' (NoneType): NULL in required field")
    ):
        lines(["1", None, 1, "p", Decimal(1), None, Decimal("1.00"), None, None])
    customers = build_encoder(schemas["customers"], BERLIN)
    with pytest.raises(BadValueError, match=re.escape("'birth_date' (str): text '0000-00-00'")):
        customers(["1", None, None, None, None, None, None, None, "0000-00-00"] + [None] * 6)


@pytest.mark.parametrize("row", [[], ["1"], ["1"] * 40, None, 42])
def test_a_row_of_the_wrong_shape_is_a_schema_mismatch(sink: EntitySchema, row: Any) -> None:
    with pytest.raises(SchemaMismatchError, match="sequence of 18 values"):
        build_encoder(sink, UTC)(row)


def test_a_time_zone_without_offset_is_refused(sink: EntitySchema) -> None:
    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            return None

        def dst(self, dt: datetime | None) -> timedelta | None:
            return None

        def tzname(self, dt: datetime | None) -> str | None:
            return None

    with pytest.raises(ConfigError, match="no UTC offset"):
        build_encoder(sink, NoOffset())


# --- decoder and low-volume records ---------------------------------------------------------


def test_decoder_rejects_foreign_and_corrupt_messages(schemas: dict[str, EntitySchema]) -> None:
    decoder = Decoder(schemas)
    msg = build_encoder(schemas["sink"], UTC)(sink_row(schemas["sink"]))
    assert decoder.decode(msg)[0] == "sink"
    with pytest.raises(PayloadError, match="not Avro single-object encoding"):
        decoder.decode(b"\x00\x01" + msg[2:])
    with pytest.raises(PayloadError, match="not Avro single-object encoding"):
        decoder.decode(b"")
    with pytest.raises(PayloadError, match="unknown schema fingerprint 0000000000000000"):
        decoder.decode(msg[:2] + bytes(8) + msg[10:])
    with pytest.raises(PayloadError, match="bytes after the Avro body"):
        decoder.decode(msg + b"\x00")
    with pytest.raises(PayloadError, match="corrupt Avro body"):
        decoder.decode(msg[:14])
    with pytest.raises(PayloadError, match="unknown schema fingerprint"):
        Decoder().decode(msg)  # the default decoder knows only the 8 entities


def test_watermark_record_round_trip() -> None:
    wm = load_schema("watermark")
    record: dict[str, object] = {
        "tenant": "acme", "entity": "receipts", "mode": "incremental",
        "cursor": {"kind": "datetime", "text": "2024-05-01T10:00:00.000001"},
        "key": {"kind": "int", "text": "123456789012"},
        "rows_total": 2**40, "updated_at": datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC),
        "heartbeat_at": datetime(2024, 5, 1, 10, 0, 2, tzinfo=UTC),
        "position": {"cursor": {"kind": "datetime", "text": "2024-05-01T10:00:00.000001"},
                     "key": [{"kind": "uuid", "text": "0b6c5f8e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"},
                             {"kind": "bytes", "text": "00ff"}]},
        "columns": ["updated_at", "receipt_id", "line_no"],
    }  # fmt: skip
    msg = encode_record(wm, record)
    assert msg[:10] == wm.header
    assert decode_record(wm, msg) == record
    assert (
        decode_record(wm, encode_record(wm, {**record, "cursor": None, "key": None}))["cursor"]
        is None
    )
    with pytest.raises(PayloadError, match="expected a watermark message"):
        decode_record(wm, build_encoder(load_schema("events"), UTC)(
            ["e", None, "login", datetime(2024, 1, 1), None, None, None, None]
        ))  # fmt: skip


def test_encoders_are_independent_per_schema_and_zone(schemas: dict[str, EntitySchema]) -> None:
    es = schemas["sink"]
    row = sink_row(es, ts=datetime(2024, 7, 1, 12))
    berlin, utc = build_encoder(es, BERLIN), build_encoder(es, UTC)
    assert berlin(row) != utc(row)
    assert Decoder(schemas).decode(berlin(row))[1]["ts"] == datetime(2024, 7, 1, 10, tzinfo=UTC)
    assert Decoder(schemas).decode(utc(row))[1]["ts"] == datetime(2024, 7, 1, 12, tzinfo=UTC)
