"""Every command and every option of `poller` explains itself in --help."""

from __future__ import annotations

import argparse

import pytest

from poller.cli.main import build_parser


def walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
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


@pytest.mark.parametrize("command", ["status", "backfill", "tail", "offsets reset", "run"])
def test_help_renders(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command.split(), "--help"])
    assert exit_.value.code == 0
    assert "--config" in capsys.readouterr().out
