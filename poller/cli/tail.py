"""`poller tail`: print an entity topic's committed messages as JSON lines."""

from __future__ import annotations

import argparse
import json

from poller.cli.common import load


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("tail", help="print an entity topic's committed messages as JSON")
    t.add_argument("--config", required=True)
    t.add_argument("--entity", required=True)
    t.add_argument("--limit", type=int, default=None)
    t.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the end")
    t.add_argument("--json", action="store_true", help="JSON lines (the default and only format)")
    t.set_defaults(func=cmd_tail)


def cmd_tail(args: argparse.Namespace) -> int:
    from poller.kafka.tail import tail

    cfg = load(args)
    for record in tail(cfg, args.entity, args.limit, args.timeout):
        print(json.dumps(record, ensure_ascii=False, default=str))
    return 0
