"""`kafka:` and `schema_registry:`: where the rows go and how they are framed."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_serializer, field_validator, model_validator

from poller.config.base import (
    Options,
    _Model,
    plain_options,
)

# librdkafka settings the poller sets itself; given in `options` they would be overridden
# without a word (or, for transactional.id, break one-writer-per-tenant fencing).
_OWNED_OPTIONS = {
    "bootstrap.servers": "use kafka.bootstrap_servers",
    "metadata.broker.list": "use kafka.bootstrap_servers",
    "transactional.id": "<transactional_id_prefix>.<tenant>, one writer per tenant",
    "enable.idempotence": "always on (transactions need it)",
    "transaction.timeout.ms": "use kafka.transaction_timeout_s",
}

_BROKER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]\s/]+)(?::(\d+))?")

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
    options: Options = Field(
        default_factory=dict,
        description="extra librdkafka producer options (secret ones, e.g. sasl.password, are "
        "held as secrets: never shown)",
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
    message_headers: bool = Field(
        True,
        description="tenant, entity and schema headers on each entity message (docs/native.md)",
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

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        # librdkafka takes host, host:port, [v6]:port, each with an optional PROTOCOL:// prefix;
        # a bad port would only show as "not reachable" after the whole startup wait.
        for entry in (e.strip() for e in v.split(",")):
            m = _BROKER.fullmatch(entry.rpartition("://")[2])
            if m is None:
                raise ValueError(f"{entry!r}: expected host:port (comma-separated)")
            if m[2] is not None and not 0 < int(m[2]) < 65536:
                raise ValueError(f"{entry!r}: the port is not in 1..65535")
        return v

    @field_validator("options")
    @classmethod
    def _owned(cls, v: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(set(v) & set(_OWNED_OPTIONS))
        if owned:
            raise ValueError(
                "; ".join(f"{k} is set by the poller: {_OWNED_OPTIONS[k]}" for k in owned)
            )
        return v

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
        return {**plain_options(shared), "bootstrap.servers": self.bootstrap_servers}

    def producer_options(self) -> dict[str, str | int | float | bool]:
        """`options` as librdkafka takes them, secrets unwrapped."""
        return plain_options(self.options)

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


Compatibility = Literal["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD",
                        "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]  # fmt: skip


class BasicAuth(_Model):
    user: str = Field(min_length=1, description="registry user", examples=["poller"])
    password: SecretStr = Field(
        description="put it in ${ENV} or ${file:...}; held as a secret (never shown)",
        examples=["${SR_PASSWORD}"],
    )


class SchemaRegistryConfig(_Model):
    """A Confluent-compatible Schema Registry (Confluent, Apicurio's /apis/ccompat/v7, ...)."""

    url: str = Field(
        repr=False,  # it may hold user:password@; repr shows nothing, dumps the redacted URL
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
    options: Options = Field(
        default_factory=dict,
        description="other SchemaRegistryClient options, e.g. ssl.ca.location (secret ones, "
        "e.g. ssl.key.password, are held as secrets)",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not all(re.match(r"https?://[^/,]+", u.strip()) for u in v.split(",")):
            raise ValueError("not an http(s) URL (value hidden: it may hold a password)")
        return v

    @field_serializer("url")
    def _dump_url(self, _url: str) -> str:
        return self.safe_url

    def client_options(self) -> dict[str, str | int | float | bool]:
        """`options` as the registry client takes them, secrets unwrapped."""
        return plain_options(self.options)

    @property
    def safe_url(self) -> str:
        """The URL(s) with any password replaced by ***."""
        return re.sub(r"(//[^:/@,]*:)[^/,]*@", r"\1***@", self.url)
