"""What every command shares: loading the configuration and setting up logging."""

from __future__ import annotations

import argparse

from poller.config import AppConfig, load_config
from poller.ops.logs import setup_logging


def load(args: argparse.Namespace) -> AppConfig:
    cfg = load_config(args.config)
    setup_logging(cfg.logging.format, cfg.logging.level, cfg.tenant)
    return cfg
