"""Entry point: ``imagelearn <capability> <verb> ...``.

Each capability has a module in :mod:`imagelearn.cli` with a ``register(subparsers)``
function; handlers import the heavy libraries they need only when they run, so
``imagelearn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from imagelearn import __version__
from imagelearn.cli.arguments import Parser, engine_scope
from imagelearn.core.errors import ImagelearnError, ParameterError

#: Capability modules under imagelearn.cli (``-`` spelled ``_``), in the order ``--help``
#: lists them.
CAPABILITIES = (
    "data",
    "bof",
    "classify",
    "transfer",
    "index",
    "track",
    "cluster",
    "segment",
    "serve",
    "cache",
    "cluster-check",
)

#: Errors a user can cause and fix: printed as one line, exit status 2.
USER_ERRORS = (ImagelearnError, FileNotFoundError, ValueError)


def user_message(error: Exception, arguments: argparse.Namespace | None = None) -> str:
    """The one-line message for ``error``; a :class:`ParameterError` also names its flag.

    With the command's parsed ``arguments``, the flag is named only when the command has it
    (an image over ``max_pixels`` is a ``ParameterError``, but not every command sets it).
    """
    if isinstance(error, ParameterError) and (
        arguments is None or hasattr(arguments, error.parameter)
    ):
        return f"{error} (--{error.parameter.replace('_', '-')})"
    return str(error)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="imagelearn", description="Machine learning on images.")
    parser.add_argument("--version", action="version", version=f"imagelearn {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="capability", metavar="CAPABILITY", required=True)
    for name in CAPABILITIES:
        module_name = f"imagelearn.cli.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.WARNING,
        format="%(levelname)s: %(name)s: %(message)s" if arguments.verbose else "%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("imagelearn").setLevel(logging.DEBUG if arguments.verbose else logging.INFO)
    if arguments.quiet:
        os.environ["IMAGELEARN_QUIET"] = "1"
    try:
        with engine_scope(arguments):
            return int(arguments.handler(arguments) or 0)
    except USER_ERRORS as error:
        print(f"imagelearn: error: {user_message(error, arguments)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "imagelearn: interrupted; finished work is kept and a rerun resumes from it",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
