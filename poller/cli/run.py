"""`poller run`: poll continuously, or `--once` until every entity is caught up."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from poller.cli import progress
from poller.cli.common import load
from poller.config import AppConfig

if TYPE_CHECKING:
    from poller.ops.metrics import Metrics
    from poller.pipeline.runner import Poller

log = logging.getLogger("poller")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="poll continuously (or --once until caught up)")
    r.add_argument("--config", required=True, help="the poller's YAML configuration file")
    r.add_argument(
        "--once",
        action="store_true",
        help="exit 0 once every entity has read everything committed before the start; exit 9 "
        "if open source transactions still hold that back after --max-wait",
    )
    r.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="--once: how long to wait for open source transactions that hold the read bound "
        "below the start time, once everything else is copied (default 60; docs/horizon.md)",
    )
    r.add_argument(
        "--progress-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="log a progress line per busy entity this often (rows, rate, watermark, lag, "
        "holdback); 0: never",
    )
    r.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from poller.ops.http import serve
    from poller.ops.metrics import Health, Metrics
    from poller.pipeline.runner import Poller

    cfg = load(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics, health = Metrics(), Health()
    poller = Poller(cfg, metrics, health, stop)
    poller.config_path = args.config
    if cfg.metrics.enabled:
        from poller.ops.probes import probes

        serve(cfg.metrics, metrics, health, probes(cfg, poller.engine, poller.limits.query))
    log.info(
        "tenant %s: polling %s from %s",
        cfg.tenant,
        ", ".join(cfg.enabled_entities()),
        cfg.source.safe_url,
    )
    try:
        _run(args, cfg, poller, metrics)
    finally:
        from poller.ops.running import record_stop

        record_stop(cfg)  # `status` then says "not running" instead of "maybe"
    log.info("stopped")
    return 0


def _run(args: argparse.Namespace, cfg: AppConfig, poller: Poller, metrics: Metrics) -> None:
    if args.once and progress.wanted(cfg):
        bar = progress.make_progress()
        poller.observer = progress.RunProgress(bar)
        with progress.log_above(bar):
            poller.run(once=True, max_wait_s=args.max_wait)
    else:
        from poller.cli.runlog import RunLog

        poller.observer = RunLog(args.progress_interval)
        # Scheduled delete reconciliation (repair_interval_s) runs beside the live loop.
        from poller.verify.schedule import Reconciler

        reconciler = None if args.once else Reconciler(cfg, metrics.count_repairs(cfg.tenant))
        if reconciler is not None:
            reconciler.start()
        try:
            poller.run(once=args.once, max_wait_s=args.max_wait)
        finally:
            if reconciler is not None:
                reconciler.close()
