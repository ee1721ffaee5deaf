"""The Confluent wire format: schemas registered in a Schema Registry, ids fetched once at start.

A message is magic byte 0, the schema id (4 bytes, big-endian), then the Avro binary body: the
body the generated encoder writes anyway, so the hot loop only swaps a 10-byte header for a
5-byte one. Keys are Avro records too (the tenant and the row's key columns), registered under
the key subject, so sinks can upsert on them. Registration happens once; after that the ids are
constants and a registry outage changes nothing.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from poller.avro.schemas import EntitySchema, PayloadError
from poller.avro.values import CONT, FINAL, LONG_RANGE, write_long
from poller.config import SchemaRegistryConfig
from poller.errors import (
    BadValueError,
    ConfigError,
    IncompatibleSchemaError,
    RegistryUnavailableError,
    StartupError,
    TerminalError,
)

log = logging.getLogger(__name__)
# The HTTP client logs every request at INFO, URL included (which may carry credentials).
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)

WIRE_MAGIC = 0
KeyType = Literal["long", "string", "bytes"]
_AVRO_NAME = re.compile(r"[^A-Za-z0-9_]")


def wire_prefix(schema_id: int) -> bytes:
    """Magic byte 0 and the schema id, big-endian: the 5 bytes before every Avro body."""
    return bytes((WIRE_MAGIC,)) + schema_id.to_bytes(4, "big")


def full_name(schema: dict[str, Any]) -> str:
    ns = schema.get("namespace")
    name = str(schema["name"])
    return name if "." in name or not ns else f"{ns}.{name}"


def subject_name(strategy: str, topic: str, schema: dict[str, Any], is_key: bool) -> str:
    """Confluent's TopicNameStrategy, RecordNameStrategy and TopicRecordNameStrategy."""
    if strategy == "topic":
        return f"{topic}-{'key' if is_key else 'value'}"
    if strategy == "record":
        return full_name(schema)
    return f"{topic}-{full_name(schema)}"


# --- keys -------------------------------------------------------------------------------------


def key_type_of(kind: str) -> KeyType:
    """Avro type of a key column from its database kind (see poller.source.query.column_kind):
    integers stay integers, binary stays bytes, anything else is its text."""
    if kind in ("int", "decimal0"):
        return "long"
    if kind == "binary":
        return "bytes"
    return "string"


def key_schema(value: EntitySchema, columns: Sequence[tuple[str, KeyType]]) -> dict[str, Any]:
    """The key record of an entity: the tenant, then the key column(s) under their own names."""
    names = [_AVRO_NAME.sub("_", c) for c, _t in columns]
    problems = []
    if len(set(n.lower() for n in names) | {"tenant"}) != len(names) + 1:
        problems.append(
            f"entities.{value.name}.key: the key columns {', '.join(c for c, _ in columns)} "
            "clash with each other or with the key record's `tenant` field"
        )
    if problems:
        raise ConfigError(problems)
    raw = value.raw
    fields: list[dict[str, Any]] = [
        {"name": "tenant", "type": "string", "doc": "The tenant the row belongs to."}
    ]
    for (column, t), name in zip(columns, names, strict=True):
        fields.append({"name": name, "type": t, "doc": f"Source key column {column}."})
    record: dict[str, Any] = {
        "type": "record",
        "name": f"{raw['name']}Key",
        "doc": f"Message key of {full_name(raw)}: the tenant and the source row's key.",
        "fields": fields,
    }
    if raw.get("namespace"):
        record["namespace"] = raw["namespace"]
    return record


def _string(s: str) -> bytes:
    b = s.encode()
    return write_long(len(b)) + b


