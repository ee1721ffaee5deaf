"""`poller check`: everything `run` checks before writing, each check that passed printed as
`ok:` and every problem as `problem:`; the exit code is the one `run` would stop with."""

from __future__ import annotations

import argparse
import sys

from poller.cli.common import load
from poller.errors import EXIT_CONFIG, EXIT_KAFKA_FATAL, EXIT_OK, EXIT_SCHEMA, EXIT_UNREACHABLE


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "check",
        help="check the database, each entity's mapping, Kafka, the registry and the grants",
        description="Runs every check `poller run` runs before writing anything, writes "
        "nothing, and prints each one: `ok:` when it passed, `problem:` when not, `warning:` "
        "for what run would work around (a missing grant for the transaction horizon). Exits "
        "with the code run would stop with: 2 configuration, 5 a missing Kafka permission, 7 "
        "unreachable, 8 mapping or schema.",
    )
    c.add_argument("--config", required=True, help="the poller's YAML configuration file")
    c.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for Kafka to answer",
    )
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from poller.avro.schemas import load_schema
    from poller.errors import PollerError
    from poller.kafka.access import access_problems
    from poller.kafka.topics import topic_name_problems
    from poller.pipeline.guards import empty_tenant_warnings, horizon_warnings
    from poller.pipeline.preflight import _database_problem, _kafka_problem, mapping_problems
    from poller.pipeline.wire import registry_problems
    from poller.source.reader import make_engine

    cfg = load(args)
    entities = cfg.enabled_entities()
    print(f"ok: configuration {args.config}: tenant {cfg.tenant}, {len(entities)} entities")
    codes: list[int] = []

    def report(what: str, problems: list[str], code: int) -> None:
        for p in problems:
            print(f"problem: {p}")
        if problems:
            codes.append(code)
        else:
            print(f"ok: {what}")

    report("topic names", topic_name_problems(cfg), EXIT_CONFIG)
    kafka = _kafka_problem(cfg, args.timeout)
    report(
        f"kafka {cfg.kafka.bootstrap_servers} answers", [kafka] if kafka else [], EXIT_UNREACHABLE
    )
    if kafka is None:  # a missing Kafka ACL is the broker's "no": exit 5, as `run` would stop
        report(
            "kafka permissions: every ACL this tenant's features need is granted",
            access_problems(cfg, args.timeout),
            EXIT_KAFKA_FATAL,
        )
    engine = make_engine(cfg.source)
    try:
        database = _database_problem(cfg, engine)
        report(
            f"database {cfg.source.safe_url} answers",
            [database] if database else [],
            EXIT_UNREACHABLE,
        )
        if database is None:
            for name, ent in entities.items():
                one = cfg.model_copy(update={"entities": {name: ent}})
                report(
                    f"entity {name}: every mapped column exists and fits its field and the "
                    f"batching mode {ent.batching.mode.value}",
                    mapping_problems(one, engine),
                    EXIT_SCHEMA,
                )
            try:
                warnings = horizon_warnings(cfg)
            except PollerError as exc:
                warnings = [f"horizon not checked: {exc}"]
            for w in warnings:
                print(f"warning: {w}")
            if not warnings:
                print(f"ok: grants: the transaction horizon ({cfg.source.horizon}) can be read")
            if not codes:
                try:
                    for w in empty_tenant_warnings(cfg):
                        print(f"warning: {w}")
                except PollerError as exc:
                    print(f"warning: tenant rows not counted: {exc}")
    finally:
        engine.dispose()
    if cfg.schema_registry is not None and cfg.kafka.format == "confluent":
        schemas = {name: load_schema(name) for name in entities}
        found = registry_problems(cfg, schemas)
        refused = [p for p in found if ": schema registry " in p]
        report(
            f"schema registry {cfg.schema_registry.safe_url}: every value subject accepts "
            "its schema",
            found,
            EXIT_SCHEMA if refused and len(refused) == len(found) else EXIT_UNREACHABLE,
        )
    if codes:
        print(f"{len(codes)} check(s) failed", file=sys.stderr)
        return min(codes)  # configuration before reachability before the mapping
    print(f"ok: {len(entities)} entities checked against {cfg.source.safe_url}")
    return EXIT_OK
