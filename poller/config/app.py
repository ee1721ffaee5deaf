"""The whole configuration of one tenant's poller."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from poller.config.base import (
    _Model,
)
from poller.config.entity import (
    EntityConfig,
)
from poller.config.kafka import (
    KafkaConfig,
    SchemaRegistryConfig,
)
from poller.config.ops import (
    LoggingConfig,
    MetricsConfig,
    RetryConfig,
)
from poller.config.source import (
    SourceConfig,
)


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
