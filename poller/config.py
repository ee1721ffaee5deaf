"""Configuration: YAML in, a validated, typed `AppConfig` out, or one `ConfigError` listing
every problem with its path.

Secrets never live in the file: `${NAME}` is replaced by the environment variable NAME and
`${file:/path}` by the file's content (trailing newline stripped).
"""

from __future__ import annotations

import difflib
import os
import re
import typing
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
    url: str = Field(
        description="SQLAlchemy URL; put the password in ${ENV} or ${file:...}",
        examples=["postgresql+psycopg2://crm:${CRM_PASSWORD}@db.example:5432/crm"],
    )
    tenant_column: str | None = Field(
        None,
        description="column telling tenants apart when several share one database; always "
        "bound (WHERE col = :tenant)",
        examples=["user_id"],
    )
    timezone: str = Field("UTC", description="zone of naive timestamps in the database")
    statement_timeout_s: float = Field(
        300, gt=0, description="longest a batch query may run (seconds)"
    )
    connect_timeout_s: float = Field(
        10, gt=0, description="longest a connection attempt may take (seconds)"
    )
    drift_check_interval_s: float = Field(300, ge=0, description="re-check the mapping; 0: never")
    horizon: Literal["transactions", "settle"] | None = Field(
        None,
        description="transactions: read only rows no open transaction can still write behind "
        "(needs pg_read_all_stats / PROCESS ...; falls back to settle); settle: settle_delay_s. "
        "Default: transactions, but settle on SQL Server and Oracle (not tested live; "
        "docs/horizon-dialects.md)",
        examples=["settle"],
    )
    max_concurrent_queries: int | None = Field(
        None,
        ge=1,
        description="cap across the tenants of this database on one worker",
        examples=[4],
    )
    max_rows_per_second: float | None = Field(
        None, gt=0, description="this tenant's read rate (rows per second)", examples=[5000]
    )
    require_tls: bool = Field(
        False,
        description="refuse any connection that is not encrypted with a verified server "
        "certificate naming the host (PostgreSQL sslmode=verify-full, MySQL/MariaDB verified "
        "identity, SQL Server Encrypt=yes, Oracle TCPS); without it the driver's default "
        "applies (libpq's `prefer` falls back to plaintext) and the poller warns when a "
        "connection to another host is not encrypted",
    )
    tls_ca_file: str | None = Field(
        None,
        description="PEM file of the CA(s) that signed the database's certificate; default: "
        "the system's trusted CAs",
        examples=["/etc/poller/db-ca.pem"],
    )
    tls_cert_file: str | None = Field(
        None,
        description="client certificate (PEM) for databases that require one",
        examples=["/etc/poller/db-client.pem"],
    )
    tls_key_file: str | None = Field(
        None,
        description="private key (PEM) of tls_cert_file",
        examples=["/etc/poller/db-client.key"],
    )

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
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka brokers, comma-separated host:port"
    )
    # confluent: 0 + schema id + Avro, Avro keys; single_object: C3 01 + fingerprint, JSON keys
    format: Literal["confluent", "single_object"] = Field(
        "confluent",
        description="confluent: 0 + schema id + Avro, Avro keys (needs schema_registry); "
        "single_object: C3 01 + fingerprint + Avro, JSON keys",
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra librdkafka producer options"
    )
    topic_prefix: str = Field("retail", description="{prefix} in the topic templates")
    topic_template: str = Field(
        "{prefix}.{entity}", description="an entity's topic; {prefix}, {entity}, {tenant}"
    )
    watermark_topic: str = Field(
        "{prefix}.watermarks", description="compacted topic of watermarks; created if missing"
    )
    dead_letter_topic: str = Field(
        "{prefix}.dead_letter", description="rows that on_bad_row: dead_letter sets aside"
    )
    transactional_id_prefix: str = Field(
        "poller", description="transactional.id is <prefix>.<tenant>: one writer per tenant"
    )
    topic_partitions: int = Field(3, ge=1, description="partitions of topics the poller creates")
    topic_replication: int = Field(
        1, ge=1, description="replication factor of topics the poller creates"
    )
    topic_config: dict[str, str] = Field(
        default_factory=lambda: {"cleanup.policy": "compact"},
        description="topic settings of entity topics the poller creates",
    )
    transaction_timeout_s: float = Field(
        60, gt=0, description="transaction.timeout.ms of the producer (seconds)"
    )
    layout: Literal["per_tenant", "shared"] | None = Field(
        None,
        description="per_tenant: every topic under {prefix}.{tenant}. (the layout for more than "
        "one tenant, see docs/security.md); shared: {prefix}.{entity} for every tenant, only "
        "for one trusted operator's principal; unset: shared, refused with per-tenant "
        "credentials (sasl.username)",
        examples=["per_tenant"],
    )

    @model_validator(mode="before")
    @classmethod
    def _layout_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("layout") == "per_tenant":
            data = {**PER_TENANT_TEMPLATES, **data}
        return data

    @model_validator(mode="after")
    def _per_tenant_templates(self) -> KafkaConfig:
        if self.layout == "per_tenant":
            bad = [
                name
                for name in PER_TENANT_TEMPLATES
                if not getattr(self, name).startswith("{prefix}.{tenant}.")
            ]
            if bad:
                raise ValueError(
                    f"layout per_tenant: {', '.join(bad)} must start with {{prefix}}.{{tenant}}. "
                    "(every topic of a tenant under its own prefix)"
                )
        return self

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


