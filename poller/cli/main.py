"""The `poller` command: run, check, status, backfill, offsets, tail, demo, worker, tenants."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from poller.cli import (
    backfill,
    check,
    configcmd,
    demo,
    offsets,
    run,
    status,
    tail,
    tenants,
    verify,
    worker,
)
from poller.errors import PollerError

log = logging.getLogger("poller")

# Each command group lives in its own module with add_parser(sub) and its command function.
COMMANDS = (run, check, status, verify, backfill, offsets, tail, demo, worker, tenants, configcmd)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poller", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except PollerError as exc:
        log.debug("stopping on error", exc_info=True)
        from poller.ops.logs import redact

        print(f"poller: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug or an unclassified driver error: the traceback, minus passwords
        import traceback

        from poller.redaction import redact

        print(redact(traceback.format_exc()).rstrip(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
