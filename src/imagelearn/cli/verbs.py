"""Verbs with a default: ``imagelearn cluster IMAGES`` still runs ``imagelearn cluster fit IMAGES``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any


class _AnyName:
    """The verbs, as argparse's choice check sees them: every name passes.

    The check runs before the action sees the name, which then decides (unknown names go to
    the default verb).
    """

    def __init__(self, verbs: Mapping[str, argparse.ArgumentParser]) -> None:
        self.verbs = verbs

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.verbs)


class _VerbsWithDefault(argparse._SubParsersAction):
    """Sub-commands where a first argument that names no verb is given to ``default_verb``."""

    default_verb: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyName(self._name_parser_map)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Sequence[Any],
        option_string: str | None = None,
    ) -> None:
        if values and values[0] not in self._name_parser_map:
            values = [self.default_verb, *values]
        super().__call__(parser, namespace, values, option_string)


def add_verbs_with_default(
    subparsers: argparse._SubParsersAction, name: str, help: str, default: str
) -> argparse._SubParsersAction:
    """Add the command ``name`` whose verbs are sub-commands; without a verb it runs ``default``.

    The verb-less form keeps the commands that had no verbs working: their first argument
    (a positional, as every documented example has it) is not a verb name, so it goes to
    ``default``. The ``default`` verb must be added to the returned sub-parsers.
    """
    parser = subparsers.add_parser(
        name,
        help=help,
        description=f"{help[0].upper()}{help[1:]}. Without a verb, the arguments go to '{default}'.",
    )
    verbs = parser.add_subparsers(
        dest="verb", metavar="VERB", required=True, action=_VerbsWithDefault
    )
    verbs.default_verb = default
    return verbs