def _key_part(t: KeyType, column: str) -> Callable[[object], bytes]:
    lo, hi = LONG_RANGE

    def as_long(v: object) -> bytes:
        if isinstance(v, Decimal) and v == v.to_integral_value():
            v = int(v)
        if type(v) is bool or not isinstance(v, int) or not lo <= v <= hi:
            raise BadValueError(column, v, "a key column of integers holds a non-integer")
        return write_long(v)

    def as_string(v: object) -> bytes:
        if v is None:
            raise BadValueError(column, v, "the key is NULL")
        if isinstance(v, str):
            return _string(v)
        iso = getattr(v, "isoformat", None)
        return _string(iso() if callable(iso) else str(v))

    def as_bytes(v: object) -> bytes:
        if not isinstance(v, bytes | bytearray | memoryview):
            raise BadValueError(column, v, "a key column of bytes holds something else")
        b = bytes(v)
        return write_long(len(b)) + b

    return {"long": as_long, "string": as_string, "bytes": as_bytes}[t]


def build_key_encoder(
    prefix: bytes, tenant: str, columns: Sequence[tuple[str, KeyType]]
) -> Callable[[Any], bytes]:
    """key(k) -> wire prefix + Avro key record; k is the key value, or a sequence of values for
    a composite key. Deterministic: one row's key always gives the same bytes (compaction)."""
    head = prefix + _string(tenant)
    parts = [_key_part(t, c) for c, t in columns]
    if len(parts) > 1:

        def composite(ks: Sequence[object]) -> bytes:
            return head + b"".join(p(v) for p, v in zip(parts, ks, strict=True))

        return composite
    part = parts[0]
    if columns[0][1] == "long":
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

    def key(k: object) -> bytes:
        return head + part(k)

    return key


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    subject: str
    schema_id: int

    @property
    def prefix(self) -> bytes:
        return wire_prefix(self.schema_id)


