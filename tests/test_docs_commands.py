"""Every ``imagelearn`` command shown in README.md and docs/*.md parses with the current CLI.

The commands are read from the fenced shell blocks (```bash, ```sh), parsed by
:func:`imagelearn.cli.main.build_parser` and never run. They must also use the current
spelling: each verb named explicitly by its own name (not an alias, not a default verb) and
each option by its full visible name (not a hidden old spelling, not an abbreviation).
Placeholders (``DATA``, ``photos/``, ``$(cat list.txt)``) are ordinary arguments.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
from pathlib import Path

import pytest

from imagelearn.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.DOTALL | re.MULTILINE)
COMMAND_SUBSTITUTION = re.compile(r"\$\([^)]*\)")
#: A shell comment starts a word (``--classes road=#6EC1E4`` holds no comment).
COMMENT = re.compile(r"(^|\s)#.*$")


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command)`` for every ``imagelearn ...`` line of a shell block."""
    commands = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for block in SHELL_BLOCK.finditer(text):
            number = text.count("\n", 0, block.start(1))
            pending, start = "", 0
            for line in block.group(1).splitlines():
                number += 1
                start = start or number
                pending += line.removesuffix("\\") + " "
                if line.endswith("\\"):
                    continue
                command = pending.strip().removeprefix("$ ")
                if command.startswith("imagelearn "):
                    commands.append((f"{document.name}:{start}", command))
                pending, start = "", 0
    return commands


COMMANDS = documented_commands()


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser, built once (parsing does not change it)."""
    return main.build_parser()


def arguments_of(command: str) -> list[str]:
    """The command's arguments after ``imagelearn``, the comment dropped."""
    command = COMMENT.sub("", COMMAND_SUBSTITUTION.sub("FILES", command))
    return shlex.split(command)[1:]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _visible_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
    }


def check_current_spelling(arguments: list[str]) -> None:
    """Walk the command's sub-parsers; fail on an alias, a default verb or a hidden option."""
    parser = build_parser()
    allowed = _visible_options(parser)
    position = 0
    while (subcommands := _subcommands(parser)) is not None:
        while arguments[position].startswith("-"):  # options before the sub-command
            position += 1
        name = arguments[position]
        names = [choice.dest for choice in subcommands._choices_actions]
        assert name in names, f"{name!r} is not one of the verbs {names} (named explicitly)"
        parser = subcommands._name_parser_map[name]
        allowed |= _visible_options(parser)
        position += 1
    for argument in arguments:
        if argument.startswith("-") and not re.fullmatch(r"-\d[\d.,]*", argument):
            option = argument.split("=", 1)[0]
            assert option in allowed, f"{option}: not a current option of this command"


def test_the_documents_show_commands():
    assert len(COMMANDS) >= 40, COMMANDS
    shown = {tuple(arguments_of(command)[:1]) for _, command in COMMANDS}
    assert {name for (name,) in shown} == set(main.CAPABILITIES)


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses_with_the_current_spelling(where, command, capsys):
    arguments = arguments_of(command)
    try:
        build_parser().parse_args(arguments)
    except SystemExit:
        pytest.fail(f"{where}: {command}\n{capsys.readouterr().err}")
    check_current_spelling(arguments)
