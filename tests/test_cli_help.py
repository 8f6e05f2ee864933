"""The command line explains itself: a description and help for every command and option, and a command made
of sub-commands lists them when given alone."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from bot.cli.entry import build_parser, main


def _parsers(parser: argparse.ArgumentParser, path: str = "wabridge"
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_has_a_description_and_every_option_a_help_text() -> None:
    seen = dict(_parsers(build_parser()))
    assert {"wabridge serve", "wabridge doctor", "wabridge export", "wabridge campaign create",
            "wabridge templates sync", "wabridge report", "wabridge migrate"} <= set(seen)
    for path, parser in seen.items():
        assert parser.description, f"{path} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), f"{path}: a sub-command has no help"
            else:
                assert action.help, f"{path} {action.option_strings or action.dest} has no help"


def test_serve_help_says_what_port_and_host_default_to(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0
    assert "--port PORT port to listen on (default: server.port, 8080)" in out
    assert "--host HOST address to listen on (default: server.host" in out


@pytest.mark.parametrize(("argv", "listed"), [
    (["campaign"], ["create", "list", "show", "pause", "resume", "cancel", "resend-unknown"]),
    (["templates"], ["sync", "list", "copy"]),
    ([], ["serve", "migrate", "demo", "campaign", "doctor", "export", "report"]),
])
def test_a_group_given_alone_lists_its_commands(argv: list[str], listed: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "required" not in out + err and "error" not in err
    lines = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()]
    assert set(listed) <= set(lines), out


def test_serve_port_and_host_override_the_config() -> None:
    args = build_parser().parse_args(["serve", "--port", "9090", "--host", "127.0.0.1"])
    assert (args.port, args.host) == (9090, "127.0.0.1")
