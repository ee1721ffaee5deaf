"""`poller check`: every mapped column exists and fits its schema; lists every problem."""

from __future__ import annotations

import argparse
import sys

from poller.cli.common import load


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("check", help="check every mapped column exists and fits its schema")
    c.add_argument("--config", required=True, help="the poller's YAML configuration file")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from poller.pipeline.preflight import check_all

    cfg = load(args)
    problems = check_all(cfg)
    for p in problems:
        print(f"problem: {p}")
    if not any(p.startswith("database") for p in problems):
        from poller.errors import PollerError
        from poller.pipeline.guards import empty_tenant_warnings, horizon_warnings

        try:
            for w in horizon_warnings(cfg):
                print(f"warning: {w}")
        except PollerError as exc:
            print(f"warning: horizon not checked: {exc}")
        if not problems:
            try:
                for w in empty_tenant_warnings(cfg):
                    print(f"warning: {w}")
            except PollerError as exc:
                print(f"warning: tenant rows not counted: {exc}")
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 2
    print(f"ok: {len(cfg.enabled_entities())} entities checked against {cfg.source.safe_url}")
    return 0
