"""The `poller` command: run, check, status, backfill, offsets, tail, demo, worker, tenants, acl."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from poller.cli import (
    acl,
    backfill,
    check,
    demo,
    offsets,
    run,
    status,
    tail,
    tenants,
    verify,
    worker,
)
from poller.errors import EXIT_REASON_ENV, PollerError

log = logging.getLogger("poller")

# Each command group lives in its own module with add_parser(sub) and its command function.
COMMANDS = (run, check, status, verify, backfill, offsets, tail, demo, worker, tenants, acl)


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

        message = redact(str(exc))
        print(f"poller: error: {message}", file=sys.stderr)
        _leave_reason(message)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug or an unclassified driver error: the traceback, minus passwords
        import traceback

        from poller.redaction import redact

        text = redact(traceback.format_exc()).rstrip()
        print(text, file=sys.stderr)
        _leave_reason(text.splitlines()[-1])
        return 1


def _leave_reason(message: str) -> None:
    """For a worker that started this process: the error it stopped on (already redacted)."""
    path = os.environ.get(EXIT_REASON_ENV)
    if path:
        with contextlib.suppress(OSError):
            Path(path).write_text(message + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
