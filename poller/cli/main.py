"""poller copies retail/loyalty rows from SQL databases into Kafka as Avro, exactly once.

Commands: run, check, status, verify, backfill, watermarks (alias offsets), tail, config, demo,
worker, tenants, acl. `poller COMMAND --help` describes each, with its defaults and exit codes."""

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
from poller.errors import (
    EXIT_CRASHED,
    EXIT_INTERRUPTED,
    REASON_FILE_ENV,
    PollerError,
    exit_codes_epilog,
)

log = logging.getLogger("poller")

# Each command group lives in its own module with add_parser(sub) and its command function.
COMMANDS = (
    run, check, status, verify, backfill, offsets, tail, demo, worker, tenants, acl, configcmd
)  # fmt: skip


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default after its help (unless it has none or the help names it already);
    descriptions wrapped by paragraph, indented lines (the exit-code table) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(ln.startswith(" ") for ln in lines):
                out.append("\n".join(indent + ln for ln in lines))
            else:
                out.append(super()._fill_text(para, width, indent))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default in (None, False, argparse.SUPPRESS)
            or "default" in text
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _explain(parser: argparse.ArgumentParser, help_text: str | None) -> None:
    """Every command (and subcommand) gets a description, its defaults and the exit codes."""
    parser.formatter_class = HelpFormatter
    if not parser.description and help_text:
        parser.description = help_text[0].upper() + help_text[1:] + "."
    parser.epilog = exit_codes_epilog()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                _explain(child, helps.get(name))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poller", description=__doc__)
    p.add_argument("--version", action="version", version=f"poller {version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", title="commands")
    for command in COMMANDS:
        command.add_parser(sub)
    _explain(p, None)
    return p


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("poller")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


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
        return EXIT_INTERRUPTED
    except Exception:  # a bug or an unclassified driver error: the traceback, minus passwords
        import traceback

        from poller.redaction import redact

        text = redact(traceback.format_exc()).rstrip()
        print(text, file=sys.stderr)
        _leave_reason(text.splitlines()[-1])
        return EXIT_CRASHED


def _leave_reason(message: str) -> None:
    """For a worker that started this process: the error it stopped on (already redacted)."""
    path = os.environ.get(REASON_FILE_ENV)
    if path:
        with contextlib.suppress(OSError):
            Path(path).write_text(message + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
