"""`poller demo`: seed sample data for two tenants and copy one of them to Kafka."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("demo", help="seed sample data for two tenants and poll one of them")
    d.add_argument("--source", default=None, help="PostgreSQL/MariaDB URL instead of SQLite")
    d.add_argument("--tenant", default="acme-corp", help="the tenant to copy to Kafka")
    d.add_argument(
        "--config-out", default="demo-out/poller.yaml", help="where to write the demo's config"
    )
    d.add_argument(
        "--seed-only", action="store_true", help="seed the data and write the config, no copy"
    )
    d.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    d.add_argument(
        "--registry",
        default="http://127.0.0.1:8081/apis/ccompat/v7",
        help="Schema Registry URL (Confluent format); '' for single-object encoding",
    )
    d.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from poller.demo.command import run_demo

    return run_demo(args)
