"""What every command shares: loading the configuration and setting up logging."""

from __future__ import annotations

import argparse

from poller.config import AppConfig, load_config
from poller.ops.logs import setup_logging


def load(args: argparse.Namespace) -> AppConfig:
    cfg = load_config(args.config)
    setup_logging(cfg.logging.format, cfg.logging.level, cfg.tenant)
    return cfg


def unsettled_note(cfg: AppConfig, entities: list[str]) -> str:
    return (
        f"* {', '.join(entities)}: the last committed watermark is shown; a newer one is in a "
        f"transaction that has not ended. A poller of {cfg.tenant} killed mid-commit leaves "
        "it open until a poller of the tenant starts (which aborts it) or "
        f"kafka.transaction_timeout_s ({cfg.kafka.transaction_timeout_s:g}s) passes."
    )