# kafka.layout per_tenant: a tenant's topics, all under `{prefix}.{tenant}.`
PER_TENANT_TEMPLATES = {
    "topic_template": "{prefix}.{tenant}.{entity}",
    "watermark_topic": "{prefix}.{tenant}.watermarks",
    "dead_letter_topic": "{prefix}.{tenant}.dead_letter",
}


class Batching(_Model):
    mode: Mode = Field(description="id, timestamp or timestamp+id", examples=["timestamp"])
    column: str = Field(description="the change-tracking column (cursor)", examples=["updated_at"])
    id_column: str | None = Field(
        None, description="timestamp+id: the unique tie-breaker", examples=["id"]
    )

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

    column: str = Field(
        description="the soft-delete flag or deleted_at column", examples=["is_deleted"]
    )
    values: list[str | int | bool] | None = Field(
        None,
        min_length=1,
        description="values meaning deleted; omitted: deleted when not NULL",
        examples=[[1, "Y"]],
    )

    @field_validator("column")
    @classmethod
    def _column(cls, v: str) -> str:
        return check_identifier(v, "deletes.column")


_SHARE = "a reconcile pass finding more than this share of the keys gone stops, tombstoning none"


class EntityConfig(_Model):
    table: str | None = Field(
        None, description="table or schema.table; or give query", examples=["customers"]
    )
    query: str | None = Field(
        None,
        description="a SELECT wrapped as a subquery (trusted SQL); or give table",
        examples=["SELECT c.*, s.currency FROM cheques c JOIN shops s ON s.id = c.shop_id"],
    )
    fields: dict[str, str] = Field(
        description="canonical field -> source column or SQL expression",
        examples=[{"local_id": "customer_id", "full_name": "CONCAT_WS(' ', f_name, l_name)"}],
    )
    key: str | list[str] = Field(
        description="the row's unique key column(s)",
        examples=["customer_id", ["cheque_id", "line_no"]],
    )
    batching: Batching = Field(
        description="how rows are ordered and resumed",
        examples=[{"mode": "id", "column": "customer_id"}],
    )
    batch_size: int = Field(
        10_000, ge=1, le=1_000_000, description="rows per query and Kafka transaction"
    )
    poll_interval_s: float = Field(
        30, gt=0, description="wait after a poll that found the entity caught up"
    )
    heartbeat_interval_s: float = Field(
        60, ge=0, description="rewrite an idle entity's watermark this often; 0 = never"
    )
    settle_delay_s: float | None = Field(
        None,
        ge=0,
        description="wait before reading a row stamped now (seconds); default: 1 with the "
        "transaction horizon, 30 without",
        examples=[2],
    )
    null_cursor: Literal["fail", "skip"] = Field(
        "fail", description="skip: rows whose cursor is NULL are never read (counted in a metric)"
    )
    start: str | int = Field(
        "earliest", description="where a new entity starts: earliest, now or a cursor value"
    )
    on_bad_row: Literal["fail", "dead_letter"] = Field(
        "fail", description="a row that cannot be encoded: stop (exit 4) or dead-letter it"
    )
    enabled: bool = Field(True, description="false: configured and checked, but not copied")
    deletes: DeletesConfig | None = Field(
        None,
        description="soft deletes published as tombstones",
        examples=[{"column": "is_deleted", "values": [1, "Y"]}],
    )
    repair_interval_s: float | None = Field(
        None,
        gt=0,
        description="tombstone keys deleted in the source, this often (seconds)",
        examples=[3600],
    )
    repair_rows_per_s: float = Field(1000, gt=0, description="keys looked up per second")
    repair_range_keys: int = Field(1000, ge=1, le=100_000, description="keys per transaction")
    repair_max_tombstone_share: float = Field(0.01, ge=0, le=1, description=_SHARE)

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


