"""`poller watermarks show|reset` (alias: `offsets`): read or move the stored watermarks on
purpose."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from poller.batch import Position
from poller.cli.common import load, unsettled_note
from poller.config import AppConfig
from poller.errors import ConfigError, UsageError
from poller.kafka import watermark
from poller.kafka.backfill_state import observe
from poller.kafka.publisher import TransactionalPublisher
from poller.kafka.topics import ensure_topics, wanted_topics
from poller.ops.running import poller_running
from poller.pipeline.runner import parse_cursor


def show(cfg: AppConfig, as_json: bool = False) -> None:
    topic = cfg.kafka.watermark_topic_name(cfg.tenant)
    observed = observe(cfg.kafka, topic, cfg.tenant)
    stored = observed.watermarks
    rows = [
        {
            "entity": name,
            "unsettled": name in observed.unsettled_watermarks,
            "mode": wm.mode if wm else None,
            "cursor": None if wm is None else wm.position.cursor,
            "key": None if wm is None else wm.position.key,
            "rows_total": wm.rows_total if wm else 0,
            "updated_at": wm.updated_at if wm else None,
        }
        for name in cfg.entities
        for wm in [stored.get(name)]
    ]
    if observed.unsettled_watermarks:  # on stderr: --json's stdout stays one array
        print(unsettled_note(cfg, sorted(observed.unsettled_watermarks)), file=sys.stderr)
    if as_json:
        print(json.dumps(rows, default=str, ensure_ascii=False))
        return
    for r in rows:
        where = "earliest (nothing stored)" if r["mode"] is None else f"{r['cursor']} / {r['key']}"
        where += " *" if r["unsettled"] else ""
        print(f"{r['entity']:<20} {where:<45} rows={r['rows_total']}")


def reset(cfg: AppConfig, entity: str, to: str, yes: bool = False) -> None:
    """Writes a new watermark under the tenant's transactional.id, which fences a poller of
    this tenant that is still running (it stops with 'fenced'): stop it first, or say --yes."""
    ent = cfg.entities.get(entity)
    if ent is None:
        raise ConfigError([f"--entity: {entity!r} is not configured"])
    position = (
        Position(None, None)
        if to == "earliest"
        else Position(parse_cursor(to, ent.batching.mode), None)
    )
    topic = cfg.kafka.watermark_topic_name(cfg.tenant)
    ensure_topics(cfg.kafka, {topic: wanted_topics(cfg)[topic]})
    # Committed state only, not waiting for a killed poller's open transaction: the reset's
    # own start fences that transaction, and the watermark is read again after it.
    seen = observe(cfg.kafka, topic, cfg.tenant).watermarks
    after = "the beginning" if to == "earliest" else to
    print(
        f"warning: consumers of {entity} will see the rows after {after} again: the poller "
        "publishes them anew from the reset watermark",
        file=sys.stderr,
    )
    running = poller_running(cfg, [w.updated_at for w in seen.values()])
    if running.running and not yes:
        raise UsageError(
            f"a poller of tenant {cfg.tenant} is running ({'; '.join(running.evidence)}); "
            "the reset would fence it (it stops with exit code 3). Stop it first, or add --yes"
        )
    pub = TransactionalPublisher(cfg.kafka, cfg.transactional_id())
    try:
        pub.start()  # fences a poller of the tenant and aborts what it left open
        old = watermark.load(cfg.kafka, topic, cfg.tenant).get(entity)
        pub.begin()
        wm = watermark.Watermark(
            cfg.tenant,
            entity,
            ent.batching.mode.value,
            position,
            old.rows_total if old else 0,
            dt.datetime.now(dt.UTC),
        )
        pub.send(topic, watermark.key_bytes(cfg.tenant, entity), watermark.encode(wm))
        pub.commit()
    finally:
        pub.close()
    print(f"{entity}: watermark reset to {to}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    o = sub.add_parser(
        "watermarks",
        aliases=["offsets"],
        help="show or reset the stored watermarks (alias: offsets)",
        description="Each entity's watermark is the last (cursor, key) committed with its rows, "
        "in the compacted watermark topic. `show` prints them; `reset` moves one on purpose "
        "(consumers then see the rows after it again). `offsets` is the old name.",
    )
    osub = o.add_subparsers(dest="offsets_cmd", required=True)
    show_p = osub.add_parser("show", help="print each entity's stored watermark")
    show_p.add_argument("--config", required=True, help="the poller's YAML configuration file")
    show_p.add_argument("--json", action="store_true", help="print a JSON array")
    reset_p = osub.add_parser(
        "reset", help="move a watermark on purpose (consumers see the rows after it again)"
    )
    reset_p.add_argument("--config", required=True, help="the poller's YAML configuration file")
    reset_p.add_argument("--entity", required=True, help="the configured entity to reset")
    reset_p.add_argument(
        "--to", required=True, help="'earliest' or a cursor value (an id, or ISO-8601 time)"
    )
    reset_p.add_argument(
        "--yes",
        action="store_true",
        help="reset even though a poller of this tenant is running (it is fenced and stops)",
    )
    o.set_defaults(func=cmd_offsets)


def cmd_offsets(args: argparse.Namespace) -> int:
    cfg = load(args)
    if args.offsets_cmd == "show":
        show(cfg, as_json=args.json)
    else:
        reset(cfg, args.entity, args.to, yes=args.yes)
    return 0
