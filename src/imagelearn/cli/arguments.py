"""Argument declarations and output writers shared by the ``imagelearn`` commands.

An option that means the same thing in several commands is declared once here, so it
keeps one name, type, default and help everywhere. Nothing here imports more than the
standard library: ``imagelearn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

#: Help of a labelled collection that is split into training and held-out images.
SOURCE_HELP = "class folders, train/val[/test] folders, or a CSV of path,label"

#: :data:`imagelearn.classify.backbones.DEFAULT_BACKBONE`, copied: importing the registry
#: imports torch, which ``--help`` must not wait for.
DEFAULT_BACKBONE = "mobilenet_v2"


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: ...)`` to every option's help that does not state it already.

    Unset defaults (None, False) are left out: the help says what leaving the option out means.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The parser of every ``imagelearn`` command: its sub-commands inherit its help format."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_verbs(
    subparsers: argparse._SubParsersAction, name: str, help: str, dest: str = "verb"
) -> argparse._SubParsersAction:
    """Add the command ``name`` whose sub-commands are verbs; returns their sub-parsers."""
    parser = subparsers.add_parser(name, help=help)
    return parser.add_subparsers(dest=dest, metavar="VERB", required=True)


def add_source(
    parser: argparse.ArgumentParser, name: str = "source", help: str = SOURCE_HELP
) -> None:
    """The positional labelled collection (``source`` or ``data``)."""
    parser.add_argument(name, help=help)


def add_output_dir(
    parser: argparse.ArgumentParser,
    help: str = "output directory",
    *,
    default: str | None = None,
    required: bool = False,
) -> None:
    """``--out``: the directory a command writes into."""
    parser.add_argument("--out", default=default, required=required, help=help)


def add_overwrite(parser: argparse.ArgumentParser, what: str = "run") -> None:
    """``--overwrite``: replace a finished run at ``--out`` (refused without it)."""
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace a finished {what} at --out"
    )


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """``--test-size`` and ``--seed`` of the held-out split."""
    parser.add_argument(
        "--test-size",
        type=float,
        default=0.3,
        help="held-out fraction when no split is given (default: %(default)s)",
    )
    add_random_state(parser)


def add_alias(parser: argparse.ArgumentParser, old: str, dest: str, **options: Any) -> None:
    """A hidden old spelling ``old`` of the option stored in ``dest`` (kept so old scripts run).

    ``options`` are the new option's (``type``, ``action``...), without default or help.
    """
    parser.add_argument(
        old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **options
    )


def add_random_state(parser: argparse.ArgumentParser) -> None:
    """``--random-state``: the seed of every random choice (old spelling ``--seed``)."""
    parser.add_argument(
        "--random-state", type=int, default=0, help="seed of every random choice (default 0)"
    )
    add_alias(parser, "--seed", "random_state", type=int)


def add_n_jobs(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--n-jobs``: parallel workers, -1 for one per core (old spelling ``--jobs``)."""
    parser.add_argument(
        "--n-jobs", type=int, default=-1, help=help or "parallel workers (-1: one per core)"
    )
    add_alias(parser, "--jobs", "n_jobs", type=int)


#: Where bulk work runs (:func:`imagelearn.core.execution.get_backend`'s names, copied: the
#: execution layer imports NumPy, which ``--help`` must not wait for).
ENGINES = ("local", "ray")


