"""The Confluent wire format: schemas registered in a Schema Registry, ids fetched once at start.

A message is magic byte 0, the schema id (4 bytes, big-endian), then the Avro binary body: the
body the generated encoder writes anyway, so the hot loop only swaps a 10-byte header for a
5-byte one. Keys are Avro records too (the tenant and the row's canonical key fields, see
poller.avro.keys), registered under the key subject, so sinks can upsert on them. Registration
happens once; after that the ids are constants and a registry outage changes nothing.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from poller.avro.registry_tls import tls_failure, warn_plaintext_credentials
from poller.avro.schemas import PayloadError
from poller.config import SchemaRegistryConfig
from poller.errors import (
    ConfigError,
    IncompatibleSchemaError,
    RegistryTLSError,
    RegistryUnavailableError,
    StartupError,
    TerminalError,
)

log = logging.getLogger(__name__)
# The HTTP client logs every request at INFO, URL included (which may carry credentials).
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)

WIRE_MAGIC = 0


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


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    subject: str
    schema_id: int

    @property
    def prefix(self) -> bytes:
        return wire_prefix(self.schema_id)


class _Conflict(Exception):
    """HTTP 409 for something another client created a moment ago (a rule, an artifact): a
    race between tenants registering one subject, not a refusal. The step is retried."""


_CONFLUENT_INCOMPATIBLE = 409  # Confluent's error_code for an incompatible schema
_RACE_ATTEMPTS = 20


def conflict_kind(exc: SchemaRegistryError) -> str:
    """What an HTTP 409 means: "exists" (Apicurio: an artifact or rule another client created
    concurrently; its error_code may be 409 as well), "incompatible" (Confluent's error_code
    409, or Apicurio's "Incompatible artifact" with error_code 0), else "other". The JSON
    body's error_code and message tell them apart."""
    code, message = exc.error_code, (exc.error_message or "").lower()
    if "already exists" in message:  # Apicurio sends error_code 409 with it too
        return "exists"
    if code == _CONFLUENT_INCOMPATIBLE or "incompatible" in message:
        return "incompatible"
    return "other"


class Registry:
    """The poller's use of a Confluent-compatible Schema Registry REST API."""

    def __init__(self, cfg: SchemaRegistryConfig) -> None:
        self.cfg = cfg
        conf: dict[str, Any] = {
            "url": cfg.url,
            "timeout": cfg.timeout_s,
            "max.retries": 0,  # the callers wait and retry, with their own deadline
            **cfg.client_options(),
        }
        if cfg.basic_auth is not None:
            conf["basic.auth.user.info"] = (
                f"{cfg.basic_auth.user}:{cfg.basic_auth.password.get_secret_value()}"
            )
        warn_plaintext_credentials(cfg)
        try:
            self.client = SchemaRegistryClient(conf)
        except (ValueError, TypeError) as exc:
            # The messages name options, never their values (no password reaches them).
            raise ConfigError([f"schema_registry: {exc}"]) from None
        except (OSError, ssl.SSLError) as exc:  # a CA/certificate/key file (checked at load)
            raise ConfigError(
                [f"schema_registry.options: cannot load the TLS files: {exc.strerror or exc}"]
            ) from None
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
            if status == 409 and conflict_kind(exc) == "exists":
                raise _Conflict(f"{where}: {what}: {message}") from None
            if status == 409 and conflict_kind(exc) == "other":
                raise IncompatibleSchemaError(
                    f"{where} refuses {what} (HTTP 409, error code {exc.error_code}: {message})"
                ) from None
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
            tls = tls_failure(exc, self.cfg)
            if tls is not None:
                raise RegistryTLSError(f"{where}: {tls}") from None
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
            self._racing(
                lambda: self._call(
                    f"set compatibility {level} on subject {subject}",
                    lambda: self.client.set_compatibility(subject, level),
                ),
                # Another tenant created the rule: it is ours if it says the same.
                lambda: self._compatibility(subject) == level,
                f"set compatibility {level} on subject {subject!r}",
            )
        ids: list[int] = []

        def lookup() -> bool:
            hit = self._call(
                f"look up schema {name} under subject {subject!r}",
                lambda: self.client.lookup_schema(subject, avro),
                missing_ok=True,
            )
            if hit is not None:
                ids.append(int(hit.schema_id))
            return hit is not None

        schema_id = self._racing(
            lambda: self._call(
                f"schema {name} under subject {subject!r}",
                lambda: self.client.register_schema(subject, avro),
            ),
            lookup,  # another tenant registered it first: its id is ours too
            f"register schema {name} under subject {subject!r}",
        )
        return Registered(subject, int(schema_id) if schema_id is not None else ids[-1])

    def _compatibility(self, subject: str) -> str | None:
        level = self._call(
            f"read the compatibility of subject {subject!r}",
            lambda: self.client.get_compatibility(subject),
            missing_ok=True,
        )
        return None if level is None else str(level)

    def _racing(self, step: Callable[[], Any], settled: Callable[[], bool], what: str) -> Any:
        """Run `step`; when it hits a concurrent creation (_Conflict), accept the other
        client's result if `settled()` (None is returned), else retry after a short jittered
        pause. Never reported as "incompatible"."""
        for attempt in range(_RACE_ATTEMPTS):
            try:
                return step()
            except _Conflict as exc:
                if settled():
                    return None
                log.info("%s: %s; retrying (%d)", what, exc, attempt + 1)
                time.sleep(random.uniform(0.05, 0.2 * (attempt + 1)))
        raise RegistryUnavailableError(
            f"schema registry {self.cfg.safe_url}: {what}: still conflicting with concurrent "
            f"clients after {_RACE_ATTEMPTS} attempts"
        )

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

    def subject_schemas(self, subject: str) -> dict[int, Any]:
        """{schema id: schema JSON} of every version registered under the subject."""
        versions = self._call(
            f"list the versions of subject {subject!r}",
            lambda: self.client.get_versions(subject),
            missing_ok=True,
        )
        out: dict[int, Any] = {}
        for v in versions or []:
            found = self._call(
                f"fetch version {v} of subject {subject!r}",
                functools.partial(self.client.get_version, subject, v),
            )
            out[int(found.schema_id)] = json.loads(found.schema.schema_str)
        return out

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
