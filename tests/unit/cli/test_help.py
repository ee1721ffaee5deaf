"""Every command and every option of `poller` explains itself in --help."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from poller.cli.main import build_parser


def walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias (offsets for watermarks)
                    continue
                seen.add(id(sub))
                out.append((f"{path} {name}", argparse.Action([name], name, help=helps.get(name))))
                out += walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            out.append((path, action))
    return out


def test_every_command_and_option_has_help_text() -> None:
    found = walk(build_parser(), "poller")
    assert len(found) > 30  # the walk reaches the subcommands' options
    missing = [
        f"{where}: {'/'.join(a.option_strings) or a.dest}"
        for where, a in found
        if not (a.help or "").strip() or a.help == argparse.SUPPRESS
    ]
    assert not missing, "no help text:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    "command", ["status", "backfill", "tail", "offsets reset", "watermarks show", "run", "check"]
)
def test_help_renders(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command.split(), "--help"])
    assert exit_.value.code == 0
    assert "--config" in capsys.readouterr().out


def parsers(parser: argparse.ArgumentParser, path: str = "poller") -> list[tuple[str, Any]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += parsers(sub, f"{path} {name}")
    return out


def test_every_command_has_a_description_and_the_exit_codes() -> None:
    for path, parser in parsers(build_parser()):
        assert parser.description, path
        assert parser.epilog and "  10  differences found" in parser.epilog, path
        assert "130  interrupted" in parser.epilog, path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("poller ")


def test_defaults_and_units_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tail", "--help"])
    out = capsys.readouterr().out
    assert "--timeout SECONDS" in out and "(default: 10.0)" in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_watermarks_with_offsets_as_an_alias() -> None:
    for name in ("watermarks", "offsets"):
        args = build_parser().parse_args([name, "show", "--config", "c.yaml"])
        assert args.offsets_cmd == "show"


@pytest.mark.parametrize("command", ["put --config c.yaml", "rm acme"])
def test_tenants_put_and_rm_have_no_group(command: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["tenants", *command.split(), "--group", "g", "--kafka", "k"])
    assert exit_.value.code == 2
    args = build_parser().parse_args(["tenants", "list", "--group", "g", "--kafka", "k"])
    assert args.group == "g"


def test_exit_codes_are_distinct() -> None:
    from poller import errors

    assert errors.EXIT_DIFFERENCES not in (errors.EXIT_CRASHED, errors.EXIT_CONFIG)
    assert errors.SchemaMismatchError.exit_code == errors.EXIT_SCHEMA != errors.EXIT_CONFIG
    assert errors.IncompatibleSchemaError.exit_code == errors.EXIT_SCHEMA
    assert errors.ConfigError.exit_code == errors.EXIT_CONFIG
    assert errors.PollerError.exit_code == errors.EXIT_CRASHED
    # A transient error that ends a one-shot command is no crash: running it again can help.
    transient = (errors.BrokerUnavailableError, errors.OpenTransactionError, errors.SourceError)
    for error in transient:
        assert error("x").exit_code == errors.EXIT_UNREACHABLE
    assert errors.restart_helps(errors.EXIT_UNREACHABLE)
    codes = [getattr(errors, n) for n in dir(errors) if n.startswith("EXIT_") and n != "EXIT_CODES"]
    assert sorted(codes) == sorted(errors.EXIT_CODES)