def add_engine(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and ``--address``: where a bulk command's work over images runs.

    :func:`engine_scope` applies them around the command's handler.
    """
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="run the work over images on this machine, or on a Ray cluster (pip install "
        "'imagelearn[ray]')",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="the Ray cluster with --engine ray, e.g. auto or HOST:6379 (default: $RAY_ADDRESS, "
        "else a Ray instance started on this machine)",
    )


def engine_scope(arguments: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The engine the command's ``--engine`` and ``--address`` name, for the handler's work
    (:func:`imagelearn.core.execution.use_engine`); a command without them runs locally."""
    if getattr(arguments, "engine", None) is None:
        return contextlib.nullcontext()
    from imagelearn.core.execution import use_engine

    return use_engine(arguments.engine, arguments.address)


def add_format(
    parser: argparse.ArgumentParser, choices: tuple[str, ...] = ("text", "json")
) -> None:
    """``--format``: how the result is printed (old spelling of ``--format json``: ``--json``)."""
    parser.add_argument(
        "--format", choices=choices, default=choices[0], help="output format (default: %(default)s)"
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS
    )


def add_strict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable image instead of skipping it",
    )


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", default=None, help="embedding cache (default ~/.cache/imagelearn/embeddings)"
    )


def add_backbone_options(
    parser: argparse.ArgumentParser, image_size: int | None = None, *, training: bool = False
) -> None:
    """``--backbone`` and ``--image-size``; with ``training``, ``--weights`` and ``--batch-size``.

    ``image_size`` None means the size the backbone's weights were trained at.
    """
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help="registry name, see `classify backbones` (default: %(default)s)",
    )
    if training:
        parser.add_argument(
            "--weights", default=None, help="imagenet (default), none, or a state-dict file"
        )
    parser.add_argument(
        "--image-size",
        type=int,
        default=image_size,
        help="network input side in pixels "
        + ("(default: the weights')" if image_size is None else f"(default {image_size})"),
    )
    if training:
        parser.add_argument(
            "--batch-size", type=int, default=32, help="images per batch (default: %(default)s)"
        )


def add_prediction_arguments(parser: argparse.ArgumentParser, model_help: str) -> None:
    """A predict command's ``MODEL IMAGES...``, ``--format csv|json`` and ``--output FILE``.

    The text to print goes through :func:`write_output`.
    """
    parser.add_argument("model", help=model_help)
    parser.add_argument("images", nargs="+", help="image files or folders")
    add_format(parser, ("csv", "json"))
    parser.add_argument("--output", default=None, help="write here instead of standard output")


def add_evaluation_arguments(
    parser: argparse.ArgumentParser, model_help: str, source_name: str, source_help: str
) -> None:
    """An evaluate command's ``MODEL`` and labelled collection, and ``--out``."""
    parser.add_argument("model", help=model_help)
    add_source(parser, source_name, source_help)
    add_output_dir(parser, "where to write metrics (default: MODEL/evaluation)")


def comma_separated(
    convert: Callable[[str], Any], expected: str, container: type = list
) -> Callable[[str], Any]:
    """An argparse ``type`` reading ``"1,2,4"`` into ``container`` of ``convert``-ed items.

    ``expected`` names the items in the error message: ``expected comma-separated EXPECTED``.
    """

    def parse(text: str) -> Any:
        try:
            return container(convert(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {expected}, got {text!r}"
            ) from None

    return parse


def roi(text: str) -> tuple[int, int, int, int]:
    """An argparse ``type``: ``x,y,w,h`` in pixels, width and height positive."""
    try:
        x, y, width, height = (round(float(v)) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h in pixels, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"the ROI needs a positive width and height, got {text!r}")
    return x, y, width, height


def json_text(payload: Any) -> str:
    """Indented JSON, non-ASCII kept as is, ending in a newline."""
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def write_output(text: str, path: str | None) -> None:
    """Write ``text`` to the file ``path`` (atomically) or, when None, to standard output."""
    if path:
        from imagelearn.core.bundle import atomic_write_text

        atomic_write_text(path, text)
    else:
        sys.stdout.write(text)


def print_mapping(mapping: Mapping[str, Any], as_json: bool, value_format: str = "") -> None:
    """Print ``mapping`` as indented JSON, or one ``key: value`` line per item."""
    if as_json:
        print(json.dumps(mapping, indent=2))
    else:
        for key, value in mapping.items():
            print(f"{key}: {value:{value_format}}")
