"""How an entity's messages are framed on the wire, decided once at start.

`single_object`: the schema's single-object header and a JSON key `["<tenant>",<key>]`.
`confluent`: each entity's value and key schemas are registered (or looked up) in the Schema
Registry before anything is written; the ids are then constants of the run, so a registry outage
after start changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from poller.avro.keys import KeyField, build_key_encoder, key_fields, key_schema
from poller.avro.registry import Registered, Registry, subject_name
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
    key_fields: tuple[KeyField, ...] = ()  # canonical order, with the columns' database kinds
    # Every schema registered under the value subject, by id (verify only: a record under an
    # older version is still one a consumer reads).
    value_history: Mapping[int, Any] = field(default_factory=dict)
    key_history: Mapping[int, Any] = field(default_factory=dict)  # likewise, of the key subject

    @property
    def value_header(self) -> bytes:
        return self.value.prefix


def registry_problems(cfg: AppConfig, schemas: Mapping[str, EntitySchema]) -> list[str]:
    """For `poller check`: the registry answers, and no value or key subject would refuse its
    schema under the subject's current compatibility rule. Nothing is registered or set. The
    key schema is canonical (poller.avro.keys), so it is known without the database."""
    reg_cfg = cfg.schema_registry
    if cfg.kafka.format != "confluent" or reg_cfg is None:
        return []
    registry = Registry(reg_cfg)
    problems: list[str] = []
    try:
        for name, ent in cfg.enabled_entities().items():
            raw = schemas[name].raw
            kraw = key_schema(
                schemas[name], key_fields(name, schemas[name], ent.fields, ent.key_columns)
            )
            topic = cfg.kafka.topic_for(name, cfg.tenant)
            for is_key, schema in ((False, raw), (True, kraw)):
                subject = subject_name(reg_cfg.subject_strategy, topic, schema, is_key=is_key)
                refused = registry.refusal(subject, schema)
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
    with_history: bool = False,
) -> dict[str, EntityWire]:
    """Register the value and key schema of every entity in `queries`; {} in single_object
    format.

    Waits up to retry.startup_timeout_s for an unreachable registry (then exit 7); an
    incompatible schema stops at once (exit 8) naming the subject and the change."""
    reg_cfg = cfg.schema_registry
    if cfg.kafka.format != "confluent" or reg_cfg is None:
        return {}
    registry = Registry(reg_cfg)
    timeout = cfg.retry.startup_timeout_s
    out: dict[str, EntityWire] = {}
    try:
        for name in queries:  # only these: verify --entity loads no other entity's schema
            ent = cfg.entities[name]
            schema = schemas[name]
            topic = cfg.kafka.topic_for(name, cfg.tenant)
            kfields = key_fields(
                name, schema, ent.fields, ent.key_columns, key_kinds(engine, queries[name])
            )
            kschema = key_schema(schema, kfields)
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
                build_key_encoder(key.prefix, cfg.tenant, kfields, ent.key_columns),
                tuple(kfields),
                registry.subject_schemas(value.subject) if with_history else {},
                registry.subject_schemas(key.subject) if with_history else {},
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
