"""The Confluent wire format without a registry: the 5-byte prefix, subject strategies, the
config rules and URL redaction (the key record: test_keys.py)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest

from poller.avro.encoder import build_encoder
from poller.avro.registry import (
    ConfluentDecoder,
    Registry,
    full_name,
    subject_name,
    wire_prefix,
)
from poller.avro.schemas import PayloadError, load_schema
from poller.config import SchemaRegistryConfig, parse_config
from poller.errors import ConfigError


def test_wire_prefix_is_magic_zero_and_big_endian_id() -> None:
    assert wire_prefix(1) == b"\x00\x00\x00\x00\x01"
    assert wire_prefix(0x01020304) == b"\x00\x01\x02\x03\x04"


def test_subject_strategies() -> None:
    raw = load_schema("customers").raw
    assert full_name(raw) == "retail.loyalty.Customer"
    assert subject_name("topic", "r.customers", raw, is_key=False) == "r.customers-value"
    assert subject_name("topic", "r.customers", raw, is_key=True) == "r.customers-key"
    assert subject_name("record", "r.customers", raw, is_key=False) == "retail.loyalty.Customer"
    assert (
        subject_name("topic_record", "r.customers", raw, is_key=False)
        == "r.customers-retail.loyalty.Customer"
    )


def read(schema: dict[str, Any], payload: bytes, prefix: bytes) -> Any:
    assert payload.startswith(prefix)
    buf = io.BytesIO(payload[len(prefix) :])
    record = fastavro.schemaless_reader(buf, fastavro.parse_schema(schema), None)
    assert buf.tell() == len(payload) - len(prefix), "bytes left after the record"
    return record


def test_confluent_header_with_the_generated_encoder_body() -> None:
    """The hot loop's encoder writes the same body after either header."""
    es = load_schema("customers")
    row: list[object] = ["1", "Anna Smirnova", "Anna", None, "Smirnova", None, None, None]
    row += [date(1990, 1, 2), None, None, None, None, datetime(2024, 1, 1, 12)]
    row += [datetime(2024, 5, 1, 8, 30)]
    single = build_encoder(es, UTC)(row)
    confluent = build_encoder(es, UTC, wire_prefix(42))(row)
    assert single[:10] == es.header and confluent[:5] == wire_prefix(42)
    assert single[10:] == confluent[5:]
    assert read(es.raw, confluent, wire_prefix(42))["birth_date"] == date(1990, 1, 2)


class FakeIds:
    """Stands in for the registry's id lookup only (the HTTP side is tested against the real
    registry in tests/integration/registry)."""

    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self.schemas = schemas

    def schema_by_id(self, schema_id: int) -> tuple[str, Any]:
        raw = self.schemas[schema_id]
        return full_name(raw), fastavro.parse_schema(raw)


def test_confluent_decoder_reads_values_and_rejects_other_framings() -> None:
    es = load_schema("customers")
    decoder = ConfluentDecoder(FakeIds({42: es.raw}))  # type: ignore[arg-type]
    row = ["7", None, None, None, None, None, None, None, None, None, None, None, None, None,
           None]  # fmt: skip
    name, record = decoder.decode(build_encoder(es, UTC, wire_prefix(42))(row))
    assert name == "retail.loyalty.Customer" and record["local_id"] == "7"
    with pytest.raises(PayloadError, match="not the Confluent wire format"):
        decoder.decode(build_encoder(es, UTC)(row))  # single-object
    with pytest.raises(PayloadError, match="bytes after the Avro body"):
        decoder.decode(build_encoder(es, UTC, wire_prefix(42))(row) + b"\x00")


def base(**kafka: Any) -> dict[str, Any]:
    return {
        "tenant": "t",
        "source": {"url": "sqlite:///x.db"},
        "kafka": kafka,
        "entities": {"customers": {"table": "c", "key": "id", "fields": {"local_id": "id"},
                                   "batching": {"mode": "id", "column": "id"}}},
    }  # fmt: skip


def test_confluent_is_the_default_and_needs_a_registry() -> None:
    with pytest.raises(ConfigError, match=r"schema_registry: required by kafka.format confluent"):
        parse_config(base())
    assert parse_config(base(format="single_object")).schema_registry is None
    cfg = parse_config({**base(), "schema_registry": {"url": "http://sr:8081"}})
    assert cfg.kafka.format == "confluent"
    sr = cfg.schema_registry
    assert sr is not None and sr.compatibility == "FULL_TRANSITIVE" and sr.auto_register
    assert sr.subject_strategy == "topic"


def test_registry_config_problems_are_listed_with_their_paths() -> None:
    raw = {**base(), "schema_registry": {"url": "registry:8081", "subject_strategy": "name",
                                          "compatibility": "SOMETIMES"}}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    text = "\n".join(info.value.problems)
    for path in ("schema_registry.url", "schema_registry.subject_strategy",
                 "schema_registry.compatibility"):  # fmt: skip
        assert path in text, text


def test_registry_secrets_come_from_the_environment_and_urls_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SR_PW", "s3cr3t")
    cfg = parse_config({**base(), "schema_registry": {
        "url": "https://u:${SR_PW}@sr.example:8081/apis/ccompat/v7,http://sr2:8081",
        "basic_auth": {"user": "poller", "password": "${SR_PW}"}}})  # fmt: skip
    sr = cfg.schema_registry
    assert sr is not None and sr.basic_auth is not None
    assert sr.basic_auth.password.get_secret_value() == "s3cr3t"
    assert sr.safe_url == "https://u:***@sr.example:8081/apis/ccompat/v7,http://sr2:8081"
    assert "s3cr3t" not in repr(sr.basic_auth)


def test_unknown_client_options_are_a_config_error() -> None:
    cfg = SchemaRegistryConfig(url="http://sr:8081", options={"no.such.option": 1})
    with pytest.raises(ConfigError, match=r"schema_registry: .*no.such.option"):
        Registry(cfg)
