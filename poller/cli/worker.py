"""`poller worker`: join the workers' group and run the tenants it hands this worker."""

from __future__ import annotations

import argparse
import logging
import threading

from poller.fleet.settings import load_worker_config
from poller.ops.logs import setup_logging

log = logging.getLogger("poller")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="run the tenants the worker group assigns to this worker")
    w.add_argument("--config", default=None, help="worker YAML (kafka, group, max_tenants, ...)")
    w.add_argument("--kafka", default=None, help="bootstrap servers (overrides the config)")
    w.add_argument("--group", default=None, help="consumer group (default poller-workers)")
    w.add_argument("--max-tenants", type=int, default=None, help="tenants run at most")
    w.add_argument("--instance-id", default=None, help="group.instance.id (static membership)")
    w.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from poller.fleet.worker import Worker, install_signals

    cfg = load_worker_config(
        args.config,
        {
            "kafka.bootstrap_servers": args.kafka,
            "group": args.group,
            "max_tenants": args.max_tenants,
            "instance_id": args.instance_id,
        },
    )
    setup_logging(cfg.logging.format, cfg.logging.level)
    stop = threading.Event()
    install_signals(stop)
    worker = Worker(cfg, stop)
    if cfg.metrics.enabled:
        worker.serve()
    return worker.run()
