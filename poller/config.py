"""Configuration: YAML in, a validated, typed `AppConfig` out, or one `ConfigError` listing
every problem with its path.

Secrets never live in the file: `${NAME}` is replaced by the environment variable NAME and
`${file:/path}` by the file's content (trailing newline stripped).
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url

from poller.errors import ConfigError
from poller.redaction import redact
from poller.yamlfile import read_yaml

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]*$")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


# Default settle delays. With the transaction horizon the delay only covers the short race
# between a writer taking its timestamp and showing up in the database's transaction list
# (MySQL refreshes innodb_trx at most every 0.1 s); without it, it is the only defence
# against transactions that commit late, so it is long.
SETTLE_WITH_HORIZON_S = 1.0
SETTLE_FALLBACK_S = 30.0


class Mode(StrEnum):
    ID = "id"
    TIMESTAMP = "timestamp"
    TIMESTAMP_ID = "timestamp+id"


def check_identifier(value: str, what: str, qualified: bool = False) -> str:
    parts = value.split(".") if qualified else [value]
    if not all(IDENTIFIER.match(p) for p in parts):
        raise ValueError(
            f"{what} {value!r} is not a plain identifier (letters, digits, _; "
            f"{'schema.table' if qualified else 'no dots'}); use `query:` for anything else"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    url: str = Field(description="SQLAlchemy URL; put the password in ${ENV} or ${file:...}")
    tenant_column: str | None = None
    timezone: str = Field("UTC", description="zone of naive timestamps in the database")
    statement_timeout_s: float = Field(300, gt=0)
    connect_timeout_s: float = Field(10, gt=0)
    drift_check_interval_s: float = Field(300, ge=0, description="re-check the mapping; 0: never")
    horizon: Literal["transactions", "settle"] = Field(
        "transactions",
        description="transactions: read only rows no open transaction can still write behind "
        "(needs pg_read_all_stats / PROCESS ...; falls back to settle); settle: settle_delay_s",
    )
    max_concurrent_queries: int | None = Field(
        None, ge=1, description="cap across the tenants of this database on one worker"
    )
    max_rows_per_second: float | None = Field(None, gt=0, description="this tenant's read rate")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            url = make_url(v)
        except Exception as exc:  # SQLAlchemy raises ArgumentError with the URL in it
            raise ValueError(
                "not a valid SQLAlchemy URL (value hidden: it may hold a password)"
            ) from exc
        try:  # the dialect and its driver module, so `foo://` fails here, not in a traceback
            url.get_dialect().import_dbapi()
        except Exception as exc:  # NoSuchModuleError, ImportError; neither holds the URL
            raise ValueError(
                f"database {url.drivername!r} cannot be used ({type(exc).__name__}: {exc}); "
                "e.g. postgresql+psycopg2, mysql+pymysql, mssql+pyodbc, oracle+oracledb, sqlite"
            ) from None
        return v

    @field_validator("tenant_column")
    @classmethod
    def _tenant_column(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier(v, "tenant_column")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)"
            ) from exc
        return v

    @property
    def safe_url(self) -> str:
        """The URL to show: password hidden, also in the query (`?password=`, odbc_connect)."""
        return redact(make_url(self.url).render_as_string(hide_password=True))


# librdkafka settings that every client needs to reach the cluster at all.
_CLIENT_OPTION_PREFIXES = (
    "security.",
    "sasl.",
    "ssl.",
    "client.",
    "socket.",
    "broker.",
    "reconnect.",
    "metadata.",
    "api.version",
)


class KafkaConfig(_Model):
    bootstrap_servers: str = "127.0.0.1:9092"
    # confluent: 0 + schema id + Avro, Avro keys; single_object: C3 01 + fingerprint, JSON keys
    format: Literal["confluent", "single_object"] = "confluent"
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra librdkafka producer options"
    )
    topic_prefix: str = "retail"
    topic_template: str = "{prefix}.{entity}"
    watermark_topic: str = "{prefix}.watermarks"
    dead_letter_topic: str = "{prefix}.dead_letter"
    transactional_id_prefix: str = "poller"
    topic_partitions: int = Field(3, ge=1)
    topic_replication: int = Field(1, ge=1)
    topic_config: dict[str, str] = Field(default_factory=lambda: {"cleanup.policy": "compact"})
    transaction_timeout_s: float = Field(60, gt=0)
    message_headers: bool = Field(
        True,
        description="tenant, entity and schema headers on each entity message (docs/native.md)",
    )

    @field_validator("topic_template", "watermark_topic", "dead_letter_topic")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(prefix="p", entity="e", tenant="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"only {{prefix}}, {{entity}} and {{tenant}} may appear ({exc})"
            ) from exc
        return v

    def client_options(self) -> dict[str, str | int | float | bool]:
        """What every Kafka client of the poller needs (admin, consumers, producer): the
        bootstrap servers plus the connection and security settings among `options`.
        Producer tuning (linger.ms, compression, ...) stays with the producer."""
        shared = {k: v for k, v in self.options.items() if k.startswith(_CLIENT_OPTION_PREFIXES)}
        return {**shared, "bootstrap.servers": self.bootstrap_servers}

    def topic_for(self, entity: str, tenant: str) -> str:
        return self.topic_template.format(prefix=self.topic_prefix, entity=entity, tenant=tenant)

    def watermark_topic_name(self, tenant: str) -> str:
        return self.watermark_topic.format(prefix=self.topic_prefix, entity="", tenant=tenant)

    def dead_letter_topic_name(self, tenant: str) -> str:
        return self.dead_letter_topic.format(prefix=self.topic_prefix, entity="", tenant=tenant)


class Batching(_Model):
    mode: Mode
    column: str = Field(description="the change-tracking column (cursor)")
    id_column: str | None = Field(None, description="timestamp+id: the unique tie-breaker")

    @field_validator("column", "id_column")
    @classmethod
    def _ident(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier(v, "column")

    @model_validator(mode="after")
    def _id_column(self) -> Batching:
        if self.mode is Mode.TIMESTAMP_ID and self.id_column is None:
            raise ValueError("mode timestamp+id needs id_column (the unique tie-breaker)")
        if self.mode is not Mode.TIMESTAMP_ID and self.id_column is not None:
            raise ValueError("id_column is only used with mode timestamp+id")
        return self


class DeletesConfig(_Model):
    """Soft deletes: such a row is published as a tombstone (key, null value)."""

    column: str = Field(description="the soft-delete flag or deleted_at column")
    values: list[str | int | bool] | None = Field(
        None, min_length=1, description="values meaning deleted; omitted: deleted when not NULL"
    )

    @field_validator("column")
    @classmethod
    def _column(cls, v: str) -> str:
        return check_identifier(v, "deletes.column")


class EntityConfig(_Model):
    table: str | None = None
    query: str | None = None
    fields: dict[str, str] = Field(description="canonical field -> source column or SQL expression")
    key: str | list[str] = Field(description="the row's unique key column(s)")
    batching: Batching
    batch_size: int = Field(10_000, ge=1, le=1_000_000)
    poll_interval_s: float = Field(30, gt=0)
    heartbeat_interval_s: float = Field(
        60, ge=0, description="rewrite an idle entity's watermark this often; 0 = never"
    )
    settle_delay_s: float | None = Field(
        None, ge=0, description="default: SETTLE_WITH_HORIZON_S, or SETTLE_FALLBACK_S without it"
    )
    null_cursor: Literal["fail", "skip"] = Field(
        "fail", description="skip: rows whose cursor is NULL are never read (counted in a metric)"
    )
    start: str | int = "earliest"
    on_bad_row: Literal["fail", "dead_letter"] = "fail"
    enabled: bool = True
    deletes: DeletesConfig | None = None
    repair_interval_s: float | None = Field(
        None, gt=0, description="tombstone keys deleted in the source, this often"
    )
    repair_rows_per_s: float = Field(1000, gt=0, description="keys looked up per second")
    repair_range_keys: int = Field(1000, ge=1, le=100_000, description="keys per transaction")

    @field_validator("table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier(v, "table", qualified=True)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else v
        if not names or len(set(names)) != len(names):
            raise ValueError("key must name one column or a list of distinct columns")
        for name in names:
            check_identifier(name, "key")
        return v

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | None) -> str | None:
        if v is None:
            return None
        body = v.strip().rstrip(";").strip()
        if not re.match(r"(?is)^\s*(select|with)\b", body):
            raise ValueError("query must be a SELECT (it is wrapped as a subquery)")
        if ";" in body:
            raise ValueError("query must be a single statement (found ';')")
        return body

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [f for f, expr in v.items() if not expr.strip() or ";" in expr or "--" in expr]
        if bad:
            raise ValueError(f"empty expression, ';' or '--' in mapping of {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> EntityConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self

    @property
    def key_columns(self) -> list[str]:
        """The row's key: one column, or several (`key: [receipt_id, line_no]`)."""
        return [self.key] if isinstance(self.key, str) else list(self.key)

    @property
    def tiebreak_columns(self) -> list[str]:
        """What orders rows sharing one cursor value: id_column, else the key column(s)."""
        return [self.batching.id_column] if self.batching.id_column else self.key_columns

    @property
    def tiebreak(self) -> str:
        """The first tie-breaker column (the only one unless the key is composite)."""
        return self.tiebreak_columns[0]

    @property
    def key_is_tiebreak(self) -> bool:
        """False when the message key must be selected as column(s) of its own."""
        return self.tiebreak_columns == self.key_columns

    def settle_s(self, horizon_active: bool) -> float:
        """The settle delay in force: the configured one, else the default for the horizon."""
        if self.settle_delay_s is not None:
            return self.settle_delay_s
        return SETTLE_WITH_HORIZON_S if horizon_active else SETTLE_FALLBACK_S

    @property
    def is_time_mode(self) -> bool:
        return self.batching.mode is not Mode.ID


class MetricsConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(9400, ge=0, le=65535)
    enabled: bool = True


class LoggingConfig(_Model):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class RetryConfig(_Model):
    initial_backoff_s: float = Field(0.5, gt=0)
    max_backoff_s: float = Field(30, gt=0)
    max_attempts: int = Field(0, ge=0, description="0 = retry transient errors forever")
    startup_timeout_s: float = Field(
        30, ge=0, description="how long to wait for the database and Kafka at start"
    )


Compatibility = Literal["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD",
                        "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]  # fmt: skip


class BasicAuth(_Model):
    user: str = Field(min_length=1)
    password: str = Field(repr=False, description="put it in ${ENV} or ${file:...}")


class SchemaRegistryConfig(_Model):
    """A Confluent-compatible Schema Registry (Confluent, Apicurio's /apis/ccompat/v7, ...)."""

    url: str = Field(description="base URL; several, comma-separated, are tried in turn")
    basic_auth: BasicAuth | None = None
    subject_strategy: Literal["topic", "record", "topic_record"] = "topic"
    compatibility: Compatibility | None = Field(
        "FULL_TRANSITIVE", description="set on each subject at start; null leaves it as it is"
    )
    auto_register: bool = Field(True, description="false: only look the schemas up")
    timeout_s: float = Field(10, gt=0)
    options: dict[str, str | int | float | bool] = {}  # client options, e.g. ssl.ca.location

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not all(re.match(r"https?://[^/,]+", u.strip()) for u in v.split(",")):
            raise ValueError("not an http(s) URL (value hidden: it may hold a password)")
        return v

    @property
    def safe_url(self) -> str:
        """The URL(s) with any password replaced by ***."""
        return re.sub(r"(//[^:/@,]*:)[^/,]*@", r"\1***@", self.url)


class AppConfig(_Model):
    tenant: str = Field(min_length=1, max_length=200)
    source: SourceConfig
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    schema_registry: SchemaRegistryConfig | None = None
    entities: dict[str, EntityConfig] = Field(min_length=1)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        if any(ord(c) < 32 for c in v):
            raise ValueError("tenant must not contain control characters")
        return v

    @model_validator(mode="after")
    def _registry(self) -> AppConfig:
        if self.kafka.format == "confluent" and self.schema_registry is None:
            raise ValueError(
                "schema_registry: required by kafka.format confluent (the default); give "
                "schema_registry.url, or set kafka.format: single_object"
            )
        return self

    def transactional_id(self) -> str:
        """Stable per tenant so a restarted or duplicate poller fences the old one."""
        return f"{self.kafka.transactional_id_prefix}.{self.tenant}"

    def enabled_entities(self) -> dict[str, EntityConfig]:
        return {n: e for n, e in self.entities.items() if e.enabled}


# ---------------------------------------------------------------------------------------------
# loading


def _expand(node: Any, path: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref.startswith("file:"):
            try:
                return Path(ref[5:]).read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                problems.append(f"{path}: cannot read secret file {ref[5:]!r}: {exc.strerror}")
                return ""
            except UnicodeDecodeError:
                problems.append(f"{path}: secret file {ref[5:]!r} is not UTF-8 text")
                return ""
        if ref not in os.environ:
            problems.append(f"{path}: environment variable {ref} is not set")
            return ""
        return os.environ[ref]

    return _PLACEHOLDER.sub(sub, node)


def resolve_references(node: Any, problems: list[str]) -> Any:
    """`node` with every `${ENV}` / `${file:...}` replaced; what cannot be resolved is added to
    `problems` with its path (for configurations other than a tenant's, e.g. the worker's)."""
    return _expand(node, "", problems)


def format_problems(err: ValidationError) -> list[str]:
    """A pydantic error as `path: message` lines."""
    return _format_pydantic(err)


def _format_pydantic(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return out


def _schema_problems(raw: Mapping[str, Any]) -> list[str]:
    """Entity names and field mappings checked against `schemas/`, on the raw dict so these
    problems are listed together with the structural ones."""
    from poller.avro.schemas import ENTITIES, load_schema

    problems: list[str] = []
    entities = raw.get("entities")
    if not isinstance(entities, dict):
        return problems
    for name, ent in entities.items():
        if name not in ENTITIES:
            problems.append(f"entities.{name}: unknown entity (known: {', '.join(ENTITIES)})")
            continue
        fields = ent.get("fields") if isinstance(ent, dict) else None
        if not isinstance(fields, dict):
            continue
        schema = load_schema(name)
        for f in fields:
            if f not in schema.field_names:
                problems.append(
                    f"entities.{name}.fields.{f}: not a field of schema {name} "
                    f"(fields: {', '.join(schema.field_names)})"
                )
        for f in sorted(schema.required - set(fields)):
            problems.append(f"entities.{name}.fields: required field {f!r} is not mapped")
    return problems


def parse_config(raw: Any, source: str = "configuration") -> AppConfig:
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping"], source)
    problems: list[str] = []
    expanded = _expand(raw, "", problems)
    cfg: AppConfig | None = None
    try:
        cfg = AppConfig.model_validate(expanded)
    except ValidationError as err:
        problems.extend(_format_pydantic(err))
    problems.extend(_schema_problems(expanded))
    if problems or cfg is None:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | Path) -> AppConfig:
    """UTF-8 YAML without duplicate keys (see poller.yamlfile), then `parse_config`."""
    raw, problems = read_yaml(Path(path))
    if problems:
        raise ConfigError(problems, str(path))
    return parse_config(raw, str(path))
