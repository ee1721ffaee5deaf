"""How an entity's messages are framed on the wire, decided once at start.

`single_object`: the schema's single-object header and a JSON key `["<tenant>",<key>]`.
`confluent`: each entity's value and key schemas are registered (or looked up) in the Schema
Registry before anything is written; the ids are then constants of the run, so a registry outage
after start changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from poller.avro.registry import (
    Registered,
    Registry,
    build_key_encoder,
    key_schema,
    key_type_of,
    subject_name,
)
from poller.avro.schemas import EntitySchema
from poller.config import AppConfig
from poller.errors import PollerError
from poller.source.keys import key_kinds
from poller.source.query import EntityQuery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntityWire:
    """The Confluent framing of one entity: the value header and the key encoder."""

    value: Registered
    key: Registered
    key_schema: dict[str, Any]
    encode_key: Callable[[Any], bytes]

    @property
    def value_header(self) -> bytes:
        return self.value.prefix


def registry_problems(cfg: AppConfig, schemas: Mapping[str, EntitySchema]) -> list[str]:
    """For `poller check`: the registry answers, and no value subject would refuse its schema
    under the subject's current compatibility rule. Nothing is registered or set; key schemas
    need the key columns' types and are checked by `run`."""
    reg_cfg = cfg.schema_registry
    if cfg.kafka.format != "confluent" or reg_cfg is None:
        return []
    registry = Registry(reg_cfg)
    problems: list[str] = []
    try:
        for name in cfg.enabled_entities():
            raw = schemas[name].raw
            topic = cfg.kafka.topic_for(name, cfg.tenant)
            subject = subject_name(reg_cfg.subject_strategy, topic, raw, is_key=False)
            refused = registry.refusal(subject, raw)
            if refused is not None:
                problems.append(f"{name}: schema registry {reg_cfg.safe_url}: {refused}")
    except PollerError as exc:
        problems.append(str(exc))  # unreachable, not authorised: once is enough
    finally:
        registry.close()
    return problems


def register_entities(
    cfg: AppConfig,
    schemas: Mapping[str, EntitySchema],
    engine: sa.Engine,
    queries: Mapping[str, EntityQuery],
) -> dict[str, EntityWire]:
    """Register every enabled entity's value and key schema; {} in single_object format.

    Waits up to retry.startup_timeout_s for an unreachable registry (then exit 7); an
    incompatible schema stops at once (exit 8) naming the subject and the change."""
    reg_cfg = cfg.schema_registry
    if cfg.kafka.format != "confluent" or reg_cfg is None:
        return {}
    registry = Registry(reg_cfg)
    timeout = cfg.retry.startup_timeout_s
    out: dict[str, EntityWire] = {}
    try:
        for name, ent in cfg.enabled_entities().items():
            schema = schemas[name]
            topic = cfg.kafka.topic_for(name, cfg.tenant)
            types = [key_type_of(k) for k in key_kinds(engine, queries[name])]
            kschema = key_schema(schema, list(zip(ent.key_columns, types, strict=True)))
            strategy = reg_cfg.subject_strategy
            value = registry.register_waiting(
                subject_name(strategy, topic, schema.raw, is_key=False), schema.raw, timeout
            )
            key = registry.register_waiting(
                subject_name(strategy, topic, kschema, is_key=True), kschema, timeout
            )
            out[name] = EntityWire(
                value,
                key,
                kschema,
                build_key_encoder(
                    key.prefix, cfg.tenant, list(zip(ent.key_columns, types, strict=True))
                ),
            )
            log.info(
                "%s: value schema id %d (subject %s), key schema id %d (subject %s)",
                name,
                value.schema_id,
                value.subject,
                key.schema_id,
                key.subject,
                extra={"tenant": cfg.tenant, "entity": name},
            )
    finally:
        registry.close()
    return out