class Registry:
    """The poller's use of a Confluent-compatible Schema Registry REST API."""

    def __init__(self, cfg: SchemaRegistryConfig) -> None:
        self.cfg = cfg
        conf: dict[str, Any] = {
            "url": cfg.url,
            "timeout": cfg.timeout_s,
            "max.retries": 0,  # the callers wait and retry, with their own deadline
            **cfg.options,
        }
        if cfg.basic_auth is not None:
            conf["basic.auth.user.info"] = f"{cfg.basic_auth.user}:{cfg.basic_auth.password}"
        try:
            self.client = SchemaRegistryClient(conf)
        except (ValueError, TypeError) as exc:
            # The messages name options, never their values (no password reaches them).
            raise ConfigError([f"schema_registry: {exc}"]) from None
        self._parsed: dict[int, tuple[str, Any]] = {}

    def _call(
        self,
        what: str,
        fn: Callable[[], Any],
        not_found: str | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Run one request; errors become the poller's, naming the (redacted) registry URL."""
        where = f"schema registry {self.cfg.safe_url}"
        try:
            return fn()
        except SchemaRegistryError as exc:
            status, message = exc.http_status_code, exc.error_message
            if status == 404 and missing_ok:
                return None
            if status == 404 and not_found is not None:
                raise IncompatibleSchemaError(f"{where}: {not_found} ({message})") from None
            if status == 409:
                raise IncompatibleSchemaError(
                    f"{where} refuses {what}: it is incompatible with the versions already "
                    f"registered ({message}). Schemas may only evolve in ways the subject's "
                    "compatibility allows (docs/messages.md: Schema evolution)"
                ) from None
            if status in (401, 403):
                raise StartupError(
                    f"{where}: not authorised ({status}) to {what}; check "
                    "schema_registry.basic_auth"
                ) from None
            if status >= 500 or status in (408, 429) or status < 0:
                raise RegistryUnavailableError(f"{where} failed to {what}: {exc}") from None
            raise TerminalError(f"{where} refuses to {what}: {exc}") from None
        except Exception as exc:  # network errors of the HTTP client (httpx's TransportError)
            raise RegistryUnavailableError(
                f"{where} did not answer ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None

    def register(self, subject: str, schema: dict[str, Any]) -> Registered:
        """Set the subject's compatibility (if configured) and register the schema, or only
        look it up when auto_register is off. Idempotent: an existing version keeps its id."""
        text = json.dumps(schema, separators=(",", ":"))
        avro = Schema(text, "AVRO")
        name = full_name(schema)
        if not self.cfg.auto_register:
            found = self._call(
                f"look up schema {name} under subject {subject!r}",
                lambda: self.client.lookup_schema(subject, avro),
                not_found=f"subject {subject!r} has no version equal to schema {name}, and "
                "schema_registry.auto_register is false: register it first",
            )
            return Registered(subject, int(found.schema_id))
        level = self.cfg.compatibility
        if level is not None:
            self._call(
                f"set compatibility {level} on subject {subject}",
                lambda: self.client.set_compatibility(subject, level),
            )
        schema_id = self._call(
            f"schema {name} under subject {subject!r}",
            lambda: self.client.register_schema(subject, avro),
        )
        return Registered(subject, int(schema_id))

    def refusal(self, subject: str, schema: dict[str, Any]) -> str | None:
        """Why the subject would refuse the schema under its compatibility rule, or None
        (compatible, or no such subject yet). Registers nothing: for `poller check`."""
        avro = Schema(json.dumps(schema, separators=(",", ":")), "AVRO")
        ok = self._call(
            f"test schema {full_name(schema)} against subject {subject!r}",
            lambda: self.client.test_compatibility(subject, avro),
            missing_ok=True,
        )
        if ok is None or ok:
            return None
        return f"subject {subject!r} refuses schema {full_name(schema)} (incompatible)"

    def register_waiting(
        self, subject: str, schema: dict[str, Any], timeout_s: float
    ) -> Registered:
        """register(), retrying an unreachable registry up to `timeout_s`; then StartupError
        (exit 7) naming the registry's redacted URL."""
        deadline = time.monotonic() + timeout_s
        delay = 0.5
        while True:
            try:
                return self.register(subject, schema)
            except RegistryUnavailableError as exc:
                if time.monotonic() + delay > deadline:
                    raise StartupError(
                        f"cannot start: {exc} (waited {timeout_s:g}s; nothing written)"
                    ) from None
                log.warning("%s; retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def schema_by_id(self, schema_id: int) -> tuple[str, Any]:
        """(full name, fastavro-parsed schema) of a registered id; cached."""
        hit = self._parsed.get(schema_id)
        if hit is None:
            found = self._call(
                f"fetch schema id {schema_id}", lambda: self.client.get_schema(schema_id)
            )
            raw = json.loads(found.schema_str)
            hit = (
                full_name(raw) if isinstance(raw, dict) else str(raw),
                fastavro.parse_schema(raw),
            )
            self._parsed[schema_id] = hit
        return hit

    def close(self) -> None:
        self.client.close()


class ConfluentDecoder:
    """Decodes Confluent wire-format messages (values or keys) with the registry's schemas."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def decode(self, payload: bytes) -> tuple[str, dict[str, object]]:
        if len(payload) < 5 or payload[0] != WIRE_MAGIC:
            raise PayloadError(
                f"not the Confluent wire format (starts {bytes(payload[:1]).hex() or 'empty'}, "
                "expected 00 and a 4-byte schema id)"
            )
        schema_id = int.from_bytes(payload[1:5], "big")
        name, parsed = self.registry.schema_by_id(schema_id)
        buf = io.BytesIO(payload[5:])
        try:
            record = fastavro.schemaless_reader(buf, parsed, None)
        except (EOFError, ValueError, IndexError) as e:
            raise PayloadError(f"{name} (schema id {schema_id}): corrupt Avro body: {e}") from None
        if buf.tell() != len(payload) - 5:
            raise PayloadError(f"{name} (schema id {schema_id}): bytes after the Avro body")
        if not isinstance(record, dict):
            raise PayloadError(f"{name} (schema id {schema_id}): the body is not a record")
        return name, record