class EndpointTLSConfig(_Model):
    cert_file: str = Field(
        description="PEM certificate (with its chain) the endpoints present",
        examples=["/etc/poller/tls/tls.crt"],
    )
    key_file: str = Field(
        description="PEM private key of `cert_file`", examples=["/etc/poller/tls/tls.key"]
    )
    client_ca_file: str | None = Field(
        None,
        description="require client certificates signed by this CA (mutual TLS)",
        examples=["/etc/poller/tls/prometheus-ca.pem"],
    )


class EndpointAuthConfig(_Model):
    user: str = Field(
        min_length=1, description="basic-auth user Prometheus sends", examples=["prometheus"]
    )
    password: str = Field(
        min_length=1,
        description="its password: write a reference (`${ENV}` or `${file:/path}`), never "
        "the password itself",
        examples=["${file:/etc/poller/metrics-password}"],
    )


class MetricsConfig(_Model):
    host: str = Field(
        "127.0.0.1",
        description="address /metrics, /healthz and /readyz listen on: loopback by default; "
        "0.0.0.0 in a container, with a NetworkPolicy that admits only Prometheus and the kubelet",
    )
    port: int = Field(9400, ge=0, le=65535, description="their port (0: any free port)")
    enabled: bool = Field(True, description="serve the endpoints at all")
    tls: EndpointTLSConfig | None = Field(
        None, description="serve HTTPS instead of HTTP (like Prometheus' exporter web config)"
    )
    basic_auth: EndpointAuthConfig | None = Field(
        None, description="require HTTP basic auth on /metrics and /readyz (/healthz stays open)"
    )
    probe_interval_s: float = Field(
        5.0,
        gt=0,
        description="how often the readiness checks (database, Kafka) run in the background; "
        "/readyz answers from their last results, so a flood of requests never reaches the "
        "database",
    )


class LoggingConfig(_Model):
    format: Literal["text", "json"] = Field("text", description="json: one object per line")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")


class RetryConfig(_Model):
    initial_backoff_s: float = Field(0.5, gt=0, description="first wait after a transient error")
    max_backoff_s: float = Field(30, gt=0, description="the wait doubles up to this")
    max_attempts: int = Field(0, ge=0, description="0 = retry transient errors forever")
    startup_timeout_s: float = Field(
        30, ge=0, description="how long to wait for the database and Kafka at start"
    )


