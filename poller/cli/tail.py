"""`poller tail`: print an entity topic's last committed messages as JSON lines."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from decimal import Decimal

from poller.cli.common import load

DEFAULT_LAST = 10


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser(
        "tail",
        help="print an entity topic's last committed messages as JSON lines",
        description="Print the last N committed messages (read_committed) of an entity's "
        "topic as JSON lines: the decoded fields, then _key, _partition, _offset and "
        "_timestamp; times as ISO-8601 UTC with Z and microseconds, decimals as text, bytes as "
        "hex. --from-beginning prints from the first message instead.",
    )
    t.add_argument("--config", required=True, help="the poller's YAML configuration file")
    t.add_argument("--entity", required=True, help="the configured entity whose topic to read")
    t.add_argument(
        "-n",
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="how many messages: the last N (default 10); with --from-beginning the first N "
        "(default: all)",
    )
    t.add_argument(
        "--from-beginning",
        action="store_true",
        help="read from the first message (every one unless --limit is given)",
    )
    t.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for the topic's end (reset by each message)",
    )
    t.add_argument(
        "--follow",
        action="store_true",
        help="keep printing new messages as they are committed, until interrupted (Ctrl-C)",
    )
    t.set_defaults(func=cmd_tail)


def json_value(value: object) -> object:
    """What json cannot write: times as ISO-8601 UTC with Z and microseconds (naive ones are
    UTC already: the decoder's), decimals exact as text, bytes as hex."""
    if isinstance(value, dt.datetime):
        aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        return aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def cmd_tail(args: argparse.Namespace) -> int:
    from poller.kafka.tail import tail

    cfg = load(args)
    if args.from_beginning:
        records = tail(cfg, args.entity, args.limit, args.timeout, follow=args.follow)
    else:
        last = DEFAULT_LAST if args.limit is None else args.limit
        records = tail(cfg, args.entity, None, args.timeout, follow=args.follow, last=last)
    try:
        for record in records:
            line = json.dumps(record, ensure_ascii=False, default=json_value)
            print(line, flush=args.follow)
    except KeyboardInterrupt:  # raised inside the reader, which has closed its consumer
        if not args.follow:
            raise
    return 0
