"""The `poller` command: run, check, offsets, tail, demo."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from poller.config import AppConfig, load_config
from poller.errors import PollerError

log = logging.getLogger("poller")


def _load(args: argparse.Namespace) -> AppConfig:
    from poller.logs import setup_logging

    cfg = load_config(args.config)
    setup_logging(cfg.logging.format, cfg.logging.level, cfg.tenant)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from poller.http import serve
    from poller.metrics import Health, Metrics
    from poller.runner import Poller

    cfg = _load(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics, health = Metrics(), Health()
    poller = Poller(cfg, metrics, health, stop)
    if cfg.metrics.enabled:
        from poller.probes import probes

        serve(cfg.metrics.host, cfg.metrics.port, metrics, health, probes(cfg, poller.engine))
    log.info(
        "tenant %s: polling %s from %s",
        cfg.tenant,
        ", ".join(cfg.enabled_entities()),
        cfg.source.safe_url,
    )
    poller.run(once=args.once)
    log.info("stopped")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from poller.check import check_all

    cfg = _load(args)
    problems = check_all(cfg)
    for p in problems:
        print(f"problem: {p}")
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 2
    print(f"ok: {len(cfg.enabled_entities())} entities checked against {cfg.source.safe_url}")
    return 0


def cmd_offsets(args: argparse.Namespace) -> int:
    from poller import offsets

    cfg = _load(args)
    if args.offsets_cmd == "show":
        offsets.show(cfg, as_json=args.json)
    else:
        offsets.reset(cfg, args.entity, args.to)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from poller.tail import tail

    cfg = _load(args)
    for record in tail(cfg, args.entity, args.limit, args.timeout):
        print(json.dumps(record, ensure_ascii=False, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from poller.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poller", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="poll continuously (or --once until caught up)")
    r.add_argument("--config", required=True)
    r.add_argument("--once", action="store_true", help="exit 0 once every entity is caught up")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="check every mapped column exists and fits its schema")
    c.add_argument("--config", required=True)
    c.set_defaults(func=cmd_check)

    o = sub.add_parser("offsets", help="show or reset the stored watermarks")
    osub = o.add_subparsers(dest="offsets_cmd", required=True)
    show = osub.add_parser("show")
    show.add_argument("--config", required=True)
    show.add_argument("--json", action="store_true")
    reset = osub.add_parser("reset", help="stop the poller first: reset fences a running one")
    reset.add_argument("--config", required=True)
    reset.add_argument("--entity", required=True)
    reset.add_argument("--to", required=True, help="'earliest' or a cursor value")
    o.set_defaults(func=cmd_offsets)

    t = sub.add_parser("tail", help="print an entity topic's committed messages as JSON")
    t.add_argument("--config", required=True)
    t.add_argument("--entity", required=True)
    t.add_argument("--limit", type=int, default=None)
    t.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the end")
    t.add_argument("--json", action="store_true", help="JSON lines (the default and only format)")
    t.set_defaults(func=cmd_tail)

    d = sub.add_parser("demo", help="seed sample data for two tenants and poll one of them")
    d.add_argument("--source", default=None, help="PostgreSQL/MariaDB URL instead of SQLite")
    d.add_argument("--tenant", default="acme-corp")
    d.add_argument("--config-out", default="demo-out/poller.yaml")
    d.add_argument("--seed-only", action="store_true")
    d.add_argument("--bootstrap", default="127.0.0.1:9092")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except PollerError as exc:
        log.debug("stopping on error", exc_info=True)
        from poller.logs import redact

        print(f"poller: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
