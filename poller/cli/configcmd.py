"""`poller config schema`: the configuration's JSON Schema, for editors (autocomplete and
validation of poller.yaml / worker.yaml)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "config",
        help="print the configuration's JSON Schema",
        description="Print the JSON Schema of poller.yaml (or worker.yaml) for editors: with "
        "the YAML language server, `# yaml-language-server: $schema=poller.schema.json` on "
        "the file's first line completes and checks every key. Exit codes: 0 printed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    actions = c.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    s = actions.add_parser(
        "schema",
        help="print the JSON Schema",
        description="Print the JSON Schema (draft 2020-12) of a tenant's poller.yaml, or of "
        "worker.yaml with --worker. Exit codes: 0 printed.",
    )
    s.add_argument("--worker", action="store_true", help="worker.yaml instead of poller.yaml")
    s.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from poller.cli.reference import json_schema

    sys.stdout.write(json_schema("worker" if args.worker else "poller"))
    return 0
