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
    """Why a watermark is marked `*` (backfill_state.observe)."""
    return (
        f"* {', '.join(entities)}: the last committed watermark is shown; a newer record lies "
        "behind a Kafka transaction that has not ended. A poller of "
        f"{cfg.tenant} killed mid-commit leaves its transaction open until a poller of the "
        "tenant starts (which aborts it) or kafka.transaction_timeout_s "
        f"({cfg.kafka.transaction_timeout_s:g}s) passes; on a shared watermark topic another "
        "tenant's open transaction can hold it back too."
    )
