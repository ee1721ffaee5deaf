"""Verify's pieces without services: topic keys, value bodies, soft-delete values, the
sort-merge's verdicts, and the configuration of deletes and repairs."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.avro.schemas import load_schema
from poller.batch import Position
from poller.cli.main import main
from poller.config import DeletesConfig, parse_config
from poller.errors import ConfigError
from poller.pipeline.stream import EntityStream
from poller.source.deletes import deleted_matcher
from poller.verify.compare import (
    _DELETED,
    _PENDING,
    _ROW,
    DIFFERENT,
    EXTRA,
    MISSING,
    Difference,
    Merge,
)
from poller.verify.keys import KeyReader, avro_body, digest, key_of_text, key_text


def config(**entity: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "source": {"url": "sqlite:///x.db"},
        "kafka": {"format": "single_object"},
        "entities": {
            "customers": {
                "table": "customers",
                "key": "id",
                "fields": {"local_id": "id", "full_name": "name"},
                "batching": {"mode": "id", "column": "id"},
                **entity,
            }
        },
    }


def stream(**entity: Any) -> EntityStream:
    cfg = parse_config(config(**entity))
    return EntityStream(
        name="customers",
        cfg=cfg.entities["customers"],
        schema=load_schema("customers"),
        topic="t.customers",
        tenant="acme",
        tz=zoneinfo.ZoneInfo("UTC"),
        position=Position(),
    )


def test_topic_keys_name_tenant_and_key_exactly_as_the_poller_writes_them() -> None:
    s = stream()
    keys = KeyReader(s)
    assert keys.int_key(s.message_key(1042)) == 1042
    assert keys.int_key(s.message_key(-7)) == -7
    for raw in (b'["acme", 12]', b'["acme",1_2]', b'["acme",12.0]', b'["acmex",12]', b"[]"):
        assert keys.int_key(raw) is None, raw
    assert keys.read(s.message_key("Ä-1")) == ("acme", "Ä-1", True)
    assert keys.read(b'["other",5]') == ("other", 5, False)
    assert keys.read(b'["acme", 5]') == ("acme", 5, False)  # not the bytes the poller writes
    assert keys.read(b'["acme",null]') is None
    assert keys.read(b'["acme",1,2]') is None  # the entity's key has one column
    assert keys.read(b"not json") is None
    pair = KeyReader(stream(key=["id", "name"]))
    assert pair.read(b'["acme",1,"x"]') == ("acme", (1, "x"), True)


def test_binary_and_decimal_keys_come_back_with_their_source_type() -> None:
    """Item 8: a bytes key is hex in its JSON key; read back with the column's kind it is bytes
    again (a text round trip made the source lookup find nothing and tombstoned the row)."""
    s = stream()
    s.key_kinds = ("binary",)
    raw = s.message_key(b"\x00\x11")
    assert raw == b'["acme","0011"]'
    assert KeyReader(s).read(raw) == ("acme", b"\x00\x11", True)
    s.key_kinds = ("decimal0",)
    assert KeyReader(s).read(s.message_key(Decimal(42))) == ("acme", Decimal(42), True)


@pytest.mark.parametrize(
    "key",
    [7, "x", b"\x00\xff", Decimal("1.50"), dt.datetime(2024, 1, 2, 3, 4, 5), dt.date(2024, 1, 2),
     (1, b"\x01"), ("a", Decimal(3))],
)  # fmt: skip
def test_spilled_keys_keep_their_types(key: object) -> None:
    back = key_of_text(key_text(key))
    assert back == key and type(back) is type(key)
    if isinstance(key, tuple):
        assert [type(v) for v in back] == [type(v) for v in key]  # type: ignore[attr-defined]


def test_values_compare_by_their_avro_body_whatever_the_header() -> None:
    body = b"\x02abc"
    single = b"\xc3\x01" + bytes(8) + body
    confluent = b"\x00\x00\x00\x00\x07" + body
    assert avro_body(single) == avro_body(confluent) == body
    assert digest(single) == digest(confluent) != digest(single + b"\x00")


@pytest.mark.parametrize(
    ("values", "deleted", "kept"),
    [
        (["Y", 1], ["Y", " Y ", 1, True, Decimal("1"), "1", b"\x01"], ["N", 0, None, "y", 2]),
        ([True], [True, 1, "true", "1"], [False, 0, None, "t"]),
        (None, ["2024-01-01", dt.datetime(2024, 1, 1), 0, False], [None]),
    ],
)
def test_soft_delete_values_match_by_meaning(
    values: list[Any] | None, deleted: list[object], kept: list[object]
) -> None:
    is_deleted = deleted_matcher(DeletesConfig(column="flag", values=values))
    assert [v for v in deleted if not is_deleted(v)] == []
    assert [v for v in kept if is_deleted(v)] == []


def test_deletes_and_repair_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(deletes={"column": "bad name", "values": []}, repair_interval_s=0))
    text = "\n".join(info.value.problems)
    assert "entities.customers.deletes.column" in text
    assert "entities.customers.deletes.values" in text
    assert "entities.customers.repair_interval_s" in text
    ok = parse_config(config(deletes={"column": "deleted_at"}, repair_interval_s=3600))
    assert ok.entities["customers"].deletes == DeletesConfig(column="deleted_at")


def test_the_merge_names_every_kind_of_difference() -> None:
    s = stream()
    found: list[Difference] = []
    merge = Merge(s, found.append)
    d1, d2 = b"1" * 16, b"2" * 16
    source = [  # (sort key, key, state, digest), by key
        (1, 1, _ROW, d1),  # equal
        (2, 2, _ROW, d1),  # different
        (3, 3, _ROW, d1),  # missing
        (4, 4, _PENDING, None),  # after the watermark: not compared
        (5, 5, _DELETED, None),  # soft-deleted, still a value in the topic: extra
        (6, 6, _DELETED, None),  # soft-deleted and tombstoned: fine
        (8, 8, _ROW, d1),  # tombstoned in the topic: missing
    ]
    topic = [  # (raw key, integer key, digest, partition, offset), by key
        (s.message_key(1), 1, d1, 0, 10),
        (s.message_key(2), 2, d2, 0, 11),
        (s.message_key(4), 4, d2, 1, 12),
        (s.message_key(5), 5, d1, 1, 13),
        (s.message_key(6), 6, None, 1, 14),
        (s.message_key(7), 7, d1, 2, 15),  # hard-deleted in the source: extra
        (s.message_key(8), 8, None, 2, 16),
        (s.message_key(9), 9, None, 2, 17),  # tombstone of a key gone everywhere: fine
    ]
    merge._merge(iter(source), iter(topic), 1)
    got = sorted((d.kind, d.key) for d in found)
    assert got == [(DIFFERENT, 2), (EXTRA, 5), (EXTRA, 7), (MISSING, 3), (MISSING, 8)]
    c = merge.counts
    assert (c.equal, c.missing, c.extra, c.different) == (1, 2, 2, 1)
    missing = next(d for d in found if d.key == 3)
    assert missing.raw_key == s.message_key(3) and missing.partition is None
    assert next(d for d in found if d.key == 2).offset == 11


def test_bad_verify_options_are_listed_together_before_anything_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "poller.yaml"
    path.write_text(yaml.safe_dump(config()), encoding="utf-8")
    code = main(["verify", "--config", str(path), "--entity", "nope", "--sample", "-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'nope' is not an enabled entity" in err and "--sample: must be 0 or more" in err
