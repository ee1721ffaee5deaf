"""Pre-flight checks, run by `poller check` and before `poller run` writes anything: the
database and Kafka answer, every mapped column exists and its type fits the entity's schema.
Every problem is listed at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from poller.avro.schemas import EntitySchema, load_schema
from poller.config import AppConfig
from poller.errors import (
    ConfigError,
    KafkaAuthorizationError,
    PrivilegeError,
    SchemaMismatchError,
    StartupError,
    TerminalError,
)
from poller.kafka.access import access_problems, reach
from poller.kafka.topics import topic_name_problems
from poller.pipeline.guards import entity_null_problems
from poller.pipeline.wire import registry_problems
from poller.source.query import EntityQuery
from poller.source.reader import check_entity, make_engine

log = logging.getLogger(__name__)


def avro_type_name(avro_type: Any) -> str:
    """ "string", "long", "int", "boolean", "decimal(p,s)", "date" or "timestamp"."""
    if isinstance(avro_type, list):
        branch = [t for t in avro_type if t != "null"]
        return avro_type_name(branch[0]) if branch else "null"
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "decimal":
            return f"decimal({avro_type['precision']},{avro_type.get('scale', 0)})"
        if logical == "date":
            return "date"
        if logical in ("timestamp-micros", "timestamp-millis"):
            return "timestamp"
        return avro_type_name(avro_type["type"])
    return str(avro_type)


def field_types(schema: EntitySchema) -> dict[str, str]:
    return {f["name"]: avro_type_name(f["type"]) for f in schema.raw["fields"]}


def _kafka_problem(cfg: AppConfig, timeout_s: float) -> str | None:
    # A refused login or an unverifiable certificate raises KafkaAuthenticationError (exit 5).
    return reach(cfg.kafka, timeout_s)


def _database_problem(cfg: AppConfig, engine: sa.Engine) -> str | None:
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1))).scalar()
    except sa.exc.DBAPIError as exc:
        cause = (
            str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        )
        return f"database {cfg.source.safe_url}: not reachable ({cause})"
    except sa.exc.SQLAlchemyError as exc:
        return f"database {cfg.source.safe_url}: not reachable ({type(exc).__name__})"
    return None


def _wait_for(probe: Callable[[], str | None], timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        problem = probe()
        if problem is None or time.monotonic() + delay > deadline:
            return problem
        log.warning("%s; retrying in %.1fs", problem, delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def mapping_problems(cfg: AppConfig, engine: sa.Engine) -> list[str]:
    problems: list[str] = []
    for name, ent in cfg.enabled_entities().items():
        schema = load_schema(name)
        query = EntityQuery(
            ent, cfg.source, cfg.tenant, schema.field_names, engine.dialect, name=name
        )
        try:
            found = check_entity(engine, query, ent, field_types(schema))
            problems.extend(found or entity_null_problems(engine, query, ent))
        # a lost connection (SourceError) is retried instead; a missing grant is a problem
        except (TerminalError, PrivilegeError) as exc:
            problems.append(f"{name}: {exc}")
    return problems


def check_all(cfg: AppConfig, timeout_s: float = 10.0) -> list[str]:
    """Everything that is wrong, for `poller check`."""
    engine = make_engine(cfg.source)
    try:
        problems = topic_name_problems(cfg)
        kafka_problem = _kafka_problem(cfg, timeout_s)
        problems += [p for p in (kafka_problem, _database_problem(cfg, engine)) if p]
        if kafka_problem is None:
            problems.extend(access_problems(cfg, timeout_s))
        if not any(p.startswith("database") for p in problems):
            problems.extend(mapping_problems(cfg, engine))
        schemas = {name: load_schema(name) for name in cfg.enabled_entities()}
        problems.extend(registry_problems(cfg, schemas))
        return problems
    finally:
        engine.dispose()


def preflight(cfg: AppConfig, engine: sa.Engine) -> None:
    """Before the first write: wait up to retry.startup_timeout_s for the database and Kafka,
    then check the mapping. Raises StartupError / SchemaMismatchError listing everything."""
    if bad_topics := topic_name_problems(cfg):
        raise ConfigError(bad_topics)
    timeout = cfg.retry.startup_timeout_s
    unreachable = [
        p
        for p in (
            _wait_for(lambda: _database_problem(cfg, engine), timeout),
            _wait_for(lambda: _kafka_problem(cfg, 5.0), timeout),
        )
        if p
    ]
    if unreachable:
        raise StartupError(
            "cannot start: " + "; ".join(unreachable) + f" (waited {timeout:g}s; nothing written)"
        )
    denied = access_problems(cfg)
    if denied:
        raise KafkaAuthorizationError(
            f"Kafka refuses what tenant {cfg.tenant!r} needs ({len(denied)} ACL(s); nothing "
            "written, no schema registered):\n" + "\n".join(f"  - {p}" for p in denied)
        )
    problems = mapping_problems(cfg, engine)
    if problems:
        raise SchemaMismatchError(
            f"the mapping does not fit the source ({len(problems)} problem(s); nothing written):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