Compatibility = Literal["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD",
                        "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]  # fmt: skip


class BasicAuth(_Model):
    user: str = Field(min_length=1, description="registry user", examples=["poller"])
    password: str = Field(
        repr=False, description="put it in ${ENV} or ${file:...}", examples=["${SR_PASSWORD}"]
    )


class SchemaRegistryConfig(_Model):
    """A Confluent-compatible Schema Registry (Confluent, Apicurio's /apis/ccompat/v7, ...)."""

    url: str = Field(
        description="base URL; several, comma-separated, are tried in turn",
        examples=["http://127.0.0.1:8081/apis/ccompat/v7"],
    )
    basic_auth: BasicAuth | None = Field(None, description="HTTP basic authentication")
    subject_strategy: Literal["topic", "record", "topic_record"] = Field(
        "topic",
        description="subject names: topic (<topic>-value), record (<record name>), "
        "topic_record (<topic>-<record name>)",
    )
    compatibility: Compatibility | None = Field(
        "FULL_TRANSITIVE", description="set on each subject at start; null leaves it as it is"
    )
    auto_register: bool = Field(True, description="false: only look the schemas up")
    timeout_s: float = Field(10, gt=0, description="longest a registry request may take (seconds)")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="other SchemaRegistryClient options, e.g. ssl.ca.location",
    )

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
    tenant: str = Field(
        min_length=1, max_length=200, description="this process's tenant id", examples=["acme-corp"]
    )
    source: SourceConfig = Field(description="the source database")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig, description="Kafka and topics")
    schema_registry: SchemaRegistryConfig | None = Field(
        None, description="required by kafka.format confluent"
    )
    entities: dict[str, EntityConfig] = Field(
        min_length=1, description="entity name (schemas/) -> its mapping"
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="HTTP endpoint")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="log output")
    retry: RetryConfig = Field(default_factory=RetryConfig, description="transient errors")

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

    @model_validator(mode="after")
    def _tenant_isolation(self) -> AppConfig:
        """Issue 17: a shared watermark topic lets any tenant write another's position; with
        per-tenant principals that layout must be refused unless chosen on purpose."""
        k = self.kafka
        if k.layout == "per_tenant" and "." in self.tenant:
            raise ValueError(
                f"tenant {self.tenant!r}: kafka.layout per_tenant needs a tenant id without '.' "
                f"(its topics' prefix {k.topic_prefix}.{self.tenant}. would also cover another "
                "tenant's, e.g. acme and acme.eu); use '-' or '_'"
            )
        if (
            k.layout is None
            and "sasl.username" in k.options
            and "{tenant}" not in (k.watermark_topic)
        ):
            raise ValueError(
                f"kafka.watermark_topic {k.watermark_topic!r} is shared by every tenant while "
                "this tenant has its own principal (kafka.options.sasl.username): any tenant "
                "could then write this tenant's watermark. Set kafka.layout: per_tenant (topics "
                "under {prefix}.{tenant}.), or kafka.layout: shared if one trusted operator's "
                "principal runs every tenant (docs/security.md)"
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


def format_problems(err: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """A pydantic error as `path: message` lines (`model`: to suggest keys for unknown ones)."""
    return _format_pydantic(err, model)


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at `loc` accepts (a mapping of sections, like `entities`, is
    walked through its names); none when `loc` is not a section."""
    node: type[BaseModel] | None = model
    via_dict = False
    for part in loc:
        if node is None:
            return []
        if via_dict:  # the name in `entities.<name>`
            via_dict = False
            continue
        field = node.model_fields.get(str(part))
        if field is None:
            return []
        via_dict = typing.get_origin(field.annotation) is dict
        args = typing.get_args(field.annotation)
        candidates = (field.annotation, *(args[1:] if via_dict else args))
        node = next(
            (a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
    return [] if node is None or via_dict else list(node.model_fields)


def _format_pydantic(err: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and model is not None:
            known = _known_keys(model, tuple(e["loc"][:-1]))
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1, cutoff=0.6)
            msg = (
                f"unknown key; did you mean {close[0]!r}?"
                if close
                else (f"unknown key (known here: {', '.join(known)})" if known else msg)
            )
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
            close = difflib.get_close_matches(str(name), list(ENTITIES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"entities.{name}: unknown entity ({hint}known: {', '.join(ENTITIES)})")
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
        problems.extend(_format_pydantic(err, AppConfig))
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
