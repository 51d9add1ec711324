"""``--help`` of every command: each argument says what it is, and each option with a default
says which."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from imagelearn.cli.main import build_parser, main

#: Actions argparse adds on its own (``-h``, ``--version``), which need no default.
BUILT_IN = (argparse._HelpAction, argparse._VersionAction)


def commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ("imagelearn",)
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command below ``parser`` (itself included), with its words."""
    yield " ".join(words), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action._name_parser_map.items():
                if sub.prog.split()[-1] == name:  # not an alias of a verb
                    yield from commands(sub, (*words, name))


def documented(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if action.help != argparse.SUPPRESS and not isinstance(action, BUILT_IN):
            if not isinstance(action, argparse._SubParsersAction):
                yield action


COMMANDS = dict(commands(build_parser()))


def test_the_tree_holds_every_capability_and_verb():
    assert {"imagelearn cache info", "imagelearn cache clear", "imagelearn cluster fit"} <= set(
        COMMANDS
    )
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_argument_has_help_and_every_default_is_shown(command):
    parser = COMMANDS[command]
    formatter = parser._get_formatter()
    for action in documented(parser):
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{command} {name}: no help text"
        shown = formatter._expand_help(action)
        if action.option_strings and action.default not in (None, False):
            assert "default" in shown, f"{command} {name}: default {action.default!r} not shown"


def test_cluster_help_shows_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["cluster", "fit", "--help"])
    assert capsys.readouterr().out.count("default") >= 5
