"""`poller verify`: prove that each entity topic equals the source, or list how it differs;
`--repair` publishes what it takes to make it equal."""

from __future__ import annotations

import argparse
import json
import sys

from poller.cli.common import load
from poller.errors import EXIT_DIFFERENCES, EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = sub.add_parser(
        "verify",
        help="compare each entity's source rows with the latest record per key of its topic",
        description=(
            "Compares, per entity, the tenant's source rows up to the stored watermark with the "
            "latest committed record of each key in the entity topic (a tombstone removes the "
            "key). Exit 0 when equal, 10 when different (the first differences are listed)."
        ),
    )
    v.add_argument("--config", required=True, help="the poller's YAML configuration")
    v.add_argument("--entity", action="append", help="only this entity (repeatable; default all)")
    v.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    v.add_argument(
        "--sample", type=int, default=10, metavar="N",
        help="list at most N keys of each kind of difference (default 10)",
    )  # fmt: skip
    v.add_argument(
        "--repair", action="store_true",
        help="publish tombstones for keys the source no longer has and the current rows for "
        "missing or different keys, in transactions, without moving the watermark",
    )  # fmt: skip
    v.add_argument(
        "--rows-per-s", type=float, default=None, metavar="R",
        help="with --repair: look up at most R keys per second in the source",
    )  # fmt: skip
    v.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from poller.errors import ConfigError
    from poller.kafka import watermark
    from poller.kafka.publisher import TransactionalPublisher
    from poller.source.reader import make_engine
    from poller.verify.render import RichProgress, render_json, render_text
    from poller.verify.session import EntityReport, Progress, entity_streams, verify_entity

    cfg = load(args)
    names: list[str] = args.entity or list(cfg.enabled_entities())
    enabled = cfg.enabled_entities()
    problems = [f"--entity: {n!r} is not an enabled entity" for n in names if n not in enabled]
    if args.sample < 0:
        problems.append("--sample: must be 0 or more")
    if args.rows_per_s is not None and args.rows_per_s <= 0:
        problems.append("--rows-per-s: must be more than 0")
    if problems:
        raise ConfigError(problems, "command line")
    k = cfg.kafka
    stored = watermark.load(k, k.watermark_topic_name(cfg.tenant), cfg.tenant, missing_ok=True)
    engine = make_engine(cfg.source)
    publisher: TransactionalPublisher | None = None
    reports: list[EntityReport] = []
    progress = RichProgress() if sys.stderr.isatty() and not args.json else Progress()
    try:
        streams = entity_streams(cfg, engine, names)
        if args.repair:
            # Its own transactional.id: the live poller is never fenced by a repair.
            publisher = TransactionalPublisher(k, f"{cfg.transactional_id()}.repair")
            publisher.start()
        with progress:
            for name in names:
                report = verify_entity(
                    cfg,
                    streams[name],
                    engine,
                    stored.get(name),
                    sample=args.sample,
                    publisher=publisher,
                    rows_per_s=args.rows_per_s,
                    progress=progress,
                )
                reports.append(report)
    finally:
        if publisher is not None:
            publisher.close()
        engine.dispose()
    if args.json:
        print(json.dumps(render_json(cfg.tenant, reports), ensure_ascii=False, default=str))
    else:
        print(render_text(cfg.tenant, reports))
    if args.repair:  # equal now, unless some rows could not be repaired
        repaired = all(r.repair is not None and not r.repair.bad for r in reports)
        return EXIT_OK if repaired else EXIT_DIFFERENCES
    return EXIT_OK if all(r.equal for r in reports) else EXIT_DIFFERENCES
