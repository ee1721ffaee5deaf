"""Issue 17: the Kafka topic layout of a tenant (`kafka.layout`), checked when the
configuration is loaded: mixins of KafkaConfig and AppConfig (poller.config). Imports nothing
of the poller. See docs/security.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

# kafka.layout per_tenant: a tenant's topics, all under `{prefix}.{tenant}.`
PER_TENANT_TEMPLATES = {
    "topic_template": "{prefix}.{tenant}.{entity}",
    "watermark_topic": "{prefix}.{tenant}.watermarks",
    "dead_letter_topic": "{prefix}.{tenant}.dead_letter",
}


def template_problem(layout: str | None, templates: Mapping[str, str]) -> str | None:
    if layout != "per_tenant":
        return None
    bad = [n for n in PER_TENANT_TEMPLATES if not templates[n].startswith("{prefix}.{tenant}.")]
    if not bad:
        return None
    return (
        f"layout per_tenant: {', '.join(bad)} must start with {{prefix}}.{{tenant}}. "
        "(every topic of a tenant under its own prefix)"
    )


def isolation_problem(
    tenant: str,
    layout: str | None,
    prefix: str,
    watermark_topic: str,
    options: Mapping[str, object],
) -> str | None:
    """A shared watermark topic lets any tenant write another's position: with per-tenant
    principals that layout is refused unless chosen on purpose; and per_tenant refuses a
    dotted tenant id, whose prefix would cover another tenant's (acme and acme.eu)."""
    if layout == "per_tenant" and "." in tenant:
        return (
            f"tenant {tenant!r}: kafka.layout per_tenant needs a tenant id without '.' (its "
            f"topics' prefix {prefix}.{tenant}. would also cover another tenant's, e.g. acme "
            "and acme.eu); use '-' or '_'"
        )
    if layout is None and "sasl.username" in options and "{tenant}" not in watermark_topic:
        return (
            f"kafka.watermark_topic {watermark_topic!r} is shared by every tenant while this "
            "tenant has its own principal (kafka.options.sasl.username): any tenant could then "
            "write this tenant's watermark. Set kafka.layout: per_tenant (topics under "
            "{prefix}.{tenant}.), or kafka.layout: shared if one trusted operator's principal "
            "runs every tenant (docs/security.md)"
        )
    return None


class LayoutChoice(BaseModel):
    """KafkaConfig's `layout`; per_tenant fills the three topic templates."""

    layout: Literal["per_tenant", "shared"] | None = Field(
        None,
        description="per_tenant: every topic under {prefix}.{tenant}. (the layout for more than "
        "one tenant); shared: {prefix}.{entity} for every tenant, only for one trusted "
        "operator's principal; unset: shared, refused with a tenant's own sasl.username",
    )

    @model_validator(mode="before")
    @classmethod
    def _layout_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("layout") == "per_tenant":
            data = {**PER_TENANT_TEMPLATES, **data}
        return data

    @model_validator(mode="after")
    def _per_tenant_templates(self) -> Any:
        if problem := template_problem(self.layout, self.model_dump()):
            raise ValueError(problem)
        return self


class TenantIsolation(BaseModel):
    """AppConfig's check that a tenant's layout isolates it."""

    @model_validator(mode="after")
    def _tenant_isolation(self) -> Any:
        tenant: str = getattr(self, "tenant")  # noqa: B009 (the subclass's fields)
        k = getattr(self, "kafka")  # noqa: B009
        if p := isolation_problem(tenant, k.layout, k.topic_prefix, k.watermark_topic, k.options):
            raise ValueError(p)
        return self
