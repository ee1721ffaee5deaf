"""`poller demo`: seed sample data for two tenants and copy one of them to Kafka."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("demo", help="seed sample data for two tenants and poll one of them")
    d.add_argument("--source", default=None, help="PostgreSQL/MariaDB URL instead of SQLite")
    d.add_argument("--tenant", default="acme-corp")
    d.add_argument("--config-out", default="demo-out/poller.yaml")
    d.add_argument("--seed-only", action="store_true")
    d.add_argument("--bootstrap", default="127.0.0.1:9092")
    d.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from poller.demo.command import run_demo

    return run_demo(args)
